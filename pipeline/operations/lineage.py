"""The ML Metadata look-ups history, models and rollback share, by node id, never by TFX type name.

A run is TFX's `pipeline_run` context (a child of the pipeline's context; `vocdet ingest`'s own
pipeline has another name, so it is left out). Inside a run, executions are found by node id with
`summary.run_nodes`, and their artefacts by event key with `summary._event_artifacts`. A serving
version is a PushedModel artefact (`pushed_version`, `pushed_destination` under the serving folder)
written by the Pusher or by a rollback; the model behind it is that execution's `model` input.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os

from ml_metadata.proto import metadata_store_pb2

from vocdet.components import withdrawal
from vocdet.components.atomic_pusher import executor as pusher_executor
from vocdet.components.coco_evaluator import report
from vocdet.pipeline.local.summary import _event_artifacts, ingest_counts, run_nodes  # noqa: F401 (re-used, summary.py is not ours)
from vocdet.pipeline.metadata import run_failure

INPUT = metadata_store_pb2.Event.INPUT
OUTPUT = metadata_store_pb2.Event.OUTPUT
# The execution type a rollback is recorded as, in the pipeline's context.
ROLLBACK_EXECUTION_TYPE = "vocdet.Rollback"
# The event keys of Pusher and rollback executions (TFX's Pusher spec: `model` in, `pushed_model` out).
MODEL_KEY = "model"
PUSHED_MODEL_KEY = "pushed_model"
# The metrics the history and the plot show, from each run's metrics.json.
METRICS = ("coco/AP", "coco/AP50", "voc/mAP50_11point")
EVALUATOR_NODE = "CocoEvaluator"
TRAINER_NODE = "Trainer"
PUSHER_NODE = "Pusher"


def iso(milliseconds: int) -> str:
    return datetime.datetime.fromtimestamp(milliseconds / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pipeline_context(store, pipeline_name: str):
    return store.get_context_by_type_and_name(run_failure.PIPELINE_CONTEXT_TYPE, pipeline_name)


def pipeline_runs(store, pipeline_name: str) -> list:
    """The pipeline's `pipeline_run` contexts, oldest first."""
    pipeline = pipeline_context(store, pipeline_name)
    if pipeline is None:
        return []
    run_type = _context_type_id(store, run_failure.PIPELINE_RUN_CONTEXT_TYPE)
    runs = [c for c in store.get_children_contexts_by_context(pipeline.id) if c.type_id == run_type]
    return sorted(runs, key=lambda context: (context.create_time_since_epoch, context.id))


def _context_type_id(store, name: str) -> int | None:
    try:
        return store.get_context_type(name).id
    except Exception:  # ML Metadata's NotFoundError
        return None


def inputs(store, execution, key: str) -> list:
    return _event_artifacts(store, execution, key, INPUT)


def outputs(store, execution, key: str) -> list:
    return _event_artifacts(store, execution, key, OUTPUT)


def executions_touching(store, artifact_id: int, event_type) -> list:
    """Executions with an event of `event_type` on the artefact, oldest first."""
    ids = sorted({e.execution_id for e in store.get_events_by_artifact_ids([artifact_id]) if e.type == event_type})
    return store.get_executions_by_id(ids) if ids else []


def node_of(store, execution) -> str | None:
    """The node id an execution ran, from its `node` context (`<pipeline>.<node>`)."""
    node_type = _context_type_id(store, run_failure.NODE_CONTEXT_TYPE)
    for context in store.get_contexts_by_execution(execution.id):
        if context.type_id == node_type:
            return context.name.split(".", 1)[1]
    return None


def run_of(store, execution) -> str | None:
    """The run id (`pipeline_run` context name) an execution belongs to."""
    run_type = _context_type_id(store, run_failure.PIPELINE_RUN_CONTEXT_TYPE)
    for context in store.get_contexts_by_execution(execution.id):
        if context.type_id == run_type:
            return context.name
    return None


def read_json(directory: str, name: str) -> dict | None:
    """A JSON file of an artefact, when this machine can read it (a cluster's PVC may not be mounted here)."""
    path = os.path.join(directory, name)
    if "://" in path or not os.path.isfile(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def evaluation_metrics(evaluation) -> tuple[dict | None, dict | None]:
    """(the candidate's metrics, the baseline's) from an evaluation artefact's metrics.json; None where unreadable."""
    metrics = read_json(evaluation.uri, report.METRICS_FILE)
    if metrics is None:
        return None, None
    pick = lambda values: {name: values[name] for name in METRICS if name in values} if values else None  # noqa: E731
    return pick(metrics.get("metrics")), pick(metrics.get("baseline_metrics"))


def examples_of(examples) -> dict:
    """{span, examples per split} of an Examples artefact (counts where its report is readable here)."""
    span = span_of(examples)
    counts = None
    if "://" not in examples.uri and os.path.isdir(examples.uri):
        counts = {split: c["written"] for split, c in ingest_counts(examples.uri).items()}
    return {"span": span, "examples": counts}


def span_of(examples) -> int | None:
    """An Examples artefact's span (TFX 1.16 records it as a custom property, older releases as a property)."""
    for properties in (examples.properties, examples.custom_properties):
        if "span" in properties:
            return properties["span"].int_value
    return None


def is_blessed(store, model_id: int) -> bool:
    """Whether a ModelBlessing of the CocoEvaluator blessed this model (TFX Evaluator's properties)."""
    for blessing in store.get_artifacts_by_type("ModelBlessing"):
        properties = blessing.custom_properties
        if (
            "current_model_id" in properties and properties["current_model_id"].int_value == model_id
            and "blessed" in properties and properties["blessed"].int_value == 1
        ):
            return True
    return False


@dataclasses.dataclass
class Version:
    """One serving version as ML Metadata recorded it."""

    version: int
    model: object  # the ML Metadata Artifact proto of the Model
    execution: object  # the Pusher's or the rollback's execution that published it
    rollback: bool


def serving_versions(store, base_directory: str) -> dict[int, Version]:
    """Version -> how it was published, for every version ML Metadata recorded under `base_directory`."""
    base = os.path.normpath(base_directory)
    found: dict[int, Version] = {}
    for pushed in sorted(store.get_artifacts_by_type("PushedModel"), key=lambda artifact: artifact.id):
        properties = pushed.custom_properties
        if "pushed" not in properties or properties["pushed"].int_value != 1:
            continue
        destination = properties["pushed_destination"].string_value if "pushed_destination" in properties else ""
        version = properties["pushed_version"].string_value if "pushed_version" in properties else ""
        if not version.isdigit() or os.path.normpath(os.path.dirname(destination)) != base or int(version) in found:
            continue
        for execution in executions_touching(store, pushed.id, OUTPUT):
            models = inputs(store, execution, MODEL_KEY)
            if models:
                found[int(version)] = Version(
                    int(version), models[0], execution, rollback=_is_rollback(store, execution)
                )
                break
    return found


def recorded_serving_folders(store) -> dict[str, int]:
    """Serving base folder -> how many pushed versions ML Metadata recorded there, newest-recorded folder first.

    ML Metadata keeps the absolute paths a run gave it: after an output folder is moved, its versions are
    recorded under the old path, and this says where.
    """
    counts: dict[str, int] = {}
    for pushed in sorted(store.get_artifacts_by_type("PushedModel"), key=lambda artifact: -artifact.id):
        properties = pushed.custom_properties
        if "pushed" in properties and properties["pushed"].int_value == 1 and "pushed_destination" in properties:
            folder = os.path.normpath(os.path.dirname(properties["pushed_destination"].string_value))
            counts[folder] = counts.get(folder, 0) + 1
    return counts


def moved_serving_folder(store, base_directory: str) -> str | None:
    """Why ML Metadata knows no version in `base_directory` when it records pushes elsewhere, and what to do;
    None when it records one there, or none at all. The usual cause: the output folder was moved, and ML Metadata holds
    the absolute paths runs gave it (artefact URIs too), so the old path must lead to the folder again."""
    base = os.path.normpath(base_directory)
    recorded_folders = recorded_serving_folders(store)
    if not recorded_folders or base in recorded_folders:
        return None
    recorded, count = next(iter(recorded_folders.items()))  # the folder of the newest push
    old_parts, new_parts = recorded.split(os.sep), base.split(os.sep)
    same = 0  # trailing parts the two share: what was moved is the folder above them
    while same < min(len(old_parts), len(new_parts)) - 1 and old_parts[-1 - same] == new_parts[-1 - same]:
        same += 1
    old_root = os.sep.join(old_parts[: len(old_parts) - same]) or os.sep
    new_root = os.sep.join(new_parts[: len(new_parts) - same]) or os.sep
    return (
        f"{base_directory}: ML Metadata knows no version here, but records {count} pushed under {recorded}: it keeps "
        f"the absolute paths runs gave it, so was {old_root} moved to {new_root}? Move it back, or link the old path "
        f"to the new one (ln -s {new_root} {old_root})"
    )


def _is_rollback(store, execution) -> bool:
    return store.get_execution_types_by_id([execution.type_id])[0].name == ROLLBACK_EXECUTION_TYPE


def rollbacks(store, pipeline_name: str) -> list:
    """The rollback executions recorded for the pipeline, oldest first."""
    pipeline = pipeline_context(store, pipeline_name)
    if pipeline is None:
        return []
    return sorted(
        (e for e in store.get_executions_by_context(pipeline.id) if _is_rollback(store, e)), key=lambda e: e.id
    )


def made_by(store, model_id: int):
    """The Trainer execution that produced the model first (a cached rerun reuses it later), or None."""
    for execution in executions_touching(store, model_id, OUTPUT):
        if node_of(store, execution) == TRAINER_NODE:
            return execution
    return None


def evaluation_of(store, model_id: int, run_id: str | None):
    """The model's evaluation artefact: the one of run `run_id` if there is one, else the first."""
    evaluations = []
    for execution in executions_touching(store, model_id, INPUT):
        if node_of(store, execution) == EVALUATOR_NODE:
            found = outputs(store, execution, "evaluation")
            if found:
                evaluations.append((run_of(store, execution), found[0]))
    for run, evaluation in evaluations:
        if run == run_id:
            return evaluation
    return evaluations[0][1] if evaluations else None


def withdrawn(model) -> bool:
    return withdrawal.is_withdrawn(model)


def not_pushed_reason(pushed) -> str | None:
    properties = pushed.custom_properties
    key = pusher_executor.NOT_PUSHED_REASON_KEY
    return properties[key].string_value if key in properties else None
