"""The compiled Kubeflow package, run: `vocdet run --package` executes each task's own command and
arguments from the YAML, in dependency order, each as its own process, against a local ML Metadata
store (an SQLite file, or a real MySQL server as the cluster's store), with the PVC mount as a
local folder. Assertions are read from ML Metadata."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from ml_metadata.metadata_store import metadata_store
from tfx.orchestration import metadata

from vocdet.components.atomic_pusher import push, serving_lock
from vocdet.pipeline import cli
from tests.mysql import PASSWORD
from vocdet.pipeline.kubeflow import compiler
from vocdet.pipeline.kubeflow import node as kubeflow_node
from vocdet.pipeline.metadata import store as store_lib
from vocdet.pipeline.local import summary as run_summary
from vocdet.pipeline.kubeflow import rehearsal as package_runner
from tests.serving_probe import LOAD_AND_PREDICT

IMAGE = "registry.example.com/vocdet:test"
# A few training steps: what is proven here is the orchestration, not the learning.
TINY = {
    "model": {"eval_confidence_threshold": 0.0},
    "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size_per_replica": 4},
    "eval": {"blessing_threshold": 0.0},
}
RESOLVERS = ("latest_blessed_model_resolver", "baseline_model_resolver", "training_spans_resolver")


def _compile(folder, overrides, *flags) -> str:
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(overrides))
    path = folder / "pipeline.yaml"
    assert cli.main(["compile", "--preset", "demo", "--config", str(config), "--image", IMAGE, "--out", str(path),
                     *flags]) == 0
    return str(path)


def _run(package: str, data: str, output: str, metadata_url: str | None = None, lines: list | None = None):
    """(run id, seconds) of one `vocdet run --package` (against `metadata_url`'s store); the run id is read from ML
    Metadata. What it printed is appended to `lines`."""
    started = time.time()
    flags = ["--metadata", metadata_url] if metadata_url else []
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["run", "--package", package, "--data", data, "--output", output, *flags])
    print(printed.getvalue())
    assert code == 0
    if lines is not None:
        lines.extend(printed.getvalue().splitlines())
    seconds = time.time() - started
    runs = _store(output, metadata_url).get_contexts_by_type("pipeline_run")
    return max(runs, key=lambda context: context.id).name, seconds


def _store(output: str, metadata_url: str | None = None):
    if metadata_url:
        return store_lib.connect(store_lib.StoreUrl.parse(metadata_url), PASSWORD, wait_seconds=0)
    return metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(os.path.join(output, "metadata.sqlite"))
    )


def _states(store, package: str, run_id: str) -> dict[str, str]:
    """TFX node id -> its execution state in run `run_id`, from ML Metadata."""
    tasks = package_runner.Package.read(package).spec.root.dag.tasks.values()
    nodes = [task.task_info.name for task in tasks if task.task_info.name != compiler.PREPARE_STORE_TASK]
    return {node: kubeflow_node.node_state(store, "vocdet", node, run_id) for node in nodes}


def _inputs(store, run_id: str, node_id: str, event_type=None) -> dict[str, list]:
    """Input (or `event_type`) key -> artefacts of the node's execution in `run_id`."""
    from ml_metadata.proto import metadata_store_pb2

    event_type = event_type or metadata_store_pb2.Event.INPUT
    run = store.get_context_by_type_and_name("pipeline_run", run_id)
    node = store.get_context_by_type_and_name("node", f"vocdet.{node_id}")
    in_run = {execution.id for execution in store.get_executions_by_context(run.id)}
    (execution,) = [e for e in store.get_executions_by_context(node.id) if e.id in in_run]
    inputs: dict[str, list] = {}
    for event in store.get_events_by_execution_ids([execution.id]):
        if event.type == event_type:
            inputs.setdefault(event.path.steps[0].key, []).extend(store.get_artifacts_by_id([event.artifact_id]))
    return inputs


def _assert_one_execution_per_node(store, package: str, run_id: str) -> None:
    """Exactly one execution of each TFX node in run `run_id` (tasks running at once registered no duplicate)."""
    run = store.get_context_by_type_and_name("pipeline_run", run_id)
    node_type = store.get_context_type("node").id
    nodes = [
        context.name
        for execution in store.get_executions_by_context(run.id)
        for context in store.get_contexts_by_execution(execution.id)
        if context.type_id == node_type
    ]
    assert sorted(nodes) == sorted({f"vocdet.{node}" for node in _states(store, package, run_id)}), nodes


@pytest.fixture(scope="module")
def demo_package_runs(small_voc_root, tmp_path_factory, mysql):
    """A demo-preset package compiled and run twice, nothing changed, against a MySQL server, tasks in
    parallel as Argo runs them: (package, output, metadata URL, first, second, first run's progress lines)."""
    folder = tmp_path_factory.mktemp("package")
    package = _compile(folder, TINY)
    output = str(folder / "output")
    url = mysql.create_database("demo_package")
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(store_lib.PASSWORD_ENV, PASSWORD)  # the tasks read it, as on the cluster
        first = _run(package, small_voc_root, output, url, lines)
        second = _run(package, small_voc_root, output, url)
    print(f"\npackage run (parallel, MySQL): {first[1]:.0f}s; rerun with nothing changed: {second[1]:.0f}s")
    return package, output, url, first, second, lines


@pytest.mark.e2e
def test_a_compiled_package_runs_to_a_pushed_model_that_loads_in_a_fresh_process(demo_package_runs, small_voc_root):
    package, output, url, (run_id, _), _, lines = demo_package_runs
    store = _store(output, url)
    states = _states(store, package, run_id)
    assert set(states.values()) == {"COMPLETE"}, states
    _assert_one_execution_per_node(store, package, run_id)
    summary = run_summary.summarize_store(store, url, run_id)
    assert summary.blessed and summary.num_eval_images == 16
    # Every artefact is on the stand-in PVC, where the package's paths put it; pushed once.
    volume = os.path.join(os.path.abspath(output), "volumes", "vocdet-data")
    assert summary.pushed_model_dir.startswith(os.path.join(volume, "serving", "vocdet") + os.sep)
    # One version, and beside it only the serving folder's lock and the record of vocdet's pushes (hidden, so
    # TF Serving ignores them).
    assert sorted(os.listdir(os.path.dirname(summary.pushed_model_dir))) == sorted(
        [os.path.basename(summary.pushed_model_dir), serving_lock.LOCK_FILE, push.PUSHED_RECORD]
    )
    assert all(a.uri.startswith(volume) for a in store.get_artifacts())
    assert not os.path.exists(os.path.join(output, "metadata.sqlite"))  # every task used the server
    # Tasks in parallel, as Argo runs them: the Evaluator and ServingCheck (both after the Trainer) overlap.
    events = [line.split("] ", 1)[1] for line in lines if line.startswith("[")]
    assert events.index("ServingCheck ...") < events.index(next(e for e in events if e.startswith("CocoEvaluator complete")))
    assert events.index("CocoEvaluator ...") < events.index(next(e for e in events if e.startswith("ServingCheck complete")))
    image_path = os.path.join(small_voc_root, "VOC2007", "JPEGImages", "000001.jpg")
    completed = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, summary.pushed_model_dir, image_path],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["decoded_images_signature_agrees"] and result["num_detections"] > 0


@pytest.mark.e2e
def test_a_rerun_with_nothing_changed_is_served_from_tfx_cache(demo_package_runs):
    package, output, url, (first_run, _), (second_run, _), _ = demo_package_runs
    store = _store(output, url)
    states = _states(store, package, second_run)
    assert {node: state for node, state in states.items() if node not in RESOLVERS} == {
        node: "CACHED" for node in states if node not in RESOLVERS
    }, states
    # One pushed version: the cached Pusher pushed nothing again.
    pushed = [a for a in store.get_artifacts_by_type("PushedModel")]
    assert len({a.custom_properties["pushed_destination"].string_value for a in pushed}) == 1
    assert first_run != second_run


@pytest.mark.e2e
def test_a_scheduled_run_on_a_new_span_trains_on_both_and_starts_from_the_blessed_model(
    small_voc_root, tmp_path, mysql, monkeypatch
):
    """Run 1 ingests span 1; span 2 arrives; run 2 of the same package ingests span 2, trains on spans 1
    and 2 (train_on_last_spans: 2), warm-starts from run 1's blessed model and compares with it. Against
    a real MySQL server, the cluster's store, starting from an empty database."""
    monkeypatch.setenv(store_lib.PASSWORD_ENV, PASSWORD)
    url = mysql.create_database("two_spans")
    root = tmp_path / "drops"
    shutil.copytree(os.path.join(small_voc_root, "VOC2007"), root / "span-1" / "VOC2007")
    package = _compile(tmp_path, {**TINY, "data": {"train_on_last_spans": 2}}, "--spans", "--warm-start")
    output = str(tmp_path / "output")
    first_run, first_seconds = _run(package, str(root), output, url)
    store = _store(output, url)
    assert not os.path.exists(os.path.join(output, "metadata.sqlite"))  # every task used the server
    _assert_one_execution_per_node(store, package, first_run)
    first_inputs = _inputs(store, first_run, "Trainer")
    assert "base_model" not in first_inputs  # nothing blessed yet: trained from the backbone weights
    (first_model,) = [a for a in store.get_artifacts_by_type("Model")]

    shutil.copytree(root / "span-1", root / "span-2")
    second_run, second_seconds = _run(package, str(root), output, url)
    print(f"\nspan runs: {first_seconds:.0f}s, {second_seconds:.0f}s")
    from ml_metadata.proto import metadata_store_pb2

    (ingested,) = _inputs(store, second_run, "FileBasedExampleGen", metadata_store_pb2.Event.OUTPUT)["examples"]
    assert ingested.custom_properties["span"].int_value == 2
    transformed = _inputs(store, second_run, "Transform")["examples"]
    assert sorted(a.custom_properties["span"].int_value for a in transformed) == [1, 2]
    trainer = _inputs(store, second_run, "Trainer")
    assert len(trainer["examples"]) == 2  # Transform's output for each span
    assert [a.id for a in trainer["base_model"]] == [first_model.id]
    assert [a.id for a in _inputs(store, second_run, "CocoEvaluator")["baseline_model"]] == [first_model.id]
    # What KFP's UI shows for run 2: run 1's model as the baseline, scored on the same (copied) images.
    def shown_metrics(run_id):
        path = os.path.join(output, package_runner.KFP_OUTPUTS_DIR, run_id, "CocoEvaluator", package_runner.OUTPUT_METADATA_FILE)
        with open(path) as handle:
            return json.load(handle)["artifacts"]["metrics"]["artifacts"][0]["metadata"]

    first, second = shown_metrics(first_run), shown_metrics(second_run)
    assert not any(key.startswith("baseline/") for key in first)
    for key in ("coco/AP", "coco/AP50", "voc/mAP50_11point"):
        assert second[f"baseline/{key}"] == pytest.approx(first[key], abs=1e-6), key


@pytest.mark.e2e
def test_the_tasks_fill_what_kfps_ui_shows_also_from_tfxs_cache(demo_package_runs):
    """As KFP's launcher reads them: the Evaluator's Metrics metadata equals metrics.json (to 1e-9), its
    Markdown has the tables, its HTML embeds the pictures; ExampleGen's and the Pusher's Markdown say what
    happened. The cached rerun shows the same numbers."""
    package, output, url, (first_run, _), (second_run, _), lines = demo_package_runs
    store = _store(output, url)
    summary = run_summary.summarize_store(store, url, first_run)
    with open(os.path.join(summary.evaluation_dir, "metrics.json")) as handle:
        expected = json.load(handle)["metrics"]
    for run_id in (first_run, second_run):
        folder = os.path.join(output, package_runner.KFP_OUTPUTS_DIR, run_id)
        with open(os.path.join(folder, "CocoEvaluator", package_runner.OUTPUT_METADATA_FILE)) as handle:
            (recorded,) = json.load(handle)["artifacts"]["metrics"]["artifacts"]
        metrics = recorded["metadata"]
        for key in ("coco/AP", "coco/AP50", "coco/AP75", "voc/mAP50_11point", "voc/mAP50_area",
                    "operating/min_score", "operating/precision", "operating/recall", "tide/cls_dAP50"):  # fmt: skip
            assert abs(metrics[key] - expected[key]) <= 1e-9, key
        assert metrics["blessed"] == 1 and all(isinstance(value, float) for value in metrics.values())
        with open(os.path.join(folder, "CocoEvaluator", "report")) as handle:
            report = handle.read()
        assert "| COCO mAP@0.5 |" in report and "| aeroplane |" in report and "data:" not in report
        with open(os.path.join(folder, "CocoEvaluator", "report_html")) as handle:
            html = handle.read()
        # PR curves, F1/P/R curves, the confusion matrix, the errors, the gallery
        assert html.count('src="data:image/png;base64,') == 7 and "<table>" in html and "How to deploy it" in html
        with open(os.path.join(folder, "FileBasedExampleGen", "ingest_report")) as handle:
            assert "| train |" in handle.read()
        with open(os.path.join(folder, "Trainer", package_runner.OUTPUT_METADATA_FILE)) as handle:
            (training,) = json.load(handle)["artifacts"]["training"]["artifacts"]
        assert (training["metadata"]["epochs"], training["metadata"]["steps"]) == (1, 2)  # TINY's schedule
        assert training["metadata"]["final/loss"] > 0 and training["metadata"]["final/images_per_s"] > 0
        with open(os.path.join(folder, "Trainer", "starting_weights")) as handle:
            assert handle.read().startswith("# Training\n\nStarted from ")
        with open(os.path.join(folder, "Pusher", "push")) as handle:
            push = handle.read()
        assert ("Pushed version" if run_id == first_run else "version") in push, push
    shown = [line for line in lines if line.strip().startswith("CocoEvaluator metrics (system.Metrics):")]
    assert len(shown) == 1 and f"coco/AP50 {expected['coco/AP50']:.4g}" in shown[0]


@pytest.mark.e2e
def test_the_html_report_shows_its_pr_curves_in_a_real_browser(demo_package_runs, tmp_path):
    """KFP's UI shows a system.HTML artefact in a sandboxed iframe, with nothing else to load: opened from its
    file alone in headless Chromium (Debian's), the page shows the PR-curve picture (matplotlib's blue lines)."""
    import numpy as np
    from PIL import Image

    package, output, url, (first_run, _), _, _ = demo_package_runs
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is not installed: apt-get install chromium (.ci/run installs it)"
    page = tmp_path / "report.html"
    shutil.copy(os.path.join(output, package_runner.KFP_OUTPUTS_DIR, first_run, "CocoEvaluator", "report_html"), page)
    shot = tmp_path / "report.png"
    completed = subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1700",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert completed.returncode == 0 and shot.exists(), completed.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    curve_blue = np.abs(pixels - np.array([99, 141, 184])).max(axis=-1) <= 24
    rows = np.flatnonzero(curve_blue.sum(axis=1) > 20)
    print(f"\nscreenshot {shot}: {int(curve_blue.sum())} PR-curve pixels in rows {rows.min() if rows.size else None}..")
    assert curve_blue.sum() > 2000  # the picture's curves, rendered from the embedded data: URI
    shutil.copy(shot, os.path.join(output, "report-screenshot.png"))
