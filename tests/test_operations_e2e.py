"""Operating scheduled retraining with real runs: `vocdet runs`, `models` and `rollback`, read back from ML Metadata.

One module fixture plays a season of retraining on span drops of the 40-image sample (1 step of
training a run): run 1 pushes v1; run 2 on span 2 pushes v2; a rollback serves v1's model again;
run 2's command again (Trainer from TFX's cache) offers the withdrawn model, which the Pusher
refuses; run 3 on span 3 gates against and warm-starts from v1's model; a drop that breaks the
frozen schema fails at ExampleValidator. The tests read what each step left.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil

import pytest
import yaml

from vocdet.components import voc_format, withdrawal
from vocdet.components.atomic_pusher import push, serving_lock
from vocdet.pipeline import cli
from vocdet.pipeline.local import output_lock
from vocdet.pipeline.local import summary as run_summary
from vocdet.pipeline.operations import history, rollback, source


def _cli(argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the real command line."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def _newest_run_nodes(output: str) -> tuple[str, dict]:
    store, _ = source.open_store(output)
    run = max(store.get_contexts_by_type("pipeline_run"), key=lambda context: context.id)
    return run.name, run_summary.run_nodes(store, run)


@pytest.fixture(scope="module")
def season(small_voc_root, tmp_path_factory):
    from ml_metadata.proto import metadata_store_pb2

    work = tmp_path_factory.mktemp("season")
    root, output = work / "drops", str(work / "out")
    settings = work / "tiny.yaml"
    # Two runs of one step cannot beat each other reliably: a loose regression tolerance blesses each.
    settings.write_text(yaml.safe_dump({"model": {"eval_confidence_threshold": 0.0}, "eval": {"max_regression": 1.0},
                                        "push": {"serving_check_images": 1}}))
    run = ["run", "--spans", "--data", str(root), "--output", output, "--config", str(settings), "--epochs", "1",
           "--steps-per-epoch", "1", "--batch-size", "4", "--blessing-threshold", "0", "--warm-start"]
    base = os.path.join(output, "serving", "vocdet")
    found: dict = {"output": output, "base": base, "root": root, "work": work}

    def add_span(number: int) -> None:
        shutil.copytree(os.path.join(small_voc_root, "VOC2007"), root / f"span-{number}" / "VOC2007")

    def input_ids(nodes: dict, node: str, key: str) -> list[int]:
        store, _ = source.open_store(output)
        return [a.id for a in run_summary._event_artifacts(store, nodes.get(node), key, metadata_store_pb2.Event.INPUT)]

    add_span(1)
    assert _cli(run)[0] == 0
    found["v1"] = push.versions(base)[-1]
    found["nothing_to_roll_back"] = _cli(["rollback", "--output", output])
    add_span(2)
    assert _cli(run)[0] == 0
    found["v2"] = push.versions(base)[-1]
    found["runs_before_rollback"] = json.loads(_cli(["runs", "--output", output, "--format", "json"])[1])
    found["run_ids"] = [record["run_id"] for record in found["runs_before_rollback"]]
    found["evaluations"] = {}
    store, _ = source.open_store(output)
    for context in store.get_contexts_by_type("pipeline_run"):
        nodes = run_summary.run_nodes(store, context)
        if "CocoEvaluator" in nodes:
            (evaluation,) = run_summary._event_artifacts(store, nodes["CocoEvaluator"], "evaluation", metadata_store_pb2.Event.OUTPUT)
            with open(os.path.join(evaluation.uri, "metrics.json")) as handle:
                found["evaluations"][context.name] = json.load(handle)["metrics"]
        if "Trainer" in nodes:
            (model,) = run_summary._event_artifacts(store, nodes["Trainer"], "model", metadata_store_pb2.Event.OUTPUT)
            found.setdefault("models", []).append(model.id)

    found["rollback"] = _cli(["rollback", "--output", output])
    found["served_after_rollback"] = push.versions(base)[-1]

    # Run 2's command again: every node up to the Trainer from TFX's cache, the withdrawn model offered again.
    assert _cli(run)[0] == 0
    found["rerun_id"], found["rerun_nodes"] = _newest_run_nodes(output)
    found["served_after_rerun"] = push.versions(base)[-1]
    found["rerun_summary"] = run_summary.summarize_metadata(os.path.join(output, "metadata.sqlite"))

    add_span(3)
    assert _cli(run)[0] == 0
    found["run3_id"], nodes = _newest_run_nodes(output)
    found["run3_base_model"] = input_ids(nodes, "Trainer", "base_model")
    found["run3_baseline"] = input_ids(nodes, "CocoEvaluator", "baseline_model")
    found["v4"] = push.versions(base)[-1]
    found["models"] = (found["models"], json.loads(_cli(["models", "--output", output, "--format", "json"])[1]))

    # A drop with a 21st class against the frozen schema: stops at ExampleValidator.
    schema = work / "schema.pbtxt"
    assert _cli(["freeze-schema", str(schema), "--output", output])[0] == 0
    add_span(4)
    train_id = (root / "span-4" / "VOC2007" / "ImageSets" / "Main" / "train.txt").read_text().split()[0]
    xml = root / "span-4" / "VOC2007" / "Annotations" / f"{train_id}.xml"
    first_name = voc_format.parse_annotation_xml(xml.read_bytes()).objects[0].name
    xml.write_text(xml.read_text().replace(f"<name>{first_name}</name>", "<name>unicorn</name>", 1))
    labels = work / "labels.txt"
    labels.write_text("\n".join([*voc_format.VOC_CLASSES, "unicorn"]) + "\n")
    frozen = work / "frozen.yaml"
    frozen.write_text(yaml.safe_dump({**yaml.safe_load(settings.read_text()), "data": {"schema_file": str(schema)}}))
    failed = [*run[:run.index("--config") + 1], str(frozen), *run[run.index("--config") + 2:], "--labels", str(labels)]
    found["failed_run"] = _cli(failed)
    found["history"] = json.loads(_cli(["runs", "--output", output, "--format", "json"])[1])
    found["table"] = _cli(["runs", "--output", output])[1]
    found["plot"] = _cli(["runs", "--output", output, "--format", "csv", "--plot", str(work / "runs.png")])
    found["plot_file"] = work / "runs.png"
    return found


@pytest.mark.e2e
def test_runs_lists_both_runs_with_their_metrics_json(season):
    runs = season["runs_before_rollback"]
    assert [record["kind"] for record in runs] == ["run", "run"] and len(season["evaluations"]) == 2
    for record, pushed in zip(runs, (season["v1"], season["v2"])):
        assert record["state"] == "COMPLETE" and record["blessed"] is True
        expected = season["evaluations"][record["run_id"]]
        assert record["metrics"] == {name: expected[name] for name in ("coco/AP", "coco/AP50", "voc/mAP50_11point")}
        assert record["pushed_version"] == pushed
        assert sum(record["examples"].values()) == 40 and record["examples"]["test"] == 16  # the sample's split
    first, second = runs
    assert (first["span"], second["span"]) == (1, 2)
    assert first["change"] is None and first["warm_started_from"] is None
    # Run 2 was judged against run 1's model, on the same images: the change is the difference.
    assert second["baseline_model"] == season["models"][0][0] == second["warm_started_from"]
    assert set(second["change"]) == {"coco/AP", "coco/AP50", "voc/mAP50_11point"}


@pytest.mark.e2e
def test_rollback_serves_v1_again_and_withdraws_v2(season):
    code, out, err = season["rollback"]
    assert code == 0, err
    assert f"version {season['v1']} served again as version {season['served_after_rollback']}" in out
    assert season["served_after_rollback"] > season["v2"]
    served = os.path.join(season["base"], str(season["served_after_rollback"]))
    with open(os.path.join(served, push.FINGERPRINT_FILE), "rb") as a, \
            open(os.path.join(season["base"], str(season["v1"]), push.FINGERPRINT_FILE), "rb") as b:
        assert a.read() == b.read()  # the same SavedModel as v1
    store, _ = source.open_store(season["output"])
    models = store.get_artifacts_by_id(season["models"][0])
    assert [withdrawal.is_withdrawn(model) for model in models] == [False, True]
    assert serving_lock.LOCK_FILE in os.listdir(season["base"])  # the lock, which TF Serving ignores
    rollbacks = [record for record in season["history"] if record["kind"] == "rollback"]
    assert [(r["rolled_back_to"], r["pushed_version"], r["withdrawn_versions"]) for r in rollbacks] == [
        (season["v1"], season["served_after_rollback"], [season["v2"]])
    ]


@pytest.mark.e2e
def test_a_cached_rerun_offers_the_withdrawn_model_and_the_pusher_refuses_it(season):
    states = {node: execution.last_known_state for node, execution in season["rerun_nodes"].items()}
    cached = season["rerun_nodes"]["Trainer"].CACHED
    assert states["Trainer"] == cached and states["Transform"] == cached
    assert states["Pusher"] == season["rerun_nodes"]["Pusher"].COMPLETE
    assert season["served_after_rerun"] == season["served_after_rollback"]
    summary = season["rerun_summary"]
    assert summary.pushed_model_dir is None and "was withdrawn" in summary.not_pushed_reason
    (record,) = [r for r in season["history"] if r["run_id"] == season["rerun_id"]]
    assert "Trainer" in record["cached"] and record["pushed_version"] is None
    assert "was withdrawn" in record["not_pushed_reason"]


@pytest.mark.e2e
def test_run_3_gates_against_and_warm_starts_from_v1s_model(season):
    first_model, _ = season["models"][0]
    assert season["run3_baseline"] == [first_model]
    assert season["run3_base_model"] == [first_model]
    assert season["v4"] > season["served_after_rollback"]


@pytest.mark.e2e
def test_models_shows_v2_withdrawn_and_what_serves(season):
    (first_model, second_model), listed = season["models"]
    by_version = {entry["version"]: entry for entry in listed}
    assert [entry["version"] for entry in listed] == sorted(by_version, reverse=True)
    assert by_version[season["v2"]]["withdrawn"] and by_version[season["v2"]]["model"] == second_model
    assert "rolled back to version" in by_version[season["v2"]]["withdrawn_reason"]
    assert by_version[season["v1"]]["model"] == first_model and not by_version[season["v1"]]["withdrawn"]
    restored = by_version[season["served_after_rollback"]]
    assert restored["model"] == first_model and restored["restores_version"] == season["v1"]
    newest = by_version[season["v4"]]
    assert newest["served"] and not newest["withdrawn"] and newest["base_model"] == first_model
    assert newest["base_versions"] == [season["v1"], season["served_after_rollback"]]
    assert [entry["served"] for entry in listed].count(True) == 1
    assert by_version[season["v2"]]["span"] == 2 and by_version[season["v2"]]["run_id"] == season["run_ids"][1]


@pytest.mark.e2e
def test_a_failed_run_is_listed_with_its_component_and_reason(season):
    code, _, err = season["failed_run"]
    assert code == 2 and "the examples break the schema" in err
    failed = season["history"][-1]
    assert failed["kind"] == "run" and failed["state"] == "FAILED"
    assert failed["failed_node"] == "ExampleValidator"
    assert failed["failure_reason"].startswith("the examples break the schema (") and "\n" not in failed["failure_reason"]
    assert "ExampleValidator failed: the examples break the schema" in season["table"]
    # vocdet ingest's own pipeline is not a run of this pipeline; the store holds exactly these five runs.
    assert [r["kind"] for r in season["history"]].count("run") == 5


@pytest.mark.e2e
def test_the_plot_is_written(season):
    code, out, err = season["plot"]
    assert code == 0, err
    from PIL import Image

    with Image.open(season["plot_file"]) as picture:
        assert picture.width >= 800 and picture.height >= 400
    assert out.splitlines()[0].startswith("kind,run_id,started")


# Bad input: one line each, through the real command.

def _error(code_out_err, command="rollback") -> str:
    code, _, err = code_out_err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"vocdet {command}: error: ")
    return lines[0]


@pytest.mark.e2e
def test_rollback_with_nothing_to_roll_back_to(season):
    assert "nothing to roll back to" in _error(season["nothing_to_roll_back"])


@pytest.mark.e2e
def test_rollback_to_an_unknown_version(season):
    assert "version 12345: unknown" in _error(_cli(["rollback", "--output", season["output"], "--to", "12345"]))


@pytest.mark.e2e
def test_rollback_to_a_version_that_is_not_blessed(season):
    by_hand = os.path.join(season["base"], "7")  # a version copied by hand: no blessed run pushed it
    shutil.copytree(os.path.join(season["base"], str(season["v1"])), by_hand)
    try:
        line = _error(_cli(["rollback", "--output", season["output"], "--to", "7"]))
    finally:
        shutil.rmtree(by_hand)
    assert "version 7: not blessed" in line


@pytest.mark.e2e
def test_rollback_while_a_vocdet_run_holds_the_output(season):
    served = push.versions(season["base"])[-1]
    with output_lock.hold(season["output"], "run"):
        line = _error(_cli(["rollback", "--output", season["output"], "--to", str(season["v1"])]))
    assert "in use by vocdet run (pid" in line
    with serving_lock.hold(season["base"], "the Pusher"):
        line = _error(_cli(["rollback", "--output", season["output"], "--to", str(season["v1"])]))
    assert "serving folder in use by the Pusher (pid" in line
    assert push.versions(season["base"])[-1] == served


@pytest.mark.e2e
def test_rollback_refuses_an_object_store_serving_folder(season):
    line = _error(_cli(["rollback", "--output", season["output"], "--serving-dir", "gs://bucket/serving"]))
    assert "gs://bucket/serving/vocdet: vocdet rollback needs a filesystem serving folder" in line


@pytest.mark.e2e
def test_rollback_to_a_withdrawn_pruned_version_restores_it_from_its_artefact(season):
    """Last of the e2e tests: it changes what serves. v2's folder is gone (pruned); --to v2 brings its
    withdrawn model back from the pipeline root, clears its mark and withdraws run 3's newer model."""
    v2, v4 = season["v2"], season["v4"]
    shutil.rmtree(os.path.join(season["base"], str(v2)))
    code, out, err = _cli(["rollback", "--output", season["output"], "--to", str(v2)])
    assert code == 0, err
    assert "its mark is cleared" in out and f"withdrawn: version {v4}" in out
    store, _ = source.open_store(season["output"])
    _, second = season["models"][0]
    third = {entry["version"]: entry for entry in season["models"][1]}[v4]["model"]
    m2, m3 = store.get_artifacts_by_id([second, third])
    assert not withdrawal.is_withdrawn(m2) and withdrawal.is_withdrawn(m3)
    served = push.versions(season["base"])[-1]
    with open(os.path.join(season["base"], str(served), push.FINGERPRINT_FILE), "rb") as a, \
            open(os.path.join(m2.uri, "Format-Serving", push.FINGERPRINT_FILE), "rb") as b:
        assert a.read() == b.read()
    last = history.read(store, "vocdet")[-1]
    assert (last.kind, last.rolled_back_to, last.pushed_version, last.withdrawn_versions) == ("rollback", v2, served, [v4])
    assert last.restored_from == os.path.join(m2.uri, "Format-Serving")


def test_operations_on_a_folder_nothing_ran_in(tmp_path):
    for command in ("runs", "models", "rollback"):
        line = _error(_cli([command, "--output", str(tmp_path)]), command)
        assert f"{tmp_path}: no ML Metadata store" in line


def test_rollback_refuses_an_object_store_before_anything_else():
    with pytest.raises(ValueError, match="an object store has no atomic rename"):
        rollback.rollback(None, "vocdet", "gs://bucket/serving/vocdet", keep_versions=5)


def test_history_formats_are_checked():
    with pytest.raises(ValueError, match="--format must be one of table, csv, json"):
        history.format_records([], "yaml")
