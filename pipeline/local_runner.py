"""Runs the pipeline on this machine: TFX's LocalDagRunner or BeamDagRunner.

Binds the environment only (ML Metadata SQLite store, data root, Beam args)
and, after the run, reads ML Metadata for a short summary a person can read:
the evaluation numbers, the blessing decision and where the model was pushed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from pipeline.config import PipelineConfig
from pipeline.pipeline import create_ingest_pipeline, create_pipeline

RUNNERS = ("local", "beam")


@dataclasses.dataclass
class RunSummary:
    metrics: dict[str, float]
    num_eval_images: int
    evaluation_dir: str
    blessed: bool
    blessing_reasons: list[str]
    pushed_model_dir: str | None
    ingest_summary: dict
    data_profile: str | None = None
    # The blessed model the newest Trainer run started from (train.warm_start), if any.
    warm_started_from: str | None = None

    def lines(self) -> list[str]:
        lines = [
            f"evaluation: COCO mAP@[.5:.95] {self.metrics['coco/AP']:.3f}, mAP@0.5 {self.metrics['coco/AP50']:.3f}, "
            f"VOC2007 mAP@0.5 {self.metrics['voc/mAP50_11point']:.3f} on {self.num_eval_images} images",
            f"report: {os.path.join(self.evaluation_dir, 'report.md')} (per-class AP, PR curves, gallery)",
            f"blessed: {'yes' if self.blessed else 'no'} ({'; '.join(self.blessing_reasons)})",
            f"pushed model: {self.pushed_model_dir}" if self.pushed_model_dir else "pushed model: none (not blessed)",
        ]
        lines.extend(f"data {line}" for line in count_lines(self.ingest_summary))
        if self.data_profile:
            lines.append(f"data profile (class counts, box sizes vs anchors): {self.data_profile}")
        if self.warm_started_from:
            lines.append(f"warm-started from the blessed model {self.warm_started_from}")
        return lines


def count_lines(counts: dict[str, dict[str, int]]) -> list[str]:
    return [
        f"{split}: {c['written']} examples ({c['repaired']} repaired, {c['rejected']} rejected)"
        for split, c in sorted(counts.items())
    ]


@contextlib.contextmanager
def _tfx_argv():
    """TFX's Beam executors parse `sys.argv` with absl flags; vocdet's own arguments are not for them."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def metadata_config(config: PipelineConfig):
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)


def run(config: PipelineConfig, data_root: str, runner: str = "local") -> RunSummary:
    """Runs the whole pipeline and returns what it produced."""
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")
    os.makedirs(config.output_dir, exist_ok=True)
    pipeline = create_pipeline(config, data_root, metadata_connection_config=metadata_config(config))
    with _tfx_argv():
        if runner == "beam":
            from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner  # not exported in tfx.v1 (1.16)

            BeamDagRunner().run(pipeline)
        else:
            tfx.orchestration.LocalDagRunner().run(pipeline)
    return summarize(config)


def ingest(config: PipelineConfig, data_root: str) -> tuple[str, dict[str, dict[str, int]]]:
    """Runs ExampleGen alone; returns (Examples directory, counts per split)."""
    os.makedirs(config.output_dir, exist_ok=True)
    with _tfx_argv():
        tfx.orchestration.LocalDagRunner().run(
            create_ingest_pipeline(config, data_root, metadata_connection_config=metadata_config(config))
        )
    store = metadata_store.MetadataStore(metadata_config(config))
    examples = max(store.get_artifacts_by_type("Examples"), key=lambda artifact: artifact.id)
    return examples.uri, ingest_counts(examples.uri)


def ingest_counts(examples_uri: str) -> dict[str, dict[str, int]]:
    """Per split: the records written, and for VOCdevkit input the repaired and rejected ones."""
    import tensorflow as tf

    from components.voc_example_gen import executor as voc_executor

    report = os.path.join(examples_uri, voc_executor.REPORT_DIR, voc_executor.SUMMARY_FILE)
    if os.path.exists(report):
        with open(report) as handle:
            counts = json.load(handle)
        return {split: {**c, "written": c["written"] + c["repaired"]} for split, c in counts.items()}
    counts = {}
    for split_dir in sorted(tf.io.gfile.glob(os.path.join(examples_uri, "Split-*"))):
        files = tf.io.gfile.glob(os.path.join(split_dir, "*"))
        written = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
        counts[os.path.basename(split_dir).removeprefix("Split-")] = {"written": written, "repaired": 0, "rejected": 0}
    return counts


def summarize(config: PipelineConfig) -> RunSummary:
    """The newest evaluation, blessing and push recorded in this pipeline's ML Metadata."""
    return summarize_metadata(config.metadata_path)


def summarize_metadata(metadata_path: str) -> RunSummary:
    """The newest evaluation, blessing and push recorded in the ML Metadata store at `metadata_path`."""
    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))

    def newest(type_name: str):
        artifacts = store.get_artifacts_by_type(type_name)
        if not artifacts:
            raise RuntimeError(f"no {type_name} artefact in {metadata_path}: did the pipeline run?")
        return max(artifacts, key=lambda artifact: artifact.id)

    evaluation = newest("ModelEvaluation")
    with open(os.path.join(evaluation.uri, "metrics.json")) as handle:
        metrics = json.load(handle)
    with open(os.path.join(evaluation.uri, "blessing.json")) as handle:
        blessing = json.load(handle)
    pushed = newest("PushedModel")
    was_pushed = pushed.custom_properties["pushed"].int_value == 1 if "pushed" in pushed.custom_properties else False
    # Transform writes Examples too; ExampleGen's are the ones it consumed.
    transformed_uris = {a.uri for a in store.get_artifacts_by_type("Examples") if "/Transform/" in a.uri}
    raw_examples = max(
        (a for a in store.get_artifacts_by_type("Examples") if a.uri not in transformed_uris), key=lambda a: a.id
    )
    return RunSummary(
        metrics=metrics["metrics"],
        num_eval_images=metrics["num_images"],
        evaluation_dir=evaluation.uri,
        blessed=blessing["blessed"],
        blessing_reasons=blessing["reasons"],
        pushed_model_dir=pushed.custom_properties["pushed_destination"].string_value if was_pushed else None,
        ingest_summary=ingest_counts(raw_examples.uri),
        data_profile=_existing(os.path.join(newest("ModelRun").uri, "data_profile.png")),
        warm_started_from=trainer_base_model(store),
    )


def newest_trainer_execution(store):
    """The newest Trainer execution recorded in ML Metadata, or None."""
    trainer_types = {t.id for t in store.get_execution_types() if t.name.endswith(".Trainer")}
    trainers = [e for e in store.get_executions() if e.type_id in trainer_types]
    return max(trainers, key=lambda execution: execution.id) if trainers else None


def trainer_base_model(store) -> str | None:
    """URI of the `base_model` the newest Trainer execution consumed (None: trained from scratch)."""
    newest_trainer = newest_trainer_execution(store)
    if newest_trainer is None:
        return None
    for event in store.get_events_by_execution_ids([newest_trainer.id]):
        if event.type == metadata_store_pb2.Event.INPUT and event.path.steps[0].key == "base_model":
            return store.get_artifacts_by_id([event.artifact_id])[0].uri
    return None


def _existing(path: str) -> str | None:
    return path if os.path.exists(path) else None
