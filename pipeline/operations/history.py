"""`vocdet runs`: the pipeline's runs and rollbacks, read back from ML Metadata, one record each.

For each run (TFX's `pipeline_run` context; `vocdet ingest`'s pipeline is another and left out): its id,
start, duration and final state; the node that failed and why (`metadata.run_failure`, which the
runners record, since TFX does not); the span ExampleGen ingested, the spans trained on and the
examples per split; the Trainer's best epoch and its validation value of the blessing metric (training.json);
COCO mAP, AP50 and VOC07 mAP with the change against the baseline (both scored on
the same images by the CocoEvaluator); blessed or not and why; the version pushed; the nodes served
from TFX's cache. Rollbacks (`operations.rollback`) are records of their own, in time order.
Everything comes from the run's own executions, found by node id (`summary.run_nodes`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json

from vocdet.components import trainer as trainer_record
from vocdet.pipeline.metadata import run_failure
from vocdet.pipeline.operations import lineage

FORMATS = ("table", "csv", "json")


@dataclasses.dataclass
class RunRecord:
    kind: str  # "run", or "rollback"
    run_id: str
    started: str  # ISO 8601, UTC
    duration_s: float | None
    state: str  # COMPLETE, FAILED, RUNNING, INCOMPLETE
    failed_node: str | None = None
    failure_reason: str | None = None
    span: int | None = None
    train_spans: list[int] = dataclasses.field(default_factory=list)
    examples: dict[str, int] | None = None
    metrics: dict[str, float] | None = None
    change: dict[str, float] | None = None  # metrics minus the baseline's
    baseline_model: int | None = None
    blessed: bool | None = None
    blessing: str | None = None
    pushed_version: int | None = None
    already_serving: bool = False
    not_pushed_reason: str | None = None
    warm_started_from: int | None = None  # a Model artefact id
    # The Trainer's exported epoch when validation chose it (training.json's `best`), e.g. 9 of 12.
    best_epoch: int | None = None
    epochs: int | None = None
    best_validation: dict[str, float] | None = None  # its val_* logs
    validation_monitor: str | None = None
    cached: list[str] = dataclasses.field(default_factory=list)
    # A rollback's: the version served again, the version it was published as, the versions withdrawn.
    rolled_back_to: int | None = None
    withdrawn_versions: list[int] = dataclasses.field(default_factory=list)
    restored_from: str | None = None  # the version's folder, or the model's artefact when the folder was pruned
    started_ms: int = 0


def read(store, pipeline_name: str) -> list[RunRecord]:
    """Every run and rollback of `pipeline_name`, oldest first."""
    records = [run_record(store, run) for run in lineage.pipeline_runs(store, pipeline_name)]
    records += [_rollback_record(store, execution) for execution in lineage.rollbacks(store, pipeline_name)]
    return sorted(records, key=lambda record: record.started_ms)


def run_record(store, run) -> RunRecord:
    """One run's record, from its `pipeline_run` context."""
    nodes = lineage.run_nodes(store, run)
    executions = list(nodes.values())
    started = run.create_time_since_epoch
    ended = max([e.last_update_time_since_epoch for e in executions] + [run.last_update_time_since_epoch])
    record = RunRecord(kind="run", run_id=run.name, started=lineage.iso(started), started_ms=started,
                       duration_s=round((ended - started) / 1000, 1), state=_state(run, nodes))
    properties = run.custom_properties
    if run_failure.FAILED_NODE_PROPERTY in properties:
        record.failed_node = properties[run_failure.FAILED_NODE_PROPERTY].string_value
        record.failure_reason = properties[run_failure.FAILURE_REASON_PROPERTY].string_value
    elif record.state == "FAILED":
        record.failed_node = next(node for node, e in nodes.items() if e.last_known_state == e.FAILED)
        record.failure_reason = "(no reason recorded)"
    record.cached = sorted(node for node, e in nodes.items() if e.last_known_state == e.CACHED)
    example_gens = [node for node in nodes if node.endswith("ExampleGen")]
    if example_gens:
        produced = lineage.outputs(store, nodes[example_gens[0]], "examples")
        if produced:
            data = lineage.examples_of(produced[0])
            record.span, record.examples = data["span"], data["examples"]
    trained_on = lineage.inputs(store, nodes.get("Transform"), "examples")
    record.train_spans = sorted(span for span in map(lineage.span_of, trained_on) if span is not None)
    base = lineage.inputs(store, nodes.get(lineage.TRAINER_NODE), "base_model")
    record.warm_started_from = base[0].id if base else None
    _training(store, nodes, record)
    _evaluation(store, nodes, record)
    _push(store, nodes, record)
    return record


def _state(run, nodes: dict) -> str:
    if run_failure.FAILED_NODE_PROPERTY in run.custom_properties:
        return "FAILED"
    states = {e.last_known_state for e in nodes.values()}
    some = next(iter(nodes.values()), None)
    if some is None:
        return "INCOMPLETE"
    if some.FAILED in states:
        return "FAILED"
    if states & {some.NEW, some.RUNNING}:
        return "RUNNING"
    return "COMPLETE" if lineage.PUSHER_NODE in nodes else "INCOMPLETE"


def _training(store, nodes: dict, record: RunRecord) -> None:
    """The best epoch and its validation numbers, from the Trainer's training.json (where it is readable here)."""
    model_runs = lineage.outputs(store, nodes.get(lineage.TRAINER_NODE), "model_run")
    training = trainer_record.read_training_record(model_runs[0].uri) if model_runs else None
    best = (training or {}).get("best")
    if best:
        record.best_epoch, record.epochs = best["epoch"], best["epochs"]
        record.best_validation, record.validation_monitor = best["validation"], best["monitor"]


def _best(record: RunRecord) -> str:
    """`0.840 (9/12)`: the best epoch's validation value of the blessing metric, and which epoch."""
    if record.best_epoch is None:
        return "-"
    value = (record.best_validation or {}).get(record.validation_monitor)
    return (f"{value:.3f} " if value is not None else "") + f"({record.best_epoch}/{record.epochs})"


def _evaluation(store, nodes: dict, record: RunRecord) -> None:
    evaluator = nodes.get(lineage.EVALUATOR_NODE)
    evaluations = lineage.outputs(store, evaluator, "evaluation")
    if not evaluations:
        return
    evaluation = evaluations[0]
    metrics, baseline = lineage.evaluation_metrics(evaluation)
    if metrics is None:  # metrics.json not readable here: what ML Metadata holds (the blessing metric)
        metrics = {name: evaluation.custom_properties[name].double_value
                   for name in lineage.METRICS if name in evaluation.custom_properties} or None
    record.metrics = metrics
    if metrics and baseline:
        record.change = {name: metrics[name] - baseline[name] for name in metrics if name in baseline}
    properties = evaluation.custom_properties
    if "blessed" in properties:
        record.blessed = properties["blessed"].int_value == 1
        record.blessing = properties["blessing_message"].string_value if "blessing_message" in properties else None
    baselines = lineage.inputs(store, evaluator, "baseline_model")
    record.baseline_model = baselines[0].id if baselines else None


def _push(store, nodes: dict, record: RunRecord) -> None:
    pushed = lineage.outputs(store, nodes.get(lineage.PUSHER_NODE), lineage.PUSHED_MODEL_KEY)
    if not pushed:
        return
    properties = pushed[0].custom_properties
    if "pushed" in properties and properties["pushed"].int_value == 1 and "pushed_version" in properties:
        record.pushed_version = int(properties["pushed_version"].string_value)
        record.already_serving = "already_serving" in properties and properties["already_serving"].int_value == 1
    else:
        record.not_pushed_reason = lineage.not_pushed_reason(pushed[0]) or (
            "not blessed" if record.blessed is False else "not servable (ServingCheck)"
        )


def _rollback_record(store, execution) -> RunRecord:
    properties = execution.custom_properties
    published = lineage.outputs(store, execution, lineage.PUSHED_MODEL_KEY)
    return RunRecord(
        kind="rollback",
        run_id=properties["rollback_id"].string_value,
        started=lineage.iso(execution.create_time_since_epoch),
        started_ms=execution.create_time_since_epoch,
        duration_s=round((execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000, 1),
        state="COMPLETE",
        rolled_back_to=properties["to_version"].int_value,
        pushed_version=int(published[0].custom_properties["pushed_version"].string_value) if published else None,
        withdrawn_versions=json.loads(properties["withdrawn_versions"].string_value),
        restored_from=properties["restored_from"].string_value,
    )


def format_records(records: list[RunRecord], output_format: str) -> str:
    if output_format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {output_format!r}")
    if output_format == "json":
        return json.dumps([_public(record) for record in records], indent=2)
    if output_format == "csv":
        return _csv(records)
    return _table(records)


def _public(record: RunRecord) -> dict:
    fields = dataclasses.asdict(record)
    fields.pop("started_ms")
    return fields


def _csv(records: list[RunRecord]) -> str:
    rows = []
    for record in records:
        row = _public(record)
        for name in lineage.METRICS:
            row[name] = (record.metrics or {}).get(name)
            row[f"{name} change"] = (record.change or {}).get(name)
        row.pop("metrics"), row.pop("change")
        row["examples"] = " ".join(f"{split}={n}" for split, n in sorted((record.examples or {}).items()))
        row["best_validation"] = (record.best_validation or {}).get(record.validation_monitor)
        for name in ("train_spans", "cached", "withdrawn_versions"):
            row[name] = " ".join(str(item) for item in row[name])
        rows.append(row)
    handle = io.StringIO()
    if rows:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return handle.getvalue()


def _metric(record: RunRecord, name: str) -> str:
    if not record.metrics or name not in record.metrics:
        return "-"
    change = (record.change or {}).get(name)
    return f"{record.metrics[name]:.3f}" + (f" ({change:+.3f})" if change is not None else "")


def _table(records: list[RunRecord]) -> str:
    header = ["run", "started", "took", "state", "data", "COCO mAP", "AP50", "VOC07 mAP", "val (best epoch)", "blessed",
              "pushed", "notes"]
    rows = [header]
    for record in records:
        if record.kind == "rollback":
            rows.append([record.run_id, record.started, f"{record.duration_s:.0f}s", record.state, "-", "-", "-", "-", "-", "-",
                         f"v{record.pushed_version}",
                         f"rolled back to v{record.rolled_back_to}, re-published as v{record.pushed_version}; withdrawn: "
                         + (", ".join(f"v{v}" for v in record.withdrawn_versions) or "none")])
            continue
        data = "-"
        if record.span is not None or record.examples:
            counts = ", ".join(f"{split} {n}" for split, n in sorted((record.examples or {}).items()))
            data = (f"span {record.span}" if record.span else "") + (": " if record.span and counts else "") + counts
        pushed = "-"
        if record.pushed_version is not None:
            pushed = f"v{record.pushed_version}" + (" (already)" if record.already_serving else "")
        notes = []
        if record.failed_node:
            notes.append(f"{record.failed_node} failed: {record.failure_reason}")
        if record.blessing:
            notes.append(record.blessing)
        if record.not_pushed_reason and record.blessed:
            notes.append(f"not pushed: {record.not_pushed_reason}")
        if record.warm_started_from is not None:
            notes.append(f"warm start from model {record.warm_started_from}")
        if record.cached:
            notes.append(f"cached: {', '.join(record.cached)}")
        rows.append([record.run_id, record.started, f"{record.duration_s:.0f}s" if record.duration_s is not None else "-",
                     record.state, data, *(_metric(record, name) for name in lineage.METRICS), _best(record),
                     "-" if record.blessed is None else ("yes" if record.blessed else "no"), pushed, "; ".join(notes)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths)) + "  " + row[-1] for row in rows
    ).rstrip() + "\n"
