"""What a run on this machine produced, read back from its ML Metadata store, for a person to read.

The evaluation numbers, the blessing decision, where the model was pushed, the data's counts and
notes, and which components came from TFX's cache: all from the events of the newest run's own
executions, found by node id (`Trainer`, `Pusher`, ...), never by type name.
"""

from __future__ import annotations

import dataclasses
import json
import os

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from vocdet.components import trainer as trainer_record
from vocdet.components.atomic_pusher import executor as pusher_executor
from vocdet.pipeline.config import PipelineConfig


@dataclasses.dataclass
class RunSummary:
    metrics: dict[str, float]
    num_eval_images: int
    evaluation_dir: str
    blessed: bool
    blessing_reasons: list[str]
    pushed_model_dir: str | None
    ingest_summary: dict
    already_serving: bool = False
    # Why a blessed model was not pushed (the Pusher's reason), if it was not.
    not_pushed_reason: str | None = None
    data_profile: str | None = None
    # The blessed model the newest Trainer run started from (train.warm_start), if any.
    warm_started_from: str | None = None
    # Components served from TFX's cache in this run.
    cached: list[str] = dataclasses.field(default_factory=list)
    # How the data was split, and images found twice (ingest_notes).
    data_notes: list[str] = dataclasses.field(default_factory=list)
    # The Trainer's best epoch and its validation (components.trainer.best_epoch_line), and its curves.
    training: str | None = None
    training_curves: str | None = None

    def lines(self) -> list[str]:
        lines = [
            *([self.training + (f"; curves: {self.training_curves}" if self.training_curves else "")]
              if self.training else []),
            f"evaluation: COCO mAP@[.5:.95] {self.metrics['coco/AP']:.3f}, mAP@0.5 {self.metrics['coco/AP50']:.3f}, "
            f"VOC2007 mAP@0.5 {self.metrics['voc/mAP50_11point']:.3f} on {self.num_eval_images} images",
            *self._operating_point_lines(),
            f"report: {os.path.join(self.evaluation_dir, 'report.md')} "
            "(per-class AP, PR and F1 curves, confusion matrix, errors, gallery)",
            f"blessed: {'yes' if self.blessed else 'no'} ({'; '.join(self.blessing_reasons)})",
            (f"pushed model: already serving as version {os.path.basename(self.pushed_model_dir)} ({self.pushed_model_dir})"
             if self.already_serving else f"pushed model: {self.pushed_model_dir}")
            if self.pushed_model_dir
            else f"pushed model: none ({self.not_pushed_reason or 'not blessed'})",
        ]
        lines.extend(f"data {line}" for line in count_lines(self.ingest_summary))
        lines.extend(f"data {line}" for line in self.data_notes)
        if self.data_profile:
            lines.append(f"data profile (class counts, box sizes vs anchors): {self.data_profile}")
        if self.warm_started_from:
            lines.append(f"warm-started from the blessed model {self.warm_started_from}")
        if self.cached:
            lines.append(f"from TFX's cache (unchanged inputs and settings): {', '.join(self.cached)}")
        return lines


    def _operating_point_lines(self) -> list[str]:
        """The model's cut and what it gives on the eval split; its TIDE errors, the costliest first."""
        metrics = self.metrics
        if "operating/min_score" not in metrics:
            return []
        lines = [f"recommended min score {metrics['operating/min_score']:.2f} "
                 f"(P {metrics['operating/precision']:.2f}, R {metrics['operating/recall']:.2f})"]  # fmt: skip
        costs = sorted(((value, key.split("/")[1].removesuffix("_dAP50")) for key, value in metrics.items()
                        if key.startswith("tide/")), reverse=True)  # fmt: skip
        if costs:
            lines.append("errors (TIDE, mAP@0.5 each costs): " + ", ".join(f"{kind} {value:.3f}" for value, kind in costs))
        return lines


def count_lines(counts: dict[str, dict[str, int]]) -> list[str]:
    return [
        f"{split}: {c['written']} examples ({c['repaired']} repaired, {c['rejected']} rejected)"
        for split, c in sorted(counts.items())
    ]


def ingest_counts(examples_uri: str) -> dict[str, dict[str, int]]:
    """Per split: the records written, and for VOCdevkit input the repaired and rejected ones."""
    import tensorflow as tf

    from vocdet.components.voc_example_gen import executor as voc_executor

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


def ingest_notes(examples_uri: str) -> list[str]:
    """The repairs by kind, how the splits were made, and images found twice, from the VOC ExampleGen's report (none for tfds)."""
    from vocdet.components.voc_example_gen import executor as voc_executor

    report_dir = os.path.join(examples_uri, voc_executor.REPORT_DIR)
    notes = voc_executor.repair_lines(examples_uri)  # turned upright, rescaled from <size>, names read case-blind
    split_file = os.path.join(report_dir, voc_executor.SPLIT_FILE)
    if os.path.exists(split_file):
        with open(split_file) as handle:
            notes.append(f"split: {json.load(handle)['description']}")
    duplicates_file = os.path.join(report_dir, voc_executor.DUPLICATES_FILE)
    if os.path.exists(duplicates_file):
        with open(duplicates_file) as handle:
            duplicates = json.load(handle)
        if duplicates["in_several_splits"]:
            notes.append(
                f"leakage: {len(duplicates['in_several_splits'])} images are in more than one split; see {duplicates_file}"
            )
        if duplicates["repeated_within_split"]:
            notes.append(
                f"repeats: {len(duplicates['repeated_within_split'])} images are listed twice in one split; see {duplicates_file}"
            )
    return notes


def summarize(config: PipelineConfig) -> RunSummary:
    """The newest evaluation, blessing and push recorded in this pipeline's ML Metadata."""
    return summarize_metadata(config.metadata_path)


def summarize_metadata(metadata_path: str) -> RunSummary:
    """What the newest run recorded in the ML Metadata SQLite store at `metadata_path`."""
    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))
    return summarize_store(store, metadata_path)


def summarize_store(store: metadata_store.MetadataStore, where: str, run_id: str | None = None) -> RunSummary:
    """What run `run_id` (default: the newest) recorded in `store`, read from that run's context.

    Every artefact comes from the events of this run's own executions (cached ones included), never
    from the newest artefact of a type, which may belong to another run. `where` names the store in errors.
    """
    if run_id is not None:
        run = store.get_context_by_type_and_name("pipeline_run", run_id)
        if run is None:
            raise RuntimeError(f"no pipeline run {run_id} in {where}: did the pipeline run?")
    else:
        runs = store.get_contexts_by_type("pipeline_run")
        if not runs:
            raise RuntimeError(f"no pipeline run in {where}: did the pipeline run?")
        run = max(runs, key=lambda context: context.id)
    nodes = run_nodes(store, run)

    def artifact(node_id: str, key: str, event_type=metadata_store_pb2.Event.OUTPUT):
        found = _event_artifacts(store, nodes.get(node_id), key, event_type)
        if not found:
            raise RuntimeError(f"run {run.name} in {where} has no {node_id} {key}: did the pipeline finish?")
        return found[0]

    evaluation = artifact("CocoEvaluator", "evaluation")
    with open(os.path.join(evaluation.uri, "metrics.json")) as handle:
        metrics = json.load(handle)
    with open(os.path.join(evaluation.uri, "blessing.json")) as handle:
        blessing = json.load(handle)
    pushed = artifact("Pusher", "pushed_model")
    examples = artifact("CocoEvaluator", "examples", metadata_store_pb2.Event.INPUT)
    was_pushed = pushed.custom_properties["pushed"].int_value == 1 if "pushed" in pushed.custom_properties else False
    base_models = _event_artifacts(store, nodes.get("Trainer"), "base_model", metadata_store_pb2.Event.INPUT)
    model_run = artifact("Trainer", "model_run").uri
    training = trainer_record.read_training_record(model_run)
    return RunSummary(
        metrics=metrics["metrics"],
        num_eval_images=metrics["num_images"],
        evaluation_dir=evaluation.uri,
        blessed=blessing["blessed"],
        blessing_reasons=blessing["reasons"],
        pushed_model_dir=pushed.custom_properties["pushed_destination"].string_value if was_pushed else None,
        already_serving=was_pushed and pushed.custom_properties[pusher_executor.ALREADY_SERVING_KEY].int_value == 1
        if pusher_executor.ALREADY_SERVING_KEY in pushed.custom_properties else False,
        not_pushed_reason=pushed.custom_properties[pusher_executor.NOT_PUSHED_REASON_KEY].string_value
        if pusher_executor.NOT_PUSHED_REASON_KEY in pushed.custom_properties else None,
        ingest_summary=ingest_counts(examples.uri),
        data_notes=ingest_notes(examples.uri),
        data_profile=_existing(os.path.join(model_run, "data_profile.png")),
        training=trainer_record.best_epoch_line(training) if training else None,
        training_curves=_existing(os.path.join(model_run, trainer_record.RESULTS_PLOT_FILE)),
        warm_started_from=base_models[0].uri if base_models else None,
        cached=sorted(node for node, execution in nodes.items() if execution.last_known_state == execution.CACHED),
    )


def run_nodes(store, run_context) -> dict:
    """Node id -> this run's execution of it."""
    nodes = {}
    for execution in store.get_executions_by_context(run_context.id):
        for context in store.get_contexts_by_execution(execution.id):
            if store.get_context_types_by_id([context.type_id])[0].name == "node":
                nodes[context.name.split(".", 1)[1]] = execution
    return nodes


def _event_artifacts(store, execution, key: str, event_type) -> list:
    if execution is None:
        return []
    ids = [
        event.artifact_id
        for event in store.get_events_by_execution_ids([execution.id])
        if event.type == event_type and event.path.steps and event.path.steps[0].key == key
    ]
    return store.get_artifacts_by_id(ids) if ids else []


def newest_trainer_execution(store):
    """The newest Trainer execution recorded in ML Metadata, or None."""
    trainer_types = {t.id for t in store.get_execution_types() if t.name.endswith(".Trainer")}
    trainers = [e for e in store.get_executions() if e.type_id in trainer_types]
    return max(trainers, key=lambda execution: execution.id) if trainers else None


def _existing(path: str) -> str | None:
    return path if os.path.exists(path) else None
