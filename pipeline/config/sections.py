"""The data, push, Kubeflow and Beam sections of the configuration, with their checks.

The model, train and eval sections are the components' own (`vocdet.components.settings`), since
the Trainer and the evaluator receive them as their settings; these four are the pipeline's.
"""

from __future__ import annotations

import dataclasses
import os
import re

from vocdet.components import atomic_pusher, voc_example_gen, voc_format
from vocdet.pipeline import beam_args
from vocdet.pipeline.data import layout
from vocdet.pipeline.metadata import store as metadata_store


@dataclasses.dataclass
class DataConfig:
    """Where examples come from and how they are split."""

    # VOCdevkit or tfds VOC folders; empty means the generated sample dataset.
    data_dirs: list[str] = dataclasses.field(default_factory=list)
    # Format of the data root ("voc" or "tfds"); the CLI recognises it from --data.
    format: str = layout.VOC
    # tfds split names (VOC's train.txt, val.txt, test.txt lists).
    train_splits: list[str] = dataclasses.field(default_factory=lambda: ["train", "validation"])
    eval_split: str = "test"
    # The data the Trainer tunes the decoder's NMS IoU and the recommended score threshold on, before
    # the export: empty means the training splits themselves (VOC's protocol: train on trainval, score
    # on test, which never tunes anything); a split of train_splits (e.g. "validation") is held out
    # from training for it (docs/evaluation.md, "Honest splits").
    tuning_split: str = ""
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
    split_by: str = layout.SPLIT_BY_AUTO
    derived_split: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"train": 80, "validation": 10, "test": 10}
    )
    # Images above this many pixels are rejected from their header, before any decoding.
    max_image_pixels: int = voc_example_gen.DEFAULT_MAX_IMAGE_PIXELS
    # Annotations larger than this many bytes (checked before reading), or with more objects than this
    # (counted while parsing), are rejected; the class-name scan skips them.
    max_annotation_bytes: int = voc_example_gen.DEFAULT_MAX_ANNOTATION_BYTES
    max_objects_per_image: int = voc_example_gen.DEFAULT_MAX_OBJECTS_PER_IMAGE
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

    @property
    def fit_splits(self) -> list[str]:
        """The splits the model is fitted on: the training splits but a held-out tuning split."""
        return [split for split in self.train_splits if split != self.tuning_split]

    @property
    def tuning_splits(self) -> list[str]:
        """The splits the decoder and the score threshold are tuned on."""
        return [self.tuning_split] if self.tuning_split else list(self.train_splits)

    def validate(self) -> None:
        if not self.train_splits or any(split not in layout.SPLITS for split in self.train_splits + [self.eval_split]):
            raise ValueError(f"data: train_splits and eval_split must be among {layout.SPLITS}")
        if self.eval_split in self.train_splits:
            raise ValueError(f"data: eval_split {self.eval_split!r} is also a training split")
        if self.tuning_split and (self.tuning_split not in self.train_splits or len(self.train_splits) < 2):
            raise ValueError(
                f"data.tuning_split {self.tuning_split!r} must be one of train_splits {self.train_splits}, "
                "and another must be left to train on"
            )
        if self.format not in layout.FORMATS:
            raise ValueError(f"data.format must be one of {layout.FORMATS}, got {self.format!r}")
        if (self.span or self.train_on_last_spans != 1) and not self.spans:
            raise ValueError("data.span and data.train_on_last_spans need data.spans (a span-<N>/ data root)")
        if self.span < 0 or self.train_on_last_spans < 1:
            raise ValueError("data.span must be >= 0 (0: newest) and data.train_on_last_spans >= 1")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError("data: class_names must be unique")
        same = voc_format.names_equal_but_for_case(self.class_names)
        if same:
            raise ValueError(f"data.class_names: {same[0]!r} and {same[1]!r} differ only in case; annotations match "
                             "names case-blind, so they would be one class")
        if self.split_by not in layout.SPLIT_BY_CHOICES:
            raise ValueError(f"data.split_by must be one of {layout.SPLIT_BY_CHOICES}, got {self.split_by!r}")
        if self.split_by == layout.SPLIT_BY_HASH:
            needed = set(self.train_splits + [self.eval_split])
            shares = {split: self.derived_split.get(split, 0) for split in needed | set(self.derived_split)}
            if any((share > 0) != (split in needed) or share < 0 for split, share in shares.items()):
                raise ValueError(
                    f"data.derived_split must give a positive share to each split used, {sorted(needed)}, "
                    f"and 0 to any other; got {self.derived_split}"
                )
            if self.format != layout.VOC or self.train_year != self.eval_year:
                raise ValueError("data.split_by 'hash' needs VOC-format data and one year glob (train_year == eval_year)")
        for key in ("max_image_pixels", "max_annotation_bytes", "max_objects_per_image"):
            if getattr(self, key) < 1:
                raise ValueError(f"data.{key} must be positive, got {getattr(self, key)}")


@dataclasses.dataclass
class PushConfig:
    """Where blessed models go, in TF Serving's `<base>/<model_name>/<version>` layout."""

    # Empty means `<output_dir>/serving`.
    serving_dir: str = ""
    model_name: str = "vocdet"
    # Versions kept in the serving directory (the newest is never deleted).
    keep_versions: int = atomic_pusher.DEFAULT_KEEP_VERSIONS
    # Push a model blessed without a baseline over a version the serving folder already has. Off: such a
    # version came from elsewhere (a new metadata store, a copy by hand), and is not replaced unjudged.
    replace_unknown_serving: bool = False
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
    vocdet's own store, `metadata` (pipeline/metadata/store.py): KFP's
    `metadata-grpc-service` is gone from KFP (kubeflow/pipelines#13986).
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
    # vocdet's ML Metadata store: mysql://USER@HOST:PORT/DB (k8s/metadata-store.yaml), or grpc://HOST:PORT (an
    # ML Metadata server, e.g. KFP's metadata-grpc-service where it still runs). Never a password: the tasks
    # read it from $VOCDET_METADATA_PASSWORD, filled from `metadata_secret`.
    metadata: str = "mysql://vocdet@vocdet-metadata:3306/mlmd"
    # The Kubernetes secret (and its key) with the store's password, put into every task's environment.
    metadata_secret: str = "vocdet-metadata"
    metadata_secret_key: str = "password"
    # How long a task waits for the store to answer (its pod starting, a restart) before it fails.
    metadata_wait_seconds: float = 300.0
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
        if metadata_store.StoreUrl.parse(self.metadata).scheme == "sqlite":
            raise ValueError(
                "kubeflow.metadata: an SQLite file cannot serve tasks running at once on several nodes; name a "
                "mysql:// or grpc:// store"
            )
        if self.metadata_wait_seconds < 0:
            raise ValueError(f"kubeflow.metadata_wait_seconds must be >= 0, got {self.metadata_wait_seconds}")
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
