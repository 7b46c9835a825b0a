"""What a Kubeflow task shows in KFP's UI: its declared output artefacts, filled through KFP's launcher contract.

TFX keeps its artefacts on the PVC and its lineage in vocdet's store, where KFP's UI does not look.
So the tasks of the nodes a user reads results from also declare KFP output artefacts
(`DECLARED`), and fill them from the TFX artefacts their execution produced, or, on a cache hit,
reused: a cached run shows its numbers too.

KFP's contract, read in kubeflow/pipelines `backend/src/v2/component/launcher_v2.go` (master at
7b70c7b, and in #13986, which keeps it):

- the task receives the executor input as JSON through the `{{$}}` placeholder (`compileCmdAndArgs`).
  Its `outputs.outputFile` is where the launcher reads an `ExecutorOutput` after the command
  (`getExecutorOutputFile`; `/tmp/kfp_outputs/output_metadata.json` before KFP 2.15, beside the
  task's root after). `{{$.outputs.output_file}}` is substituted by `kfp.local` only, not by the
  cluster's launcher, so it is not used;
- each declared artefact has a local path (`{{$.outputs.artifacts['NAME'].path}}`, `LocalPathForURI`:
  gs:// -> /gcs/, minio:// -> /minio/, s3:// -> /s3/); the launcher uploads what is written there to
  the artefact's URI in KFP's own pipeline root (its object store, not TFX's PVC);
- `ExecutorOutput.artifacts[NAME].artifacts[0].metadata` is merged into the artefact
  (`mergeRuntimeArtifacts`). KFP's UI shows a `system.Metrics` artefact's metadata as its scalar
  metrics (`frontend/src/components/viewers/MetricsVisualizations.tsx`); after #13986 each value
  must be a number. `system.Markdown` and `system.HTML` are read from the uploaded file: the
  Markdown viewer renders no raw HTML and stops at 400,000 characters, and the HTML viewer is a
  sandboxed iframe, so pictures are embedded as `data:` URIs. After #13986 a declared file that is
  missing fails the task, so every declared file is always written.
"""

from __future__ import annotations

import base64
import json
import os
import re

# KFP artefact types, by the `kfp.dsl` class that declares them.
METRICS, MARKDOWN, HTML = "Metrics", "Markdown", "HTML"
SCHEMA_TITLES = {METRICS: "system.Metrics", MARKDOWN: "system.Markdown", HTML: "system.HTML"}
# Node id -> {output name: type}: what each task declares. Names are KFP identifiers.
DECLARED = {
    "CocoEvaluator": {"metrics": METRICS, "report": MARKDOWN, "report_html": HTML},
    "FileBasedExampleGen": {"ingest_report": MARKDOWN},
    "ImportExampleGen": {"ingest_report": MARKDOWN},
    "Pusher": {"push": MARKDOWN},
    "Trainer": {"training": METRICS, "starting_weights": MARKDOWN, "curves": HTML},
}
# The evaluator's numbers a Kubeflow user compares between runs, by metrics.json key.
EVALUATOR_METRICS = (
    "coco/AP", "coco/AP50", "coco/AP75", "coco/APs", "coco/APm", "coco/APl", "coco/AR100",
    "voc/mAP50_11point", "voc/mAP50_area",
)  # fmt: skip
DEPLOYMENT_PREFIXES = ("operating/", "tide/")
BASELINE_PREFIX = "baseline/"
MARKDOWN_LIMIT = 400_000  # KFP's MarkdownViewer: MAX_MARKDOWN_STR_LENGTH
_IMAGE_LINE = re.compile(r"^!\[([^\]]*)\]\(([^)]+)\)\s*$", re.MULTILINE)


def fill(store, pipeline_name: str, node_id: str, run_id: str, executor_input: str, paths: dict[str, str]) -> None:
    """Writes the node's declared outputs at `paths` and the ExecutorOutput at the executor input's `outputFile`."""
    declared = DECLARED.get(node_id, {})
    execution = run_execution(store, pipeline_name, node_id, run_id)
    artifacts = _artifacts(store, execution) if execution is not None else {}
    contents = _BUILDERS[node_id](artifacts) if artifacts else {}
    metadata = {}
    for name, kind in declared.items():
        value = contents.get(name)
        if kind == METRICS:
            metadata[name] = {key: float(number) for key, number in (value or {}).items()}
            text = json.dumps(metadata[name], indent=1, sort_keys=True)
        else:
            text = value if value is not None else f"{node_id} recorded no result in run {run_id}.\n"
        path = paths[name]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as handle:
            handle.write(text)
    output_file = json.loads(executor_input)["outputs"]["outputFile"]
    os.makedirs(os.path.dirname(output_file) or ".", exist_ok=True)
    with open(output_file, "w") as handle:
        json.dump({"artifacts": {name: {"artifacts": [{"metadata": values}]} for name, values in metadata.items()}},
                  handle, indent=1, sort_keys=True)


def run_execution(store, pipeline_name: str, node_id: str, run_id: str):
    """The node's newest execution in run `run_id`, or None."""
    node_context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    run_context = store.get_context_by_type_and_name("pipeline_run", run_id)
    if node_context is None or run_context is None:
        return None
    in_run = {execution.id for execution in store.get_executions_by_context(run_context.id)}
    executions = [e for e in store.get_executions_by_context(node_context.id) if e.id in in_run]
    return max(executions, key=lambda execution: execution.id) if executions else None


def _artifacts(store, execution) -> dict[tuple[str, str], list]:
    """(INPUT or OUTPUT, key) -> the execution's artefacts, from its events."""
    from ml_metadata.proto import metadata_store_pb2

    found: dict[tuple[str, str], list] = {}
    for event in store.get_events_by_execution_ids([execution.id]):
        side = "OUTPUT" if event.type == metadata_store_pb2.Event.OUTPUT else "INPUT"
        if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.INPUT) and event.path.steps:
            found.setdefault((side, event.path.steps[0].key), []).extend(store.get_artifacts_by_id([event.artifact_id]))
    return found


def _evaluator(artifacts) -> dict:
    """COCO/VOC metrics with the blessing and the baseline's values; the report as Markdown and as HTML."""
    (evaluation,) = artifacts[("OUTPUT", "evaluation")]
    with open(os.path.join(evaluation.uri, "metrics.json")) as handle:
        evaluated = json.load(handle)
    with open(os.path.join(evaluation.uri, "blessing.json")) as handle:
        blessing = json.load(handle)
    metrics = {key: evaluated["metrics"][key] for key in EVALUATOR_METRICS}
    # How to deploy it: the model's min score, precision and recall there, the F1-optimal cut, TIDE's costs.
    metrics.update({key: value for key, value in evaluated["metrics"].items() if key.startswith(DEPLOYMENT_PREFIXES)})
    metrics["blessed"] = int(blessing["blessed"])
    for key in EVALUATOR_METRICS:
        if evaluated.get("baseline_metrics"):
            metrics[BASELINE_PREFIX + key] = evaluated["baseline_metrics"][key]
    with open(os.path.join(evaluation.uri, "report.md")) as handle:
        report = handle.read()
    tables = _IMAGE_LINE.sub(lambda match: f"*{match.group(1)}: in the HTML report ({match.group(2)})*", report)
    return {"metrics": metrics, "report": _within_limit(tables), "report_html": _html(report, evaluation.uri)}


def _example_gen(artifacts) -> dict:
    """The ingest report: examples per split (written, repaired, rejected), the split method, leakage and repeats."""
    from vocdet.pipeline.local import summary

    (examples,) = artifacts[("OUTPUT", "examples")]
    counts = summary.ingest_counts(examples.uri)
    span = examples.custom_properties["span"].int_value if "span" in examples.custom_properties else None
    lines = [f"# Ingest{f' of span {span}' if span else ''}", "",
             "| split | written | repaired | rejected |", "|---|---|---|---|"]
    lines += [f"| {split} | {c['written']} | {c['repaired']} | {c['rejected']} |" for split, c in sorted(counts.items())]
    notes = summary.ingest_notes(examples.uri)
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    lines += ["", f"Examples: `{examples.uri}`"]
    return {"ingest_report": "\n".join(lines) + "\n"}


def _pusher(artifacts) -> dict:
    """The version pushed, or why nothing was."""
    from vocdet.components.atomic_pusher import executor as pusher_executor

    (pushed,) = artifacts[("OUTPUT", "pushed_model")]
    properties = pushed.custom_properties
    if "pushed" in properties and properties["pushed"].int_value == 1:
        version = properties["pushed_version"].string_value
        already = pusher_executor.ALREADY_SERVING_KEY in properties and properties[pusher_executor.ALREADY_SERVING_KEY].int_value
        line = (f"Already serving as version **{version}**; not pushed again." if already
                else f"Pushed version **{version}**.")
        return {"push": f"# Push\n\n{line}\n\nServing folder: `{properties['pushed_destination'].string_value}`\n"}
    if pusher_executor.NOT_PUSHED_REASON_KEY in properties:
        reason = properties[pusher_executor.NOT_PUSHED_REASON_KEY].string_value
    else:
        blessings = artifacts.get(("INPUT", "model_blessing"), []) + artifacts.get(("INPUT", "infra_blessing"), [])
        messages = [b.custom_properties["blessing_message"].string_value for b in blessings
                    if "blessing_message" in b.custom_properties]
        reason = "not blessed" + (f": {'; '.join(messages)}" if messages else " (model or serving check)")
    return {"push": f"# Push\n\nNothing pushed: {reason}.\n"}


def _trainer(artifacts) -> dict:
    """The final epoch's logs, the best epoch's validation numbers, the schedule; the start; the curves (results.png)."""
    from vocdet.components import trainer as trainer_record

    (model_run,) = artifacts[("OUTPUT", "model_run")]
    record = trainer_record.read_training_record(model_run.uri)
    if record is None:  # a model trained before run_fn kept the record
        return {"starting_weights": "# Training\n\nNo training record in this model's `model_run`.\n"}
    metrics = {f"final/{name}": value for name, value in record["final"].items()}
    metrics.update({key: record[key] for key in ("epochs", "steps", "global_batch_size", "replicas")})
    best = record.get("best")
    if best:
        metrics["best/epoch"] = best["epoch"]
        metrics.update({f"best/{name}": value for name, value in best["validation"].items()})
    report = (f"# Training\n\nStarted from {record['starting_weights']}.\n\n{trainer_record.best_epoch_line(record)}"
              + (f": {best['why']}" if best else "") + ".\n")  # fmt: skip
    history = record.get("history") or []
    columns = [name for name in ("loss", "val_loss", *trainer_record.VALIDATION_METRIC_LABELS, "learning_rate",
                                 "epoch_seconds", "val_seconds") if any(name in row for row in history)]  # fmt: skip
    if history:
        report += "\n| epoch | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns) + "\n"
        report += "".join(
            f"| {row['epoch']}{' (best)' if best and row['epoch'] == best['epoch'] else ''} | "
            + " | ".join(f"{row[name]:.4g}" if name in row else "" for name in columns) + " |\n"
            for row in history
        )
    curves = report + f"\n![results]({trainer_record.RESULTS_PLOT_FILE})\n"
    return {"training": metrics, "starting_weights": _within_limit(report), "curves": _html(curves, model_run.uri)}


_BUILDERS = {"CocoEvaluator": _evaluator, "FileBasedExampleGen": _example_gen, "ImportExampleGen": _example_gen,
             "Pusher": _pusher, "Trainer": _trainer}


def _within_limit(text: str) -> str:
    if len(text) <= MARKDOWN_LIMIT:
        return text
    return text[: MARKDOWN_LIMIT - 200] + "\n\n*(cut at KFP's Markdown limit; the whole report is in the HTML output)*\n"


def _html(report: str, folder: str) -> str:
    """The report as one self-contained HTML page: its pictures embedded, since KFP shows it in a sandboxed iframe."""
    import markdown

    def embedded(match) -> str:
        path = os.path.join(folder, match.group(2))
        if not os.path.exists(path):
            return match.group(0)
        with open(path, "rb") as handle:
            data = base64.b64encode(handle.read()).decode()
        return f'<p><img alt="{match.group(1)}" src="data:image/png;base64,{data}" style="max-width:100%"></p>'

    body = markdown.markdown(_IMAGE_LINE.sub(embedded, report), extensions=["tables"])
    style = "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
    return f"<!doctype html>\n<html><head><meta charset='utf-8'><style>{style}</style></head><body>\n{body}\n</body></html>\n"
