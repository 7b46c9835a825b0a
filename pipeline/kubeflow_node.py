"""What each Kubeflow task runs: one node of the TFX pipeline IR, with TFX's portable Launcher.

This is the small equivalent of TFX's former `tfx/orchestration/kubeflow/container_entrypoint.py`
(its v1 Kubeflow runner), which TFX 1.16 still ships but which no longer imports. Each task of the
compiled package runs

    python -m vocdet.pipeline.kubeflow_node --node-ir JSON --metadata-grpc-host H --metadata-grpc-port P
        --run-id {{$.pipeline_job_uuid}} [--parameter NAME VALUE]...

and does for its one node what `LocalDagRunner.run_with_ir` does for every node: the driver (span
resolution for ExampleGen), the resolvers, TFX's cache lookup, the executor and the publish, all in
ML Metadata. KFP only schedules the pods; TFX keeps artefact passing, caching and lineage.

`--node-ir` is a pipeline IR (`tfx.proto.orchestration.Pipeline`, JSON) cut down to one node and
its own executor and driver specs, so the compiled package grows with the IR once, not with
nodes x IR. The run id and KFP's run parameters fill the IR's runtime parameters.

Two environment variables let `vocdet run --package` rehearse a package on one machine:
`VOCDET_METADATA_SQLITE` (an SQLite ML Metadata store in place of the gRPC service) and
`VOCDET_LOCAL_MOUNTS` (JSON `{mount path: local folder}`: the PVC mount as a local folder).
Both stay unset on the cluster.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import vocdet.components  # noqa: F401  pins tf.keras to Keras 3 before TFX loads TF Transform

# The KFP run parameter that fills the IR's `data_root` runtime parameter (ExampleGen's input base).
DATA_ROOT_PARAMETER = "data_root"
METADATA_SQLITE_ENV = "VOCDET_METADATA_SQLITE"
LOCAL_MOUNTS_ENV = "VOCDET_LOCAL_MOUNTS"
# Printed last by every task, read by `vocdet run --package` for its progress lines.
STATE_LINE_PREFIX = "vocdet node state: "


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


def _metadata_connection(args: argparse.Namespace):
    from ml_metadata.proto import metadata_store_pb2
    from tfx.orchestration import metadata

    sqlite_path = os.environ.get(METADATA_SQLITE_ENV)
    if sqlite_path:
        return metadata.sqlite_metadata_connection_config(sqlite_path)
    return metadata_store_pb2.MetadataStoreClientConfig(host=args.metadata_grpc_host, port=args.metadata_grpc_port)


def _typed(parameter, value: str):
    from tfx.proto.orchestration import pipeline_pb2

    if parameter.type == pipeline_pb2.RuntimeParameter.INT:
        return int(value)
    if parameter.type == pipeline_pb2.RuntimeParameter.DOUBLE:
        return float(value)
    return value


def run_node(args: argparse.Namespace) -> str:
    """Launches the node; returns its ML Metadata state (COMPLETE, CACHED, ...)."""
    from google.protobuf import json_format
    from tfx.dsl.compiler import constants
    from tfx.orchestration import metadata
    from tfx.orchestration.local import runner_utils
    from tfx.orchestration.portable import launcher, runtime_parameter_utils
    from tfx.proto.orchestration import pipeline_pb2

    node_ir = json_format.Parse(_map_local_mounts(args.node_ir), pipeline_pb2.Pipeline())
    declared = runtime_parameters(node_ir)
    bindings = {constants.PIPELINE_RUN_ID_PARAMETER_NAME: args.run_id}
    for name, value in args.parameter or []:
        if name not in declared:
            raise ValueError(f"--parameter {name}: the node declares no such runtime parameter ({sorted(declared)})")
        bindings[name] = _typed(declared[name], _map_local_mounts(value))
    runtime_parameter_utils.substitute_runtime_parameter(node_ir, bindings)

    (node,) = node_ir.nodes
    pipeline_node = node.pipeline_node
    node_id = pipeline_node.node_info.id
    deployment = runner_utils.extract_local_deployment_config(node_ir)
    connection = _metadata_connection(args)
    node_launcher = launcher.Launcher(
        pipeline_node=pipeline_node,
        mlmd_connection=metadata.Metadata(connection),
        pipeline_info=node_ir.pipeline_info,
        pipeline_runtime_spec=node_ir.runtime_spec,
        executor_spec=runner_utils.extract_executor_spec(deployment, node_id),
        custom_driver_spec=runner_utils.extract_custom_driver_spec(deployment, node_id),
    )
    logging.info("Component %s is running.", node_id)
    node_launcher.launch()
    logging.info("Component %s is finished.", node_id)
    with metadata.Metadata(connection) as handle:
        return node_state(handle.store, node_ir.pipeline_info.id, node_id, args.run_id)


def node_state(store, pipeline_name: str, node_id: str, run_id: str) -> str:
    """State of the node's newest execution in run `run_id`: COMPLETE, CACHED, FAILED...; NONE if it made none."""
    from ml_metadata.proto import metadata_store_pb2

    node_context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    run_context = store.get_context_by_type_and_name("pipeline_run", run_id)
    if node_context is None or run_context is None:
        return "NONE"
    in_run = {execution.id for execution in store.get_executions_by_context(run_context.id)}
    executions = [e for e in store.get_executions_by_context(node_context.id) if e.id in in_run]
    if not executions:
        return "NONE"
    newest = max(executions, key=lambda execution: execution.id)
    return metadata_store_pb2.Execution.State.Name(newest.last_known_state)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vocdet.pipeline.kubeflow_node", description=__doc__.splitlines()[0])
    parser.add_argument("--node-ir", required=True, help="the node's pipeline IR, JSON")
    parser.add_argument("--run-id", required=True, help="the KFP run's id (TFX's pipeline-run-id)")
    parser.add_argument("--metadata-grpc-host", required=True)
    parser.add_argument("--metadata-grpc-port", type=int, required=True)
    parser.add_argument(
        "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), help="a runtime parameter of the run"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    # One stream for the pod's log, which the KFP UI shows.
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = _parser().parse_args(argv)
    from tfx.utils import telemetry_utils

    with telemetry_utils.scoped_labels({telemetry_utils.LABEL_TFX_RUNNER: "kfp"}):
        state = run_node(args)
    print(f"{STATE_LINE_PREFIX}{state}", flush=True)
    return 0 if state in ("COMPLETE", "CACHED", "NONE") else 1


if __name__ == "__main__":
    sys.exit(main())
