"""Why a run failed, recorded in ML Metadata by vocdet itself, for `vocdet runs`.

TFX marks a failed execution FAILED and records no message (tfx 1.16, `portable/launcher.py`), and a
failure in a driver (ExampleGen's span resolution) or in the pipeline's configuration leaves no
execution at all. The two places that see the exception record it on the run's `pipeline_run`
context as custom properties: the node that failed and the exception's first line.

- `pipeline.local.runner` (LocalDagRunner and BeamDagRunner run the nodes in order and raise the
  first failure): the run is the `pipeline_run` context created since the run started; the node is
  the one with a FAILED execution, else the first node of the pipeline with no execution in the run.
- `pipeline.kubeflow.node` (one node a task): the run id and the node are its own.

A run whose failure came before any node registered it gets a `pipeline_run` context of its own, a
child of the pipeline's context as TFX makes them, so the history still lists it.
"""

from __future__ import annotations

import datetime

from ml_metadata.proto import metadata_store_pb2

FAILED_NODE_PROPERTY = "vocdet_failed_node"
FAILURE_REASON_PROPERTY = "vocdet_failure_reason"
# TFX's context type names (tfx/dsl/compiler/constants.py).
PIPELINE_CONTEXT_TYPE = "pipeline"
PIPELINE_RUN_CONTEXT_TYPE = "pipeline_run"
NODE_CONTEXT_TYPE = "node"
# The longest reason recorded (a traceback's last line can quote a whole proto).
_REASON_CHARS = 500


def one_line(error: BaseException) -> str:
    """The exception's first line, shortened; its type when it says nothing."""
    text = str(error).strip().splitlines()[0].strip() if str(error).strip() else ""
    text = text or type(error).__name__
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def record(store, pipeline_name: str, run_id: str, node_id: str, error: BaseException) -> None:
    """Records on run `run_id` of `pipeline_name` that `node_id` failed with `error`; the first failure recorded stays."""
    run = store.get_context_by_type_and_name(PIPELINE_RUN_CONTEXT_TYPE, run_id) or _new_run(store, pipeline_name, run_id)
    if FAILED_NODE_PROPERTY in run.custom_properties:
        return  # a task that failed earlier in the same run (Kubeflow runs tasks in parallel)
    run.custom_properties[FAILED_NODE_PROPERTY].string_value = node_id
    run.custom_properties[FAILURE_REASON_PROPERTY].string_value = one_line(error)
    store.put_contexts([run])


def record_local(store, pipeline_name: str, node_ids: list[str], started_ms: int, error: BaseException) -> str:
    """After a local run raised `error`: records it on the run that started at `started_ms`; returns the node.

    `node_ids` is the pipeline's nodes in the order the runner runs them.
    """
    runs = [run for run in _runs_of(store, pipeline_name) if run.create_time_since_epoch >= started_ms]
    run = max(runs, key=lambda context: context.id) if runs else None
    node_id = node_ids[0] if node_ids else "pipeline"
    if run is not None:
        executions = {}
        for execution in store.get_executions_by_context(run.id):
            for context in store.get_contexts_by_execution(execution.id):
                if context.type_id == _type_id(store, NODE_CONTEXT_TYPE):
                    executions[context.name.split(".", 1)[1]] = execution
        failed = [node for node, execution in executions.items() if execution.last_known_state == execution.FAILED]
        missing = [node for node in node_ids if node not in executions]
        node_id = failed[0] if failed else (missing[0] if missing else node_id)
        run_id = run.name
    else:
        run_id = datetime.datetime.fromtimestamp(started_ms / 1000).isoformat()
    record(store, pipeline_name, run_id, node_id, error)
    return node_id


def _runs_of(store, pipeline_name: str) -> list:
    pipeline = store.get_context_by_type_and_name(PIPELINE_CONTEXT_TYPE, pipeline_name)
    if pipeline is None:
        return []
    return [
        context for context in store.get_children_contexts_by_context(pipeline.id)
        if context.type_id == _type_id(store, PIPELINE_RUN_CONTEXT_TYPE)
    ]


def _type_id(store, name: str) -> int | None:
    try:
        return store.get_context_type(name).id
    except Exception:  # ML Metadata's NotFoundError: no such type yet
        return None


def _new_run(store, pipeline_name: str, run_id: str):
    """A `pipeline_run` context for a run no node registered, under the pipeline's context (created if need be)."""
    contexts = []
    for type_name, name in ((PIPELINE_CONTEXT_TYPE, pipeline_name), (PIPELINE_RUN_CONTEXT_TYPE, run_id)):
        type_id = store.put_context_type(metadata_store_pb2.ContextType(name=type_name))
        context = store.get_context_by_type_and_name(type_name, name)
        if context is None:
            [context_id] = store.put_contexts([metadata_store_pb2.Context(type_id=type_id, name=name)])
            [context] = store.get_contexts_by_id([context_id])
        contexts.append(context)
    pipeline, run = contexts
    store.put_parent_contexts([metadata_store_pb2.ParentContext(child_id=run.id, parent_id=pipeline.id)])
    return run
