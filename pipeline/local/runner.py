"""Runs the pipeline on this machine: TFX's LocalDagRunner or BeamDagRunner.

Binds the environment only (ML Metadata SQLite store, data root, Beam args) and,
after the run, returns its summary (`summary`). A run that fails has its failing node and
reason recorded in ML Metadata (`metadata.run_failure`), which TFX does not do, for `vocdet runs`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from ml_metadata.metadata_store import metadata_store
from tfx import v1 as tfx

from vocdet.pipeline.config import PipelineConfig
from vocdet.pipeline.local import DAG_RUNNERS
from vocdet.pipeline.local.summary import RunSummary, ingest_counts, summarize
from vocdet.pipeline.metadata import run_failure
from vocdet.pipeline.pipeline import create_ingest_pipeline, create_pipeline


@contextlib.contextmanager
def tfx_argv():
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
    if runner not in DAG_RUNNERS:
        raise ValueError(f"runner must be one of {DAG_RUNNERS}, got {runner!r}")
    os.makedirs(config.output_dir, exist_ok=True)
    started_ms = int(time.time() * 1000)
    node_ids: list[str] = []
    try:
        pipeline = create_pipeline(config, data_root, metadata_connection_config=metadata_config(config))
        node_ids = [component.id for component in pipeline.components]  # topological: the order nodes run in
        with tfx_argv():
            if runner == "beam":
                from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner  # not exported in tfx.v1 (1.16)

                BeamDagRunner().run(pipeline)
            else:
                tfx.orchestration.LocalDagRunner().run(pipeline)
    except Exception as error:
        _record_failure(config, node_ids, started_ms, error)
        raise
    return summarize(config)


def _record_failure(config: PipelineConfig, node_ids: list[str], started_ms: int, error: BaseException) -> None:
    """The failing node and its one-line reason, on the run's context; never hides `error`."""
    try:
        store = metadata_store.MetadataStore(metadata_config(config))
        run_failure.record_local(store, config.pipeline_name, node_ids, started_ms, error)
    except Exception as recording_error:  # noqa: BLE001 (the run's own error is what the user needs)
        print(f"vocdet: could not record the failure in {config.metadata_path}: {recording_error}", file=sys.stderr)


def ingest(config: PipelineConfig, data_root: str) -> tuple[str, dict[str, dict[str, int]]]:
    """Runs ExampleGen alone; returns (Examples directory, counts per split)."""
    os.makedirs(config.output_dir, exist_ok=True)
    with tfx_argv():
        tfx.orchestration.LocalDagRunner().run(
            create_ingest_pipeline(config, data_root, metadata_connection_config=metadata_config(config))
        )
    store = metadata_store.MetadataStore(metadata_config(config))
    examples = max(store.get_artifacts_by_type("Examples"), key=lambda artifact: artifact.id)
    return examples.uri, ingest_counts(examples.uri)
