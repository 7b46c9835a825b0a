"""`beam.runner: portable`: ExampleGen, StatisticsGen and Transform through a Beam job service.

Beam's own Python job service and an EXTERNAL worker pool run on this machine (loopback), standing in for
the Flink job server and the worker-pool sidecars of k8s/flink/. The oracle is the DirectRunner: the same
components, configured by the same `create_pipeline`, on the same data, must produce the same examples
and the same transform graph. "The same" means what the next components read, compared as decoded protos
and values, not as file bytes (shard names, record order across shards, protobuf map order and the
SavedModel's generated names may differ between runners):
- examples: per split, the same set of image filenames, each with an equal `tf.train.Example`;
- statistics and schema: the same example counts per split, and an equal inferred schema;
- transform graph: equal analyzer outputs (the profile's vocabularies, file by file), equal transformed
  metadata, both graphs give equal outputs on the same raw examples, and equal transformed examples per split.
"""

import glob
import os

import pytest
import tensorflow as tf
import yaml
from google.protobuf import json_format, text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.proto.orchestration import executable_spec_pb2, pipeline_pb2

from bench import beam_runners
from vocdet.pipeline import beam_args
from vocdet.pipeline import config as config_lib
from vocdet.pipeline.kubeflow import compiler as kubeflow

IMAGE = "registry.example.com/vocdet:1.0@sha256:" + "ab" * 32
BEAM_NODES = {"FileBasedExampleGen", "StatisticsGen", "Transform"}


def _package_beam_args(path) -> dict[str, list[str] | None]:
    """TFX node id -> the Beam flags in its task's node IR (None: not a Beam node), read from the package."""
    spec = next(yaml.safe_load_all(open(path)))
    found = {}
    for task in spec["root"]["dag"]["tasks"].values():
        label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
        args = spec["deploymentSpec"]["executors"][label]["container"]["args"]
        if "--node-ir" not in args:
            continue  # PrepareMetadataStore: not a TFX node
        node_ir = json_format.Parse(args[args.index("--node-ir") + 1], pipeline_pb2.Pipeline())
        deployment = pipeline_pb2.IntermediateDeploymentConfig()
        node_ir.deployment_config.Unpack(deployment)
        node_id = task["taskInfo"]["name"]
        executor = deployment.executor_specs.get(node_id)
        found[node_id] = None
        if executor is not None and executor.Is(executable_spec_pb2.BeamExecutableSpec.DESCRIPTOR):
            beam = executable_spec_pb2.BeamExecutableSpec()
            executor.Unpack(beam)
            found[node_id] = list(beam.beam_pipeline_args)
    return found


def test_compiled_beam_tasks_target_the_job_service(tmp_path):
    config = config_lib.load(
        "demo",
        overrides={
            "kubeflow": {"image": IMAGE},
            "beam": {"runner": "portable", "job_endpoint": "vocdet-beam-job-server:8099", "parallelism": 4},
        },
    )
    kubeflow.compile_pipeline(config, str(tmp_path / "pipeline.yaml"))
    found = _package_beam_args(tmp_path / "pipeline.yaml")
    expected = [
        "--runner=PortableRunner",
        "--job_endpoint=vocdet-beam-job-server:8099",
        "--environment_type=EXTERNAL",
        "--environment_config=localhost:50000",  # the worker pool sidecar (k8s/flink/)
        "--parallelism=4",
    ]
    assert {node: args for node, args in found.items() if args is not None} == {node: expected for node in BEAM_NODES}


def test_compiled_default_keeps_the_direct_runner_over_all_cores(tmp_path):
    config = config_lib.load("demo", overrides={"kubeflow": {"image": IMAGE}})
    kubeflow.compile_pipeline(config, str(tmp_path / "pipeline.yaml"))
    found = _package_beam_args(tmp_path / "pipeline.yaml")
    for node in BEAM_NODES:
        assert found[node] == ["--direct_running_mode=multi_processing", "--direct_num_workers=0"], node
    assert config.beam_pipeline_args == ["--direct_running_mode=in_memory"]  # `vocdet run` here


@pytest.fixture(scope="module")
def runs(small_voc_root, tmp_path_factory):
    """The data components on the DirectRunner (the local default) and through the portable runner."""
    work = tmp_path_factory.mktemp("beam-runners")
    base = config_lib.load("demo")
    direct = base.with_overrides({"output_dir": str(work / "direct")})
    results = {"direct": beam_runners.run_data_pipeline(direct, small_voc_root, direct.beam_pipeline_args)}
    with beam_runners.local_portable_services(str(work / "services")) as services:
        portable = base.with_overrides(
            {
                "output_dir": str(work / "portable"),
                "beam": {"runner": "portable", "job_endpoint": services.job_endpoint, "environment_config": services.worker_pool},
            }
        )
        args = portable.beam_pipeline_args
        assert args[:3] == ["--runner=PortableRunner", f"--job_endpoint={services.job_endpoint}", "--environment_type=EXTERNAL"]
        results["portable"] = beam_runners.run_data_pipeline(portable, small_voc_root, args)
    with open(work / "services" / "job-service.log") as handle:
        results["job_service_log"] = handle.read()
    with open(work / "services" / "worker-pool.log") as handle:
        results["worker_pool_log"] = handle.read()
    return results


def _records(folder: str) -> list[bytes]:
    files = sorted(glob.glob(os.path.join(folder, "*.gz")))
    assert files, folder
    return [record.numpy() for record in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _splits(uri: str) -> list[str]:
    return sorted(os.path.basename(path).removeprefix("Split-") for path in glob.glob(os.path.join(uri, "Split-*")))


def _examples_by_filename(folder: str) -> dict[bytes, tf.train.Example]:
    examples = [tf.train.Example.FromString(record) for record in _records(folder)]
    by_name = {example.features.feature["image/filename"].bytes_list.value[0]: example for example in examples}
    assert len(by_name) == len(examples), folder
    return by_name


def _deterministic(records: list[bytes]) -> list[bytes]:
    """Records as a sorted list of deterministic serializations (map order fixed), to compare as multisets."""
    return sorted(tf.train.Example.FromString(record).SerializeToString(deterministic=True) for record in records)


@pytest.mark.e2e
def test_the_portable_runner_really_ran_the_jobs(runs):
    """Each Beam component went through the job service, and its SDK workers came from the worker pool."""
    assert runs["job_service_log"].count("with state DONE") >= len(BEAM_NODES)
    assert "FAILED" not in runs["job_service_log"]
    assert runs["worker_pool_log"].count("Starting worker with command") >= 1


@pytest.mark.e2e
def test_examples_equal_the_direct_runners(runs):
    direct, portable = runs["direct"]["uris"]["examples"], runs["portable"]["uris"]["examples"]
    assert _splits(portable) == _splits(direct) == ["test", "train", "validation"]
    total = 0
    for split in _splits(direct):
        expected = _examples_by_filename(os.path.join(direct, f"Split-{split}"))
        found = _examples_by_filename(os.path.join(portable, f"Split-{split}"))
        assert sorted(found) == sorted(expected), split
        for name, example in expected.items():
            assert found[name] == example, (split, name)
        total += len(expected)
    assert total == 40


@pytest.mark.e2e
def test_statistics_counts_and_schema_equal_the_direct_runners(runs):
    from tensorflow_data_validation import load_stats_binary

    counts = {}
    for runner in ("direct", "portable"):
        uri = runs[runner]["uris"]["statistics"]
        counts[runner] = {
            split: load_stats_binary(os.path.join(uri, f"Split-{split}", "FeatureStats.pb")).datasets[0].num_examples
            for split in _splits(uri)
        }
    assert counts["portable"] == counts["direct"] and sum(counts["direct"].values()) == 40
    schemas = []
    for runner in ("direct", "portable"):
        with open(os.path.join(runs[runner]["uris"]["schema"], "schema.pbtxt")) as handle:
            schemas.append(text_format.Parse(handle.read(), schema_pb2.Schema()))
    assert schemas[1] == schemas[0]


@pytest.mark.e2e
def test_transform_graph_and_transformed_examples_equal_the_direct_runners(runs):
    import tensorflow_transform as tft

    direct, portable = (runs[runner]["uris"]["transform_graph"] for runner in ("direct", "portable"))
    # Analyzer outputs: the dataset profile's vocabularies (values and frequencies), file by file.
    assets = {}
    for runner, uri in (("direct", direct), ("portable", portable)):
        folder = os.path.join(uri, "transform_fn", "assets")
        assets[runner] = {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}
    assert assets["portable"] == assets["direct"] and len(assets["direct"]) >= 5
    assert all(content for content in assets["direct"].values())

    outputs = [tft.TFTransformOutput(uri) for uri in (direct, portable)]
    assert outputs[1].transformed_metadata.schema == outputs[0].transformed_metadata.schema
    assert outputs[1].raw_feature_spec() == outputs[0].raw_feature_spec()
    # Both graphs on the same raw examples.
    raw = _records(os.path.join(runs["direct"]["uris"]["examples"], "Split-train"))[:8]
    parsed = tf.io.parse_example(raw, outputs[0].raw_feature_spec())
    transformed = [output.transform_raw_features(dict(parsed)) for output in outputs]
    assert sorted(transformed[1]) == sorted(transformed[0]) and transformed[0]
    for key in transformed[0]:
        tf.debugging.assert_equal(_dense(transformed[1][key]), _dense(transformed[0][key]), message=key)

    direct_examples, portable_examples = (runs[runner]["uris"]["transformed_examples"] for runner in ("direct", "portable"))
    assert _splits(portable_examples) == _splits(direct_examples)
    for split in _splits(direct_examples):
        expected = _deterministic(_records(os.path.join(direct_examples, f"Split-{split}")))
        assert _deterministic(_records(os.path.join(portable_examples, f"Split-{split}"))) == expected, split


def _dense(value):
    if isinstance(value, tf.SparseTensor):
        return tf.sparse.to_dense(value)
    if isinstance(value, tf.RaggedTensor):
        return value.to_tensor()
    return value


def test_beam_flags_are_built_in_one_place_for_each_runner():
    """Local run flags come from the same function the compiler calls; portable EXTERNAL defaults to the sidecar."""
    beam = config_lib.BeamConfig(runner="portable", environment_config="127.0.0.1:50123", extra_args=["--sdk_worker_parallelism=2"])
    assert beam_args.pipeline_args(beam) == [
        "--runner=PortableRunner",
        "--job_endpoint=localhost:8099",
        "--environment_type=EXTERNAL",
        "--environment_config=127.0.0.1:50123",
        "--sdk_worker_parallelism=2",
    ]
    on_cluster = config_lib.BeamConfig(
        runner="portable", job_endpoint="vocdet-beam-job-server:8099", artifact_endpoint="vocdet-beam-job-server:8098"
    )
    assert beam_args.pipeline_args(on_cluster, on_cluster=True)[3:] == [
        "--environment_config=localhost:50000", "--artifact_endpoint=vocdet-beam-job-server:8098"
    ]
    docker = config_lib.BeamConfig(runner="portable", environment_type="DOCKER")
    assert "--environment_config=" + IMAGE in beam_args.pipeline_args(docker, image=IMAGE)
    with pytest.raises(ValueError, match="DOCKER needs an image"):
        beam_args.pipeline_args(docker)
