"""`vocdet models`: the serving folder's versions, newest first, and where each came from.

For each version: the run that trained its model, the model's metrics in that run, its data (spans,
examples per split), the model it warm-started from, whether TF Serving serves it now (the highest
version: its `latest` policy), and whether a rollback withdrew its model. A version a rollback
re-published says which version it restores. A version ML Metadata never recorded (copied by hand,
pushed through another store) is listed as unknown.
"""

from __future__ import annotations

import dataclasses
import json

from vocdet.components import withdrawal
from vocdet.components.atomic_pusher import push
from vocdet.pipeline.operations import history, lineage

FORMATS = ("table", "json")


@dataclasses.dataclass
class ModelVersion:
    version: int
    served: bool
    known: bool  # recorded in ML Metadata
    model: int | None = None  # the Model artefact id
    withdrawn: bool = False
    withdrawn_reason: str | None = None
    restores_version: int | None = None  # a rollback's re-publication of that version
    run_id: str | None = None
    metrics: dict[str, float] | None = None
    span: int | None = None
    train_spans: list[int] = dataclasses.field(default_factory=list)
    examples: dict[str, int] | None = None
    base_model: int | None = None
    base_versions: list[int] = dataclasses.field(default_factory=list)


def list_versions(store, base_directory: str) -> list[ModelVersion]:
    present = push.versions(base_directory)
    known = lineage.serving_versions(store, base_directory)
    versions_of: dict[int, list[int]] = {}
    for version, record in known.items():
        versions_of.setdefault(record.model.id, []).append(version)
    runs = {}
    listed = []
    for version in sorted(present, reverse=True):
        entry = ModelVersion(version=version, served=version == present[-1], known=version in known)
        listed.append(entry)
        if not entry.known:
            continue
        record = known[version]
        [model] = store.get_artifacts_by_id([record.model.id])  # its mark as it is now
        entry.model, entry.withdrawn = model.id, withdrawal.is_withdrawn(model)
        entry.withdrawn_reason = withdrawal.withdrawn_reason(model) or None
        if record.rollback:
            entry.restores_version = record.execution.custom_properties["to_version"].int_value
        trainer = lineage.made_by(store, model.id)
        entry.run_id = lineage.run_of(store, trainer) if trainer is not None else None
        if entry.run_id is None:
            continue
        if entry.run_id not in runs:
            runs[entry.run_id] = history.run_record(store, store.get_context_by_type_and_name("pipeline_run", entry.run_id))
        run = runs[entry.run_id]
        evaluation = lineage.evaluation_of(store, model.id, entry.run_id)
        entry.metrics = lineage.evaluation_metrics(evaluation)[0] if evaluation is not None else run.metrics
        entry.span, entry.train_spans, entry.examples = run.span, run.train_spans, run.examples
        base = lineage.inputs(store, trainer, "base_model")
        if base:
            entry.base_model = base[0].id
            entry.base_versions = sorted(versions_of.get(base[0].id, []))
    return listed


def format_versions(versions: list[ModelVersion], output_format: str) -> str:
    if output_format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {output_format!r}")
    if output_format == "json":
        return json.dumps([dataclasses.asdict(v) for v in versions], indent=2)
    header = ["version", "serving", "model", "run", "COCO mAP", "AP50", "VOC07 mAP", "data", "warm start", "notes"]
    rows = [header]
    for v in versions:
        metrics = v.metrics or {}
        data = (f"span {v.span}" if v.span else "") + (
            (": " if v.span else "") + ", ".join(f"{s} {n}" for s, n in sorted(v.examples.items())) if v.examples else "")
        notes = []
        if not v.known:
            notes.append("unknown to ML Metadata (copied by hand, or another store)")
        if v.restores_version is not None:
            notes.append(f"rollback: re-publishes v{v.restores_version}")
        if v.withdrawn:
            notes.append(f"WITHDRAWN ({v.withdrawn_reason})")
        rows.append([
            str(v.version), "SERVED" if v.served else "", "-" if v.model is None else str(v.model), v.run_id or "-",
            *(f"{metrics[name]:.3f}" if name in metrics else "-" for name in lineage.METRICS), data or "-",
            (f"model {v.base_model}" + (f" (v{', v'.join(map(str, v.base_versions))})" if v.base_versions else ""))
            if v.base_model is not None else "-",
            "; ".join(notes),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths)) + "  " + row[-1] for row in rows
    ).rstrip() + "\n"
