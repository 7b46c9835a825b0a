"""Why a run failed, recorded by vocdet (TFX records no message, and a failing driver or configuration
leaves no execution), and read back by `vocdet runs`: locally, and from a Kubeflow task against a real
MySQL-protocol store (tests/mysql.py)."""

import argparse
import json

import pytest

from tests.mysql import PASSWORD
from vocdet.pipeline.kubeflow import node
from vocdet.pipeline.metadata import run_failure, store
from vocdet.pipeline.operations import history, source
from tests.test_operations_e2e import _cli


def test_a_run_that_failed_before_any_node_is_listed_with_its_reason(tmp_path):
    url = store.StoreUrl(scheme="sqlite", path=str(tmp_path / "metadata.sqlite"))
    metadata = store.connect(url, wait_seconds=0)
    error = ValueError("data.span 9: no span-9 folder under /data/drops\nTraceback ...")
    node_id = run_failure.record_local(metadata, "vocdet", ["FileBasedExampleGen", "StatisticsGen"], 0, error)
    assert node_id == "FileBasedExampleGen"
    (record,) = history.read(source.open_store(str(tmp_path))[0], "vocdet")
    assert (record.state, record.failed_node) == ("FAILED", "FileBasedExampleGen")
    assert record.failure_reason == "data.span 9: no span-9 folder under /data/drops"
    # Another pipeline's runs (vocdet ingest's) are not this pipeline's.
    run_failure.record(metadata, "vocdet-ingest", "ingest-run", "FileBasedExampleGen", error)
    assert len(history.read(metadata, "vocdet")) == 1


def test_a_kubeflow_task_records_its_failure_and_runs_reads_it_through_the_url(mysql, monkeypatch):
    url = mysql.create_database("failures")
    monkeypatch.setenv(store.PASSWORD_ENV, PASSWORD)
    args = argparse.Namespace(metadata=url, run_id="kfp-run-7f3a")
    monkeypatch.delenv(node.METADATA_URL_ENV, raising=False)
    node._record_failure(args, "vocdet", "Trainer", RuntimeError("TFJob vocdet/trainer-7f3a failed: TFJobFailed: OOMKilled"))
    # A second task of the same run failing later does not overwrite the first failure.
    node._record_failure(args, "vocdet", "ServingCheck", RuntimeError("later"))
    code, out, err = _cli(["runs", "--metadata", url, "--format", "json"])
    assert code == 0, err
    (record,) = json.loads(out)
    assert (record["run_id"], record["state"], record["failed_node"]) == ("kfp-run-7f3a", "FAILED", "Trainer")
    assert record["failure_reason"] == "TFJob vocdet/trainer-7f3a failed: TFJobFailed: OOMKilled"


def test_runs_through_a_url_needs_the_password(mysql, monkeypatch):
    monkeypatch.delenv(store.PASSWORD_ENV, raising=False)
    code, _, err = _cli(["runs", "--metadata", mysql.url("failures")])
    assert code == 1 and f"no password in ${store.PASSWORD_ENV}" in err and len(err.strip().splitlines()) == 1


def test_output_and_metadata_exclude_each_other(capsys):
    from vocdet.pipeline import cli

    with pytest.raises(SystemExit) as exited:
        cli.main(["runs", "--output", "outputs", "--metadata", "sqlite:///x.sqlite"])
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert "argument --metadata: not allowed with argument --output" in line


def test_a_task_whose_node_ir_cannot_be_read_records_nothing_and_keeps_its_error():
    raw = json.dumps({"pipelineInfo": {"id": "vocdet"}, "nodes": [{"pipelineNode": {"nodeInfo": {"id": "Pusher"}}}]})
    assert node._names_in(raw) == ("vocdet", "Pusher")
    assert node._names_in("{not json") == ("", "")
    node._record_failure(argparse.Namespace(metadata="sqlite:///nowhere.sqlite", run_id="r"), "", "", ValueError("x"))
