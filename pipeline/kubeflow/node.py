"""What each Kubeflow task runs: one node of the TFX pipeline IR, with TFX's portable Launcher.

This is the small equivalent of TFX's former `tfx/orchestration/kubeflow/container_entrypoint.py`
(its v1 Kubeflow runner), which TFX 1.16 still ships but which no longer imports. Each task of the
compiled package runs

    python -m vocdet.pipeline.kubeflow.node --node-ir JSON --metadata URL --metadata-wait-seconds S
        --run-id {{$.pipeline_job_uuid}} [--parameter NAME VALUE]...

and does for its one node what `LocalDagRunner.run_with_ir` does for every node: the driver (span
resolution for ExampleGen), the resolvers, TFX's cache lookup, the executor and the publish, all in
ML Metadata. KFP only schedules the pods; TFX keeps artefact passing, caching and lineage. The
store is vocdet's own (`pipeline.metadata.store`: the URL has no password, which comes from
`$VOCDET_METADATA_PASSWORD`); each task first waits for it, for a bounded time. The package's first
task runs `--prepare-metadata-store` instead: it creates or upgrades the store's schema once.

`--node-ir` is a pipeline IR (`tfx.proto.orchestration.Pipeline`, JSON) cut down to one node and
its own executor and driver specs, so the compiled package grows with the IR once, not with
nodes x IR. The run id and KFP's run parameters fill the IR's runtime parameters.

The Trainer on several nodes (`kubeflow.trainer_workers` > 1): the Trainer's task gets
`--tfjob-workers N --tfjob-pod JSON` and, instead of launching the node, submits a TFJob
(`vocdet.pipeline.kubeflow.tfjob`) whose replicas run this entrypoint with the task's own arguments and
`--tfjob-replica-of JOB`. ML Metadata must see one Trainer execution, published once, and every
replica must train on the same inputs. So the replicas split TFX's portable Launcher in two:

- the chief (TF_CONFIG task `chief`) runs the whole Launcher, as the single-pod task does: input
  resolution, cache lookup, registering the execution, the executor, the publish. Just before its
  executor starts, it writes the resolved `ExecutionInfo` (TFX's own serialisation,
  `python_execution_binary_utils`) to `<pipeline root>/.tfjob/<job>/execution_info`, the handoff;
  on a cache hit, or if it fails before its executor, it writes that outcome there instead;
- each worker waits for the handoff and runs only the executor on it, as TFX's
  `python_execution_binary` does for a remote executor: no ML Metadata connection at all, so it
  cannot register, publish or resolve differently from the chief. It keeps the chief's input
  artefacts, exec properties and `model_run` folder (run_fn writes a worker's logs and resume
  backup under `model_run/.worker-<i>`, `distribution.task_dir`), but its `model` output, executor
  output and temp folder are private scratch: run_fn exports only on the chief, and TFX's Trainer
  executor only checks that its `Format-Serving` folder exists, so the scratch holds an empty one.

Resolving inputs on every replica (each with its own Launcher) would register N executions and
publish N models; running run_fn directly on the workers would bypass TFX's executor (module file
loading, FnArgs). The handoff keeps TFX's two halves, launcher and executor, on their own contract.

A task that fails records its node and one-line reason on the run's `pipeline_run` context
(`metadata.run_failure`; TFX records no message, and a failing driver leaves no execution), which
`vocdet runs --metadata URL` shows.

Two environment variables let `vocdet run --package` rehearse a package on one machine:
`VOCDET_METADATA_URL` (the store to use in place of the package's, e.g. an SQLite file or a local
PostgreSQL) and `VOCDET_LOCAL_MOUNTS` (JSON `{mount path: local folder}`: the PVC mount as a local
folder). Both stay unset on the cluster.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import vocdet.components  # noqa: F401  pins tf.keras to Keras 3 before TFX loads TF Transform
from vocdet.components.compat import tfx as tfx_compat
from vocdet.pipeline.kubeflow import outputs as kfp_outputs
from vocdet.pipeline.metadata import run_failure
from vocdet.pipeline.metadata import store as metadata_store

# The KFP run parameter that fills the IR's `data_root` runtime parameter (ExampleGen's input base).
DATA_ROOT_PARAMETER = "data_root"
METADATA_URL_ENV = "VOCDET_METADATA_URL"
LOCAL_MOUNTS_ENV = "VOCDET_LOCAL_MOUNTS"
# Printed last by every task, read by `vocdet run --package` for its progress lines.
STATE_LINE_PREFIX = "vocdet node state: "
# The chief's handoff to the TFJob's workers (see the module docstring), under the pipeline root.
HANDOFF_DIR = ".tfjob"
HANDOFF_FILE = "execution_info"
# What the chief writes when no executor runs: the workers then end as it did.
HANDOFF_SKIPPED = "skipped:"
HANDOFF_FAILED = "failed:"
# How long a worker waits for the chief's handoff (the chief's pod may wait for a GPU node).
HANDOFF_TIMEOUT_SECONDS = 3600.0
# What the task runs, and so every replica of its TFJob (the image's python).
NODE_COMMAND = ["python", "-m", "vocdet.pipeline.kubeflow.node"]
# The arguments that make the task submit a TFJob instead of launching; the replicas get the rest.
_TFJOB_SUBMIT_ARGS = ("--tfjob-workers", "--tfjob-pod", "--tfjob-poll-seconds")


def node_ir_json(pipeline_ir, node_id: str) -> str:
    """The pipeline IR cut down to `node_id` (its node, executor and driver specs), as compact JSON."""
    from google.protobuf import json_format
    from tfx.proto.orchestration import pipeline_pb2

    deployment = pipeline_pb2.IntermediateDeploymentConfig()
    pipeline_ir.deployment_config.Unpack(deployment)
    node_deployment = pipeline_pb2.IntermediateDeploymentConfig()
    for field in ("executor_specs", "custom_driver_specs", "node_level_platform_configs"):
        if node_id in getattr(deployment, field):
            getattr(node_deployment, field)[node_id].CopyFrom(getattr(deployment, field)[node_id])
    node_ir = pipeline_pb2.Pipeline()
    node_ir.pipeline_info.CopyFrom(pipeline_ir.pipeline_info)
    node_ir.runtime_spec.CopyFrom(pipeline_ir.runtime_spec)
    node_ir.execution_mode = pipeline_ir.execution_mode
    node_ir.deployment_config.Pack(node_deployment)
    node_ir.nodes.add().CopyFrom(_node(pipeline_ir, node_id))
    return json.dumps(json_format.MessageToDict(node_ir), separators=(",", ":"), sort_keys=True)


def runtime_parameters(pipeline_ir) -> dict:
    """Name -> RuntimeParameter of the IR, except the run id, which KFP's job id fills."""
    from tfx.dsl.compiler import constants
    from tfx.proto.orchestration import pipeline_pb2

    found: dict = {}

    def visit(message) -> None:
        if isinstance(message, pipeline_pb2.RuntimeParameter):
            found[message.name] = message
            return
        for field, value in message.ListFields():
            if field.message_type is None:
                continue
            if field.message_type.GetOptions().map_entry:
                values = value.values()
            elif field.label == field.LABEL_REPEATED:
                values = value
            else:
                values = [value]
            for item in values:
                if hasattr(item, "ListFields"):
                    visit(item)

    visit(pipeline_ir)
    found.pop(constants.PIPELINE_RUN_ID_PARAMETER_NAME, None)
    return found


def _node(pipeline_ir, node_id: str):
    for node in pipeline_ir.nodes:
        if node.pipeline_node.node_info.id == node_id:
            return node
    raise ValueError(f"node {node_id!r} is not in the pipeline IR")


def _map_local_mounts(text: str) -> str:
    """Rewrites mount paths to local folders (rehearsal only; see the module docstring)."""
    mounts = json.loads(os.environ.get(LOCAL_MOUNTS_ENV) or "{}")
    for mount_path, local_folder in mounts.items():
        text = text.replace(mount_path.rstrip("/") + "/", local_folder.rstrip("/") + "/")
    return text


def _store_url(args: argparse.Namespace) -> metadata_store.StoreUrl:
    """The task's store: `--metadata`, or the rehearsal's stand-in (`VOCDET_METADATA_URL`)."""
    return metadata_store.StoreUrl.parse(os.environ.get(METADATA_URL_ENV) or args.metadata, "--metadata")


def _metadata_connection(args: argparse.Namespace):
    """ML Metadata's connection config for the task's store, once the store answers (a bounded wait)."""
    url = _store_url(args)
    password = metadata_store.password_from_environment(url)
    metadata_store.connect(url, password, wait_seconds=args.metadata_wait_seconds, log=logging.warning)
    return url.connection_config(password)


def prepare_store(args: argparse.Namespace) -> str:
    """The package's first task: waits for the store, creates or upgrades its schema; returns COMPLETE."""
    url = _store_url(args)
    metadata_store.prepare(
        url, metadata_store.password_from_environment(url), wait_seconds=args.metadata_wait_seconds, log=logging.warning
    )
    logging.info("Metadata store %s is ready", url)
    return "COMPLETE"


def _parse_parameter(parameter, value: str):
    from tfx.proto.orchestration import pipeline_pb2

    if parameter.type == pipeline_pb2.RuntimeParameter.INT:
        return int(value)
    if parameter.type == pipeline_pb2.RuntimeParameter.DOUBLE:
        return float(value)
    return value


def _resolved_node_ir(args: argparse.Namespace):
    """The task's node IR with its runtime parameters (run id, KFP's run parameters) filled in."""
    from google.protobuf import json_format
    from tfx.dsl.compiler import constants
    from tfx.orchestration.local import runner_utils  # noqa: F401  registers the IR's Any types (executor specs)
    from tfx.orchestration.portable import launcher  # noqa: F401  (driver specs)
    from tfx.orchestration.portable import runtime_parameter_utils
    from tfx.proto.orchestration import pipeline_pb2

    node_ir = json_format.Parse(_map_local_mounts(args.node_ir), pipeline_pb2.Pipeline())
    declared = runtime_parameters(node_ir)
    bindings = {constants.PIPELINE_RUN_ID_PARAMETER_NAME: args.run_id}
    for name, value in args.parameter or []:
        if name not in declared:
            raise ValueError(f"--parameter {name}: the node declares no such runtime parameter ({sorted(declared)})")
        bindings[name] = _parse_parameter(declared[name], _map_local_mounts(value))
    runtime_parameter_utils.substitute_runtime_parameter(node_ir, bindings)
    return node_ir


def run_node(args: argparse.Namespace, handoff: str | None = None) -> str:
    """Launches the node; returns its ML Metadata state (COMPLETE, CACHED, ...).

    With `handoff` (a TFJob's chief), the resolved ExecutionInfo is written there before the executor runs.
    """
    from tfx.orchestration import metadata
    from tfx.orchestration.local import runner_utils

    try:
        node_ir = _resolved_node_ir(args)
    except Exception as error:
        _record_failure(args, *_names_in(args.node_ir), error)
        raise
    (node,) = node_ir.nodes
    pipeline_node = node.pipeline_node
    node_id = pipeline_node.node_info.id
    deployment = runner_utils.extract_local_deployment_config(node_ir)
    connection = _metadata_connection(args)
    launcher_class = _launcher_class(handoff)
    node_launcher = launcher_class(
        pipeline_node=pipeline_node,
        mlmd_connection=metadata.Metadata(connection),
        pipeline_info=node_ir.pipeline_info,
        pipeline_runtime_spec=node_ir.runtime_spec,
        executor_spec=runner_utils.extract_executor_spec(deployment, node_id),
        custom_driver_spec=runner_utils.extract_custom_driver_spec(deployment, node_id),
    )
    logging.info("Component %s is running.", node_id)
    try:
        execution_info = node_launcher.launch()
    except BaseException as error:
        if handoff and not _exists(handoff):
            _write_handoff(handoff, f"{HANDOFF_FAILED} {type(error).__name__}: {error}")
        if isinstance(error, Exception):
            _record_failure(args, node_ir.pipeline_info.id, node_id, error)
        raise
    if handoff and not _exists(handoff):
        execution = "no execution" if execution_info is None else f"execution {execution_info.execution_id}"
        _write_handoff(handoff, f"{HANDOFF_SKIPPED} the chief's launcher ran no executor ({execution}: cached or skipped)")
    logging.info("Component %s is finished.", node_id)
    with metadata.Metadata(connection) as handle:
        if not args.tfjob_replica_of:  # a TFJob's chief: the Trainer's task fills them once the job ends
            _fill_kfp_outputs(args, handle.store, node_ir.pipeline_info.id, node_id)
        return node_state(handle.store, node_ir.pipeline_info.id, node_id, args.run_id)


def _names_in(node_ir: str) -> tuple[str, str]:
    """(pipeline name, node id) read from the raw node IR, for an IR that could not be resolved; empty if unreadable."""
    try:
        raw = json.loads(node_ir)
        return raw["pipelineInfo"]["id"], raw["nodes"][0]["pipelineNode"]["nodeInfo"]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        return "", ""


def _record_failure(args: argparse.Namespace, pipeline_name: str, node_id: str, error: BaseException) -> None:
    """The node and its one-line reason on the run's context (`run_failure`); never hides `error`."""
    if not pipeline_name or not node_id:
        logging.warning("Not recorded in the metadata store: the node IR names no pipeline and node")
        return
    try:
        url = _store_url(args)
        store = metadata_store.connect(url, metadata_store.password_from_environment(url), wait_seconds=0)
        run_failure.record(store, pipeline_name, args.run_id, node_id, error)
    except Exception as recording_error:  # noqa: BLE001 (the node's own error is what the log must show)
        logging.warning("Could not record the failure in the metadata store: %s", recording_error)


def _launcher_class(handoff: str | None):
    """TFX's Launcher; for a TFJob's chief, one that hands the ExecutionInfo to the workers first.

    The hook into TFX's Launcher is a TFX internal (`compat.tfx.launcher_with_executor_hook`),
    checked against the TFX releases it was tested on; a single-pod task uses TFX's own Launcher.
    """
    from tfx.orchestration.portable import launcher

    if handoff is None:
        return launcher.Launcher

    def hand_off(execution_info) -> None:
        from tfx.orchestration.python_execution_binary import python_execution_binary_utils

        _write_handoff(handoff, python_execution_binary_utils.serialize_execution_info(execution_info))
        logging.info("Execution %d handed to the TFJob's workers (%s)", execution_info.execution_id, handoff)

    return tfx_compat.launcher_with_executor_hook(hand_off)


def handoff_path(node_ir, job: str) -> str:
    """`<pipeline root>/.tfjob/<job>/execution_info`: on the PVC (or bucket) every replica mounts."""
    root = node_ir.runtime_spec.pipeline_root.field_value.string_value
    return os.path.join(root, HANDOFF_DIR, job, HANDOFF_FILE)


def _exists(path: str) -> bool:
    import tensorflow as tf

    return tf.io.gfile.exists(path)


def _write_handoff(path: str, text: str) -> None:
    """Written whole under a temporary name, then renamed: a worker never reads half of it."""
    import tensorflow as tf

    tf.io.gfile.makedirs(os.path.dirname(path))
    partial = f"{path}.partial"
    with tf.io.gfile.GFile(partial, "w") as handle:
        handle.write(text)
    tf.io.gfile.rename(partial, path, overwrite=True)


def _read_handoff(path: str, timeout_seconds: float) -> str:
    import tensorflow as tf

    deadline = time.monotonic() + timeout_seconds
    logged = 0.0
    while not tf.io.gfile.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the TFJob's chief wrote no handoff to {path} in {timeout_seconds:g} s")
        if time.monotonic() - logged > 60:
            logging.info("Waiting for the chief's handoff %s", path)
            logged = time.monotonic()
        time.sleep(1.0)
    with tf.io.gfile.GFile(path) as handle:
        return handle.read()


def run_worker(args: argparse.Namespace, handoff: str, worker_index: int) -> str:
    """A TFJob worker: the executor alone, on the chief's ExecutionInfo; nothing in ML Metadata.

    Returns the state line's value: COMPLETE when its executor succeeded, the chief's outcome when
    the chief ran none (SKIPPED); raises when the chief failed before its executor or this one fails.
    """
    import tempfile

    import tensorflow as tf
    from tfx.orchestration.local import runner_utils
    from tfx.orchestration.python_execution_binary import python_execution_binary_utils, python_execution_lib
    from tfx.proto.orchestration import execution_result_pb2

    node_ir = _resolved_node_ir(args)
    (node,) = node_ir.nodes
    node_id = node.pipeline_node.node_info.id
    executor_spec = runner_utils.extract_executor_spec(runner_utils.extract_local_deployment_config(node_ir), node_id)
    text = _read_handoff(handoff, HANDOFF_TIMEOUT_SECONDS)
    if text.startswith(HANDOFF_FAILED):
        raise RuntimeError(f"the TFJob's chief failed before its executor ran: {text[len(HANDOFF_FAILED):].strip()}")
    if text.startswith(HANDOFF_SKIPPED):
        logging.info("Nothing to train: %s", text[len(HANDOFF_SKIPPED):].strip())
        return "SKIPPED"
    execution_info = python_execution_binary_utils.deserialize_execution_info(text)
    scratch = tempfile.mkdtemp(prefix=f"vocdet-{node_id.lower()}-worker-{worker_index}-")
    for key, artifacts in execution_info.output_dict.items():
        if key == "model_run":
            continue  # shared: run_fn keeps this worker's files under model_run/.worker-<index>
        for artifact in artifacts:
            artifact.uri = os.path.join(scratch, "outputs", key)
            tf.io.gfile.makedirs(artifact.uri)
    for artifact in execution_info.output_dict.get("model", []):
        # TFX's Trainer executor checks that run_fn wrote the serving model; only the chief does.
        tf.io.gfile.makedirs(os.path.join(artifact.uri, "Format-Serving"))
    execution_info.execution_output_uri = os.path.join(scratch, "executor_output.pb")
    execution_info.tmp_dir = os.path.join(scratch, "tmp")
    execution_info.stateful_working_dir = os.path.join(scratch, "stateful_working_dir")
    for folder in (execution_info.tmp_dir, execution_info.stateful_working_dir):
        tf.io.gfile.makedirs(folder)
    logging.info("Worker %d runs execution %d's executor (no ML Metadata)", worker_index, execution_info.execution_id)
    python_execution_lib.run(executor_spec, execution_info)
    if tf.io.gfile.exists(execution_info.execution_output_uri):
        output = execution_result_pb2.ExecutorOutput.FromString(
            tf.io.gfile.GFile(execution_info.execution_output_uri, "rb").read()
        )
        if output.execution_result.code:
            raise RuntimeError(f"worker {worker_index}'s executor failed: {output.execution_result.result_message}")
    tf.io.gfile.rmtree(scratch)
    return "COMPLETE"


def run_replica(args: argparse.Namespace) -> str:
    """One replica of the TFJob `args.tfjob_replica_of`, by its TF_CONFIG: chief or worker."""
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task") or {}
    if task.get("type") not in ("chief", "worker") or "chief" not in tf_config.get("cluster", {}):
        raise ValueError(
            f"--tfjob-replica-of {args.tfjob_replica_of}: TF_CONFIG names no chief and worker task "
            f"(the Training Operator sets it): {tf_config}"
        )
    handoff = handoff_path(_resolved_node_ir(args), args.tfjob_replica_of)
    if task["type"] == "chief":
        return run_node(args, handoff=handoff)
    return run_worker(args, handoff, int(task.get("index", 0)))


def submit_tfjob(args: argparse.Namespace, argv: list[str]) -> str:
    """The task of a multi-node Trainer: a TFJob of the same entrypoint, watched to its end; returns the node's state."""
    from vocdet.pipeline.kubeflow import tfjob

    node_ir = _resolved_node_ir(args)
    node_id = node_ir.nodes[0].pipeline_node.node_info.id
    api, namespace = tfjob.api_client()
    name = tfjob.job_name(node_id, args.run_id)
    job = tfjob.build_tfjob(
        name,
        namespace,
        workers=args.tfjob_workers,
        pod=tfjob.ReplicaPod.from_json(args.tfjob_pod),
        command=list(NODE_COMMAND),
        args=[*replica_args(argv), "--tfjob-replica-of", name],
        run_id=args.run_id,
    )
    tfjob.run_tfjob(job, api, poll_seconds=args.tfjob_poll_seconds)
    # What the chief published (COMPLETE, or CACHED on a cache hit), as for a single-pod task.
    from tfx.orchestration import metadata

    with metadata.Metadata(_metadata_connection(args)) as handle:
        _fill_kfp_outputs(args, handle.store, node_ir.pipeline_info.id, node_id)
        return node_state(handle.store, node_ir.pipeline_info.id, node_id, args.run_id)


def _fill_kfp_outputs(args: argparse.Namespace, store, pipeline_name: str, node_id: str) -> None:
    """What KFP's UI shows: filled from this run's execution, reused artefacts included (a cache hit)."""
    if args.kfp_executor_input:
        kfp_outputs.fill(store, pipeline_name, node_id, args.run_id, args.kfp_executor_input, dict(args.kfp_output or []))


def replica_args(argv: list[str]) -> list[str]:
    """The task's arguments without those that make it submit a TFJob."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _TFJOB_SUBMIT_ARGS:
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept


def node_state(store, pipeline_name: str, node_id: str, run_id: str) -> str:
    """State of the node's newest execution in run `run_id`: COMPLETE, CACHED, FAILED...; NONE if it made none."""
    from ml_metadata.proto import metadata_store_pb2

    execution = kfp_outputs.run_execution(store, pipeline_name, node_id, run_id)
    return "NONE" if execution is None else metadata_store_pb2.Execution.State.Name(execution.last_known_state)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vocdet.pipeline.kubeflow.node", description=__doc__.splitlines()[0])
    task = parser.add_mutually_exclusive_group(required=True)
    task.add_argument("--node-ir", help="the node's pipeline IR, JSON")
    task.add_argument(
        "--prepare-metadata-store", action="store_true", help="create or upgrade the store's schema (the first task)"
    )
    parser.add_argument("--run-id", help="the KFP run's id (TFX's pipeline-run-id); needed with --node-ir")
    parser.add_argument("--metadata", required=True, help="the ML Metadata store's URL (no password)")
    parser.add_argument(
        "--metadata-wait-seconds", type=float, default=metadata_store.DEFAULT_WAIT_SECONDS,
        help="how long to wait for a store that does not answer yet",
    )
    parser.add_argument(
        "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), help="a runtime parameter of the run"
    )
    kfp = parser.add_argument_group("KFP output artefacts (pipeline.kubeflow.outputs)")
    kfp.add_argument("--kfp-executor-input", metavar="JSON", help="KFP's executor input ({{$}})")
    kfp.add_argument("--kfp-output", nargs=2, action="append", metavar=("NAME", "PATH"), help="a declared output's local path")
    tfjob = parser.add_argument_group("multi-node Trainer (kubeflow.trainer_workers > 1)")
    tfjob.add_argument("--tfjob-workers", type=int, default=0, help="submit a TFJob of this many replicas, and wait for it")
    tfjob.add_argument("--tfjob-pod", help="the replicas' pod settings, JSON (vocdet.pipeline.kubeflow.tfjob.ReplicaPod)")
    tfjob.add_argument("--tfjob-poll-seconds", type=float, default=10.0, help="how often the job's status is read")
    tfjob.add_argument("--tfjob-replica-of", metavar="JOB", help="run as a replica of this TFJob, by TF_CONFIG")
    return parser


def main(argv: list[str] | None = None) -> int:
    # One stream for the pod's log, which the KFP UI shows.
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.tfjob_workers > 1 and not args.tfjob_pod:
        raise SystemExit("--tfjob-workers needs --tfjob-pod")
    if args.node_ir and not args.run_id:
        raise SystemExit("--node-ir needs --run-id")
    try:
        state = _run(args, argv)
    except metadata_store.StoreError as error:  # one line: the store, and what to check
        logging.error("%s", error)
        state = "FAILED"
    return _finish(state)


def _run(args: argparse.Namespace, argv: list[str]) -> str:
    if args.prepare_metadata_store:
        return prepare_store(args)
    from tfx.utils import telemetry_utils

    with telemetry_utils.scoped_labels({telemetry_utils.LABEL_TFX_RUNNER: "kfp"}):
        if args.tfjob_workers > 1:
            return _submitted_state(args, argv)
        if args.tfjob_replica_of:
            return run_replica(args)
        return run_node(args)


def _finish(state: str) -> int:
    """Prints the state line `vocdet run --package` reads; the task's exit code."""
    print(f"{STATE_LINE_PREFIX}{state}", flush=True)
    return 0 if state in ("COMPLETE", "CACHED", "NONE", "SKIPPED") else 1


def _submitted_state(args: argparse.Namespace, argv: list[str]) -> str:
    """The node's state after its TFJob succeeded; FAILED (the job's reason logged) or CANCELLED (the job deleted)."""
    from vocdet.pipeline.kubeflow import tfjob

    try:
        return submit_tfjob(args, argv)
    except tfjob.Cancelled:
        return "CANCELLED"
    except RuntimeError as error:  # the job's reason, one line
        logging.error("%s", error)
        return "FAILED"


if __name__ == "__main__":
    sys.exit(main())
