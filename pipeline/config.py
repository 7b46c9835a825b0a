"""The one typed configuration every entry point reads.

A tree of dataclasses (beam, data, model, train, eval, push, kubeflow) with defaults,
`validate()` and derived values, in the manner of TF Model Garden's
experiment configs. The model, train and eval sections are the components' own
(`components/settings.py`); this module composes them with the rest. Layering:
a named preset, then an optional YAML file, then command-line flags
(`with_overrides`), every value checked against its type. The CLI, the local
runner and the Kubeflow compiler all build the pipeline from a `PipelineConfig`;
each component receives only its slice (`transform_settings`,
`trainer_settings`, `evaluator_settings`), so no setting is defined twice and
TFX's cache reruns a component only when its own settings change.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from typing import Any

import yaml

from vocdet.components import voc_format
from vocdet.components.settings import (  # noqa: F401  (the sections, and their names, are part of this module's API)
    BLESSING_METRICS,
    BOUNDING_BOX_FORMATS,
    EvalConfig,
    EvaluatorSettings,
    ModelConfig,
    TrainConfig,
    TrainerSettings,
    TransformSettings,
)
from vocdet.components.trainer.backbones import BACKBONES  # noqa: F401
from vocdet.pipeline import beam_args



@dataclasses.dataclass
class DataConfig:
    """Where examples come from and how they are split."""

    # VOCdevkit or tfds VOC folders; empty means the generated sample dataset.
    data_dirs: list[str] = dataclasses.field(default_factory=list)
    # Format of the data root ("voc" or "tfds"); the CLI recognises it from --data.
    format: str = "voc"
    # tfds split names (VOC's train.txt, val.txt, test.txt lists).
    train_splits: list[str] = dataclasses.field(default_factory=lambda: ["train", "validation"])
    eval_split: str = "test"
    # Glob over VOC years for each side, e.g. "2007" to evaluate on VOC2007 test only.
    train_year: str = "*"
    eval_year: str = "*"
    # Data root laid out as span-<N>/...: ExampleGen ingests one span a run, the
    # newest unless `span` names one; Transform and the Trainer take the newest
    # `train_on_last_spans` spans ingested so far (TFX's SpanRangeStrategy).
    spans: bool = False
    span: int = 0
    train_on_last_spans: int = 1
    # How splits are made: "lists" (ImageSets lists, or a tool's split folders), "hash" (ExampleGen
    # splits every annotated image by a hash of its id, in `derived_split` shares), or "auto": lists
    # when the data's lists give every split, else hash (the CLI decides from --data).
    split_by: str = "auto"
    derived_split: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"train": 80, "validation": 10, "test": 10}
    )
    # Images above this many pixels are rejected from their header, before any decoding (a
    # 13000x13000 JPEG takes 500 MB decoded, and several of them a worker's memory).
    max_image_pixels: int = 50_000_000
    # Fail the run when any record is rejected, or an image is in more than one split, instead of reporting it.
    strict: bool = False
    # A schema kept with the project (`vocdet freeze-schema`): TFX's ImportSchemaGen reads it instead of
    # inferring one each run, and ExampleValidator stops the run, before Transform, when a data drop
    # breaks it (a new class id, a missing feature). Empty: SchemaGen infers the schema from the data.
    schema_file: str = ""
    # Class names in id order. Empty: taken from the data (a tfds build's labels
    # file, or the sorted names found in the VOC annotations). labels_file, one
    # name a line, overrides both.
    class_names: list[str] = dataclasses.field(default_factory=lambda: list(voc_format.VOC_CLASSES))
    labels_file: str = ""
    # Size of the generated sample dataset, used when data_dirs is empty.
    sample_images: int = 240
    sample_seed: int = 0

    def validate(self) -> None:
        splits = ("train", "validation", "test")
        if not self.train_splits or any(split not in splits for split in self.train_splits + [self.eval_split]):
            raise ValueError(f"data: train_splits and eval_split must be among {splits}")
        if self.eval_split in self.train_splits:
            raise ValueError(f"data: eval_split {self.eval_split!r} is also a training split")
        if self.format not in ("voc", "tfds"):
            raise ValueError(f"data.format must be 'voc' or 'tfds', got {self.format!r}")
        if (self.span or self.train_on_last_spans != 1) and not self.spans:
            raise ValueError("data.span and data.train_on_last_spans need data.spans (a span-<N>/ data root)")
        if self.span < 0 or self.train_on_last_spans < 1:
            raise ValueError("data.span must be >= 0 (0: newest) and data.train_on_last_spans >= 1")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError("data: class_names must be unique")
        if self.split_by not in ("auto", "lists", "hash"):
            raise ValueError(f"data.split_by must be 'auto', 'lists' or 'hash', got {self.split_by!r}")
        if self.split_by == "hash":
            needed = set(self.train_splits + [self.eval_split])
            shares = {split: self.derived_split.get(split, 0) for split in needed | set(self.derived_split)}
            if any((share > 0) != (split in needed) or share < 0 for split, share in shares.items()):
                raise ValueError(
                    f"data.derived_split must give a positive share to each split used, {sorted(needed)}, "
                    f"and 0 to any other; got {self.derived_split}"
                )
            if self.format != "voc" or self.train_year != self.eval_year:
                raise ValueError("data.split_by 'hash' needs VOC-format data and one year glob (train_year == eval_year)")
        if self.max_image_pixels < 1:
            raise ValueError(f"data.max_image_pixels must be positive, got {self.max_image_pixels}")


@dataclasses.dataclass
class PushConfig:
    """Where blessed models go, in TF Serving's `<base>/<model_name>/<version>` layout."""

    # Empty means `<output_dir>/serving`.
    serving_dir: str = ""
    model_name: str = "vocdet"
    # Versions kept in the serving directory (the newest is never deleted).
    keep_versions: int = 5
    # Eval images the candidate is queried with in a fresh process before a push.
    serving_check_images: int = 4

    def validate(self) -> None:
        if self.keep_versions < 1 or self.serving_check_images < 1:
            raise ValueError("push.keep_versions and push.serving_check_images must be at least 1")


@dataclasses.dataclass
class KubeflowConfig:
    """Where and how the pipeline runs on Kubeflow Pipelines (`vocdet compile/submit/schedule`).

    Paths are as the task containers see them: the PVC is mounted at
    `pvc_mount_path` in every task. TFX's pipeline root (its artefacts) is on the
    PVC unless `pipeline_root` names a gs:// bucket, which TensorFlow writes
    natively; `object_store_secret` then holds its credentials. ML Metadata is
    the cluster's own store, KFP's `metadata-grpc-service`.
    """

    # The image every task runs in (docker/Dockerfile); --image sets it. Pin it by digest
    # (registry.example.com/vocdet:1.0@sha256:...): a tag can be moved, `vocdet compile` warns about a tag alone
    # and refuses `:latest` or no tag at all.
    image: str = ""
    # TFX's pipeline root: a folder on the PVC or a gs:// URI; empty: `<pvc_mount_path>/pipeline_root`.
    pipeline_root: str = ""
    # A VOCdevkit (or span-<N>/) root or a tfds data dir on the PVC; a runtime parameter of each run.
    data_root: str = "/mnt/vocdet/data"
    serving_dir: str = "/mnt/vocdet/serving"
    # The service account runs use (k8s/rbac.yaml).
    service_account: str = "vocdet-pipeline-runner"
    pvc_name: str = "vocdet-data"
    pvc_mount_path: str = "/mnt/vocdet"
    # A Kubernetes secret with the object-store key file (GCP service account JSON) for a gs://
    # pipeline root, mounted in every task; empty: none, or the nodes' own credentials (GKE Workload Identity).
    object_store_secret: str = ""
    object_store_secret_key: str = "key.json"
    # KFP's ML Metadata service, which every KFP install runs (TFX records its runs there).
    metadata_grpc_host: str = "metadata-grpc-service.kubeflow"
    metadata_grpc_port: int = 8080
    # Resources of every task, and of the Trainer.
    cpu_limit: float = 4.0
    memory_limit_gb: float = 16.0
    trainer_cpu_limit: float = 8.0
    trainer_memory_limit_gb: float = 32.0
    # GPUs of each Trainer pod: the task's own pod, or each replica of the TFJob below.
    trainer_gpus: int = 1
    # Trainer pods. 1: the Trainer trains in its KFP task's pod (MirroredStrategy over its GPUs).
    # N > 1: the task submits a Kubeflow Training Operator TFJob of one chief and N-1 workers
    # (MultiWorkerMirroredStrategy over N x trainer_gpus GPUs), each with the trainer_* resources,
    # and waits for it; the task itself then gets cpu_limit and memory_limit_gb and no GPU.
    trainer_workers: int = 1
    # The Kubernetes resource KFP asks for (accelerator type in KFP's ResourceSpec).
    gpu_resource: str = "nvidia.com/gpu"
    gpu_node_selector: dict[str, str] = dataclasses.field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    gpu_tolerations: list[dict[str, str]] = dataclasses.field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    )

    @property
    def tfx_pipeline_root(self) -> str:
        return self.pipeline_root or os.path.join(self.pvc_mount_path, "pipeline_root")

    @property
    def image_pinned_by_digest(self) -> bool:
        return bool(self.image) and image_reference(self.image)[2] is not None

    def validate(self) -> None:
        if self.image:
            image_reference(self.image)
        if self.pipeline_root and "://" in self.pipeline_root and not self.pipeline_root.startswith("gs://"):
            raise ValueError(
                f"kubeflow.pipeline_root must be on the PVC or a gs:// URI (TensorFlow 2.16 writes no other object "
                f"store without tensorflow-io), got {self.pipeline_root!r}"
            )
        if self.trainer_gpus < 0 or min(self.cpu_limit, self.memory_limit_gb) <= 0:
            raise ValueError("kubeflow: trainer_gpus must be >= 0, cpu and memory limits positive")
        if self.trainer_workers < 1:
            raise ValueError(f"kubeflow.trainer_workers must be >= 1, got {self.trainer_workers}")
        if not 0 < self.metadata_grpc_port < 65536:
            raise ValueError(f"kubeflow.metadata_grpc_port must be a TCP port, got {self.metadata_grpc_port}")
        for name in ("data_root", "serving_dir", "pipeline_root"):
            path = getattr(self, name)
            if path and not path.startswith(self.pvc_mount_path.rstrip("/") + "/") and "://" not in path:
                raise ValueError(
                    f"kubeflow.{name}: {path!r} is neither under the PVC mount {self.pvc_mount_path} nor a URI"
                )


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def image_reference(image: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of a container image reference; `:latest`, no tag and no digest, or a bad digest raise."""
    name, _, digest = image.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        raise ValueError(f"kubeflow.image {image!r}: the digest must be sha256: and 64 hex digits")
    last = name.rsplit("/", 1)[-1]  # a registry's port (host:5000/...) is not a tag
    tag = last.partition(":")[2] or None if ":" in last else None
    if tag is not None:
        name = name[: len(name) - len(tag) - 1]
    if tag == "latest" or (tag is None and not digest):
        raise ValueError(
            f"kubeflow.image {image!r}: {'the tag latest' if tag else 'an image without a tag'} names whatever was pushed "
            "last; "
            "pin the image by digest (NAME@sha256:..., as docker push prints it)"
        )
    return name, tag, digest or None


@dataclasses.dataclass
class BeamConfig:
    """Where ExampleGen, StatisticsGen and Transform run their Beam pipelines, here and on Kubeflow.

    `beam_args.pipeline_args` turns this section into Beam's flags, for the local runner and the
    Kubeflow compiler alike.
    """

    # "direct" (in the node's own process), "portable" (a Beam job service: Flink's on the cluster,
    # k8s/flink/) or "dataflow".
    runner: str = "direct"
    # direct: "in_memory", "multi_threading" or "multi_processing"; empty: in_memory for a run here,
    # multi_processing over all of a task's cores on Kubeflow.
    direct_running_mode: str = ""
    # direct, with multi_threading or multi_processing: workers (0: one per core).
    direct_num_workers: int = 0
    # portable: the job service (host:port), e.g. the Flink job server's Service on the cluster.
    job_endpoint: str = "localhost:8099"
    # portable: where SDK workers run: EXTERNAL (a worker pool, the sidecar of each Flink task manager),
    # DOCKER, PROCESS or LOOPBACK (in the submitting process; tests only).
    environment_type: str = "EXTERNAL"
    # portable: EXTERNAL: the worker pool's address (empty: localhost:50000, the sidecar);
    # DOCKER: the image (empty: kubeflow.image); PROCESS: the worker command as JSON.
    environment_config: str = ""
    # portable: where the job's files are staged (host:port); empty: the address the job service returns,
    # which another pod may not reach (a job server bound to 0.0.0.0); on the cluster, the job server's
    # Service, port 8098 (k8s/flink/job-server.yaml).
    artifact_endpoint: str = ""
    # portable: the job's parallelism on Flink (0: the job server's default).
    parallelism: int = 0
    # dataflow: the Google Cloud project, region and a gs:// temp location; the workers run kubeflow.image.
    project: str = ""
    region: str = ""
    temp_location: str = ""
    # More Beam flags for any runner (e.g. --max_num_workers=50 for Dataflow); not those set above.
    extra_args: list[str] = dataclasses.field(default_factory=list)

    def validate(self) -> None:
        beam_args.validate(self)


@dataclasses.dataclass
class PipelineConfig:
    """Everything one pipeline run needs."""

    pipeline_name: str = "vocdet"
    output_dir: str = "outputs"
    enable_cache: bool = True
    beam: BeamConfig = dataclasses.field(default_factory=BeamConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    push: PushConfig = dataclasses.field(default_factory=PushConfig)
    kubeflow: KubeflowConfig = dataclasses.field(default_factory=KubeflowConfig)

    # Derived locations, all under output_dir unless set otherwise.
    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def sample_dir(self) -> str:
        return os.path.join(self.output_dir, "sample-data")

    @property
    def serving_dir(self) -> str:
        return self.push.serving_dir or os.path.join(self.output_dir, "serving")

    @property
    def beam_pipeline_args(self) -> list[str]:
        """Beam's flags for a run on this machine (the Kubeflow compiler asks `beam_args` with on_cluster=True)."""
        return beam_args.pipeline_args(self.beam, image=self.kubeflow.image)

    def validate(self) -> "PipelineConfig":
        for section in (self.beam, self.data, self.model, self.train, self.eval, self.push, self.kubeflow):
            section.validate()
        if self.beam.runner == "dataflow" and not self.kubeflow.image:
            raise ValueError("beam.runner dataflow runs the pipeline image on its workers: set kubeflow.image (--image)")
        return self

    # Each component's own slice (its custom_config), so that TFX reruns it only when it changes.
    def transform_settings(self) -> TransformSettings:
        return TransformSettings(self.model.bounding_box_format, self.model.image_size, list(self.data.class_names))

    def trainer_settings(self) -> TrainerSettings:
        return TrainerSettings(self.model, self.train, list(self.data.class_names))

    def evaluator_settings(self) -> EvaluatorSettings:
        return EvaluatorSettings(
            self.eval, list(self.data.class_names), self.data.eval_split, self.model.display_confidence_threshold
        )

    def with_overrides(self, overrides: dict[str, Any]) -> "PipelineConfig":
        """Returns a copy with nested keys replaced, e.g. {"train": {"epochs": 3}}."""
        merged = _deep_merge(PipelineConfig, dataclasses.asdict(self), overrides, path="")
        return _from_dict(PipelineConfig, merged).validate()


def demo() -> PipelineConfig:
    """Sample data on a 2-core CPU in a few minutes: a small RetinaNet fine-tuned from the shipped checkpoint.

    The checkpoint (`model.init_checkpoint: sample`, `make sample-weights`) is this architecture
    trained on another draw of the generated sample (README, Training); from random weights, a
    few CPU minutes learn nothing. Colour augmentation is off: in the generated sample a class is
    first of all its hue, which RandAugment's colour operations change.
    """
    return PipelineConfig(
        model=ModelConfig(
            backbone="csp_darknet_tiny",
            image_size=256,
            anchor_size=2.0,
            head_conv_layers=1,
            pyramid_filters=64,
            init_checkpoint="sample",
        ),
        train=TrainConfig(
            epochs=12,
            batch_size_per_replica=8,
            optimizer="adam",
            # Fine-tuning: half the rate the checkpoint was trained with.
            base_learning_rate=0.002,
            warmup_steps=40,
            jitter_scale=[0.8, 1.25],
            rand_augment_magnitude=0.0,
        ),
        # A model that learned nothing is not pushed.
        eval=EvalConfig(blessing_metric="coco/AP50", blessing_threshold=0.5),
    )


def voc_guide() -> PipelineConfig:
    """The KerasCV guide's recipe: ResNet50, 640x640, batch 16 per GPU, 50 epochs."""
    return PipelineConfig(
        # Train on VOC2007 + VOC2012 train and validation; VOC2012's test has no annotations.
        data=DataConfig(eval_year="2007"),
        model=ModelConfig(backbone="resnet50", image_size=640, freeze_backbone=True),
        train=TrainConfig(epochs=50, batch_size_per_replica=16),
    )


PRESETS: dict[str, typing.Callable[[], PipelineConfig]] = {"demo": demo, "voc_guide": voc_guide}


def load(preset: str = "demo", yaml_path: str | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """preset -> YAML file -> overrides, merged, then validated once (checks may span layers)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    merged = dataclasses.asdict(PRESETS[preset]())
    if yaml_path:
        from_file = _read_yaml(yaml_path)
        if not isinstance(from_file, dict):
            raise ValueError(f"{yaml_path}: expected a mapping of config sections")
        merged = _deep_merge(PipelineConfig, merged, from_file, path="")
    merged = _deep_merge(PipelineConfig, merged, overrides or {}, path="")
    return _from_dict(PipelineConfig, merged).validate()


def _read_yaml(path: str) -> Any:
    """The config file's contents; a folder, a missing file or YAML that does not parse is one line naming the file."""
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder; the config file is one YAML file (e.g. my.yaml)")
    try:
        with open(path) as handle:
            return yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ValueError(f"{path}: no such config file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{path}: not valid YAML{where} ({problem}); fix the file") from None


def _deep_merge(cls: type, base: dict[str, Any], overrides: dict[str, Any], path: str) -> dict[str, Any]:
    """`overrides` over `base` for dataclass `cls`: sections merge key by key, other values are replaced."""
    hints = typing.get_type_hints(cls)
    merged = dict(base)
    for key, value in overrides.items():
        where = f"{path}{key}"
        if key not in base:
            raise ValueError(f"unknown config key {where!r}")
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise ValueError(f"config key {where!r} is a section; give a mapping")
            merged[key] = _deep_merge(hints[key], base[key], value, path=f"{where}.")
        else:
            merged[key] = value
    return merged


def _from_dict(cls: type, values: dict[str, Any], path: str = ""):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in values:
            continue
        value = values[field.name]
        if dataclasses.is_dataclass(hints[field.name]):
            value = _from_dict(hints[field.name], value, path=f"{path}{field.name}.")
        else:
            value = _typed(f"{path}{field.name}", hints[field.name], value)
        kwargs[field.name] = value
    return cls(**kwargs)


def _typed(key: str, hint, value):
    """`value` checked against the field's type (an int where a float is due becomes a float)."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        (hint,) = [argument for argument in arguments if argument is not type(None)]
        return _typed(key, hint, value)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"config key {key!r} must be a list, got {value!r}")
        return [_typed(f"{key}[{index}]", arguments[0], item) for index, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config key {key!r} must be a mapping, got {value!r}")
        return {_typed(key, arguments[0], k): _typed(f"{key}.{k}", arguments[1], v) for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
        raise ValueError(f"config key {key!r} must be {names.get(hint, hint.__name__)}, got {value!r}")
    return value
