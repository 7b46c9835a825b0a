import json

import pytest
import yaml

from vocdet.pipeline import config as config_lib


@pytest.mark.parametrize("preset", sorted(config_lib.PRESETS))
def test_every_preset_validates(preset):
    config_lib.PRESETS[preset]().validate()


def test_layering_preset_then_yaml_then_flags(tmp_path):
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 3, "batch_size_per_replica": 4}}))
    config = config_lib.load("demo", str(path), {"train": {"epochs": 5}})
    assert config.train.epochs == 5  # flags win over YAML
    assert config.train.batch_size_per_replica == 4  # YAML wins over the preset
    assert config.model.backbone == config_lib.demo().model.backbone


def test_unknown_key_is_rejected_with_its_path():
    with pytest.raises(ValueError, match="train.epoch"):
        config_lib.demo().with_overrides({"train": {"epoch": 3}})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train": {"epochs": "ten"}}, "'train.epochs' must be an integer, got 'ten'"),
        ({"train": {"epochs": 2.5}}, "'train.epochs' must be an integer, got 2.5"),
        ({"train": {"warm_start": "yes"}}, "'train.warm_start' must be true or false"),
        ({"train": {"jitter_scale": [0.8, "big"]}}, "'train.jitter_scale[1]' must be a number"),
        ({"data": {"class_names": "cat"}}, "'data.class_names' must be a list"),
    ],
)
def test_a_value_of_the_wrong_type_is_rejected_with_its_key(tmp_path, overrides, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(overrides))
    with pytest.raises(ValueError) as error:
        config_lib.load("demo", str(path))
    assert message in str(error.value)


def test_an_integer_where_a_number_is_due_is_taken():
    assert config_lib.demo().with_overrides({"train": {"base_learning_rate": 1}}).train.base_learning_rate == 1.0


def test_invalid_value_is_rejected():
    with pytest.raises(ValueError, match="bounding_box_format"):
        config_lib.demo().with_overrides({"model": {"bounding_box_format": "xyz"}})


def test_each_component_gets_its_own_slice_and_it_round_trips():
    from vocdet.components import settings

    config = config_lib.voc_guide()
    for slice_, cls in (
        (config.transform_settings(), settings.TransformSettings),
        (config.trainer_settings(), settings.TrainerSettings),
        (config.evaluator_settings(), settings.EvaluatorSettings),
    ):
        assert cls.from_custom_config(json.loads(json.dumps(slice_.to_custom_config()))) == slice_
    # Nothing of the push or Kubeflow sections reaches a component.
    text = json.dumps([config.transform_settings().to_custom_config(), config.trainer_settings().to_custom_config(),
                       config.evaluator_settings().to_custom_config()])
    assert "serving_dir" not in text and "keep_versions" not in text and "pvc" not in text


def test_code_inside_components_does_not_import_pipeline():
    """Dependencies run one way: pipeline/ composes components/, never the reverse."""
    import subprocess
    import sys

    modules = ["vocdet.components.transform", "vocdet.components.trainer.module", "vocdet.components.coco_evaluator.executor",
               "vocdet.components.coco_evaluator.component", "vocdet.components.serving_check.executor",
               "vocdet.components.voc_example_gen.executor", "vocdet.components.atomic_pusher.executor"]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print(sorted(m for m in sys.modules if m == 'vocdet.pipeline' or m.startswith('vocdet.pipeline.')))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().splitlines()[-1] == "[]"


def test_learning_rate_scales_with_global_batch():
    train = config_lib.TrainConfig(base_learning_rate=0.01)
    assert train.learning_rate(64) == pytest.approx(0.04)


def test_bounding_box_formats_are_kerascvs():
    from keras_cv.src.bounding_box import converters

    assert set(config_lib.BOUNDING_BOX_FORMATS) == set(converters.FROM_XYXY_CONVERTERS) == set(converters.TO_XYXY_CONVERTERS)


def test_the_demo_blesses_only_a_model_that_detects():
    """The demo gates on a real threshold: a model that learned nothing is not pushed."""
    demo = config_lib.demo()
    assert demo.eval.blessing_threshold >= 0.3


def test_the_demo_starts_from_the_shipped_sample_checkpoint():
    import os

    from vocdet.components.trainer import checkpoint

    demo = config_lib.demo()
    assert demo.model.init_checkpoint == "sample"
    assert os.path.getsize(checkpoint.resolve("sample")) < 8 * 2**20  # small enough for the repository


def test_derived_split_shares_are_checked_against_the_splits_used():
    from vocdet.pipeline import config as config_lib

    config = config_lib.load("demo", None, {"data": {"split_by": "hash"}})
    assert config.data.derived_split == {"train": 80, "validation": 10, "test": 10}
    with pytest.raises(ValueError, match=r"data.derived_split must give a positive share to each split used, \['test', 'train'\]"):
        config_lib.load("demo", None, {"data": {"split_by": "hash", "train_splits": ["train"]}})
    config = config_lib.load(
        "demo", None, {"data": {"split_by": "hash", "train_splits": ["train"], "derived_split": {"train": 90, "test": 10}}}
    )
    assert config.data.derived_split == {"train": 90, "test": 10}


@pytest.mark.parametrize("size", [0, -128])
def test_image_size_must_be_positive(size):
    """0 and negative sizes are multiples of 128 too; RetinaNet needs a positive one (P7's stride)."""
    with pytest.raises(ValueError, match=rf"model.image_size must be a positive multiple of 128.*got {size}"):
        config_lib.load("demo", overrides={"model": {"image_size": size}})


def test_kubeflow_image_is_pinned_never_latest():
    digest = "sha256:" + "ab" * 32
    assert config_lib.image_reference(f"registry:5000/vocdet:1.0@{digest}") == ("registry:5000/vocdet", "1.0", digest)
    assert config_lib.image_reference("registry:5000/vocdet:1.0") == ("registry:5000/vocdet", "1.0", None)
    for image in ("vocdet:latest", "registry:5000/vocdet", "vocdet@sha256:abc"):
        with pytest.raises(ValueError, match="kubeflow.image"):
            config_lib.load("voc_guide", overrides={"kubeflow": {"image": image}})
    assert config_lib.load("voc_guide", overrides={"kubeflow": {"image": f"vocdet@{digest}"}}).kubeflow.image_pinned_by_digest
    assert not config_lib.load("voc_guide", overrides={"kubeflow": {"image": "vocdet:1.0"}}).kubeflow.image_pinned_by_digest


def test_beam_defaults_keep_the_direct_runner_flags_here_and_on_kubeflow():
    from vocdet.pipeline import beam_args

    for preset in config_lib.PRESETS:
        config = config_lib.load(preset)
        assert config.beam.runner == "direct"
        assert config.beam_pipeline_args == ["--direct_running_mode=in_memory"]
        assert beam_args.pipeline_args(config.beam, on_cluster=True) == [
            "--direct_running_mode=multi_processing", "--direct_num_workers=0"
        ]
    # An explicit mode applies to both.
    config = config_lib.load("demo", overrides={"beam": {"direct_running_mode": "multi_processing", "direct_num_workers": 2}})
    expected = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    assert config.beam_pipeline_args == expected == beam_args.pipeline_args(config.beam, on_cluster=True)


def test_beam_section_from_yaml_for_each_runner(tmp_path):
    path = tmp_path / "beam.yaml"
    path.write_text(yaml.safe_dump({"beam": {"runner": "portable", "job_endpoint": "vocdet-beam-job-server:8099"}}))
    config = config_lib.load("demo", str(path))
    assert config.beam_pipeline_args == [
        "--runner=PortableRunner", "--job_endpoint=vocdet-beam-job-server:8099", "--environment_type=EXTERNAL",
        "--environment_config=localhost:50000",
    ]
    dataflow = {"runner": "dataflow", "project": "my-project", "region": "europe-west4", "temp_location": "gs://bucket/tmp"}
    config = config_lib.load("demo", overrides={"beam": dataflow, "kubeflow": {"image": "registry.example.com/vocdet:1.0"}})
    assert config.beam_pipeline_args == [
        "--runner=DataflowRunner", "--project=my-project", "--region=europe-west4", "--temp_location=gs://bucket/tmp",
        "--sdk_container_image=registry.example.com/vocdet:1.0", "--sdk_location=container",
    ]


@pytest.mark.parametrize(
    "beam, message",
    [
        ({"runner": "spark"}, "beam.runner must be one of direct, portable, dataflow"),
        ({"direct_running_mode": "threads"}, "beam.direct_running_mode must be one of"),
        ({"runner": "portable", "job_endpoint": ""}, "beam.runner portable needs beam.job_endpoint"),
        ({"runner": "portable", "environment_type": "KUBERNETES"}, "beam.environment_type must be one of"),
        ({"runner": "dataflow", "region": "europe-west4"}, "beam.runner dataflow needs beam.project, beam.temp_location"),
        ({"runner": "dataflow", "project": "p", "region": "r", "temp_location": "/tmp"}, "must be a gs:// URI"),
        ({"runner": "dataflow", "project": "p", "region": "r", "temp_location": "gs://b/t"}, "set kubeflow.image"),
        ({"extra_args": ["--runner=FlinkRunner"]}, r"--runner is set by beam.runner"),
        ({"extra_args": ["--sdk_container_image=x"]}, r"--sdk_container_image is set by kubeflow.image"),
        ({"extra_args": ["runner=x"]}, "is not a --flag=value"),
    ],
)
def test_beam_section_is_checked(beam, message):
    with pytest.raises(ValueError, match=message):
        config_lib.load("demo", overrides={"beam": beam})


def test_beam_pipeline_args_is_derived_not_a_setting():
    """One source: the old top-level key is gone (set `beam:` instead), and Kubeflow has no Beam flags of its own."""
    with pytest.raises(ValueError, match="unknown config key 'beam_pipeline_args'"):
        config_lib.load("demo", overrides={"beam_pipeline_args": ["--direct_running_mode=multi_processing"]})
    with pytest.raises(ValueError, match="unknown config key 'kubeflow.beam_pipeline_args'"):
        config_lib.load("demo", overrides={"kubeflow": {"beam_pipeline_args": []}})
