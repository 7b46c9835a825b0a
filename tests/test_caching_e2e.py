"""Reruns redo only what changed: each component gets only its own settings, so TFX's cache (keyed on
them) holds. States are read from ML Metadata, per run."""

import os

import pytest
import yaml
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

from vocdet.components.atomic_pusher import push
from vocdet.pipeline import cli
from vocdet.pipeline.local import summary as run_summary

RESOLVERS = ("baseline_model_resolver",)


def _run(argv: list[str], output: str) -> tuple[dict[str, str], run_summary.RunSummary]:
    """Node id -> state of the newest run, and its summary."""
    assert cli.main(argv) == 0
    path = os.path.join(output, "metadata.sqlite")
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(path))
    run = max(store.get_contexts_by_type("pipeline_run"), key=lambda context: context.id)
    states = {
        node: metadata_store_pb2.Execution.State.Name(execution.last_known_state)
        for node, execution in run_summary.run_nodes(store, run).items()
    }
    return states, run_summary.summarize_metadata(path)


@pytest.mark.e2e
def test_reruns_redo_only_what_changed(small_voc_root, tmp_path):
    output = str(tmp_path / "run")
    tiny = ["run", "--data", small_voc_root, "--output", output, "--steps-per-epoch", "2", "--batch-size", "4"]
    cluster_side = tmp_path / "cluster.yaml"
    cluster_side.write_text(yaml.safe_dump({"kubeflow": {"cpu_limit": 2.0}, "push": {"keep_versions": 3}}))

    first, _ = _run([*tiny, "--epochs", "1", "--blessing-threshold", "0"], output)
    assert set(first.values()) == {"COMPLETE"}, first

    # Evaluation, push and Kubeflow settings: neither Transform nor the Trainer runs again.
    second, summary = _run([*tiny, "--epochs", "1", "--blessing-threshold", "0.001", "--config", str(cluster_side)], output)
    assert {node: second[node] for node in ("Transform", "Trainer")} == {"Transform": "CACHED", "Trainer": "CACHED"}
    assert second["CocoEvaluator"] == "COMPLETE"
    # The Pusher ran again for the new blessing, and pushed nothing: the same model is being served.
    assert summary.blessed and summary.already_serving
    assert len(push.versions(os.path.join(output, "serving", "vocdet"))) == 1
    assert "Trainer" in summary.cached and "Transform" in summary.cached

    # Training settings: the Trainer runs again, Transform does not.
    third, _ = _run([*tiny, "--epochs", "2", "--blessing-threshold", "0.001", "--config", str(cluster_side)], output)
    assert third["Transform"] == "CACHED" and third["Trainer"] == "COMPLETE"

    # Nothing changed: nothing runs but the resolvers.
    fourth, summary = _run([*tiny, "--epochs", "2", "--blessing-threshold", "0.001", "--config", str(cluster_side)], output)
    assert {node: state for node, state in fourth.items() if node not in RESOLVERS} == {
        node: "CACHED" for node in fourth if node not in RESOLVERS
    }, fourth
    assert sorted(summary.cached) == sorted(node for node in fourth if node not in RESOLVERS)


@pytest.mark.e2e
def test_a_failed_push_is_retried_without_retraining(small_voc_root, tmp_path):
    output = str(tmp_path / "run")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the serving folder's parent should be")
    argv = ["run", "--data", small_voc_root, "--output", output, "--steps-per-epoch", "2", "--batch-size", "4",
            "--epochs", "1", "--blessing-threshold", "0", "--serving-dir", str(blocker / "serving")]
    try:
        code = cli.main(argv)
    except Exception:  # noqa: BLE001 (how the failure is reported is test_failures' subject)
        code = None
    assert code != 0
    path = os.path.join(output, "metadata.sqlite")
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(path))
    run = max(store.get_contexts_by_type("pipeline_run"), key=lambda context: context.id)
    failed = run_summary.run_nodes(store, run)
    assert failed["Trainer"].last_known_state == metadata_store_pb2.Execution.COMPLETE
    assert failed["Pusher"].last_known_state == metadata_store_pb2.Execution.FAILED

    blocker.unlink()  # the operator fixes the destination and runs the same command again
    states, summary = _run(argv, output)
    assert states["Transform"] == "CACHED" and states["Trainer"] == "CACHED", states
    assert states["Pusher"] == "COMPLETE" and summary.pushed_model_dir.startswith(str(blocker / "serving"))
    assert len(push.versions(str(blocker / "serving" / "vocdet"))) == 1
