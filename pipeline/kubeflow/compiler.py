"""Compiles the pipeline for open-source Kubeflow Pipelines 2.x with KFP's own SDK and compiler.

The definition is `pipeline.create_pipeline`, the one `vocdet run` executes. TFX compiles it to its
pipeline IR; each IR node becomes one KFP container task running `vocdet.pipeline.kubeflow.node` (TFX's
portable Launcher, as TFX's former Kubeflow runner did), with the node's slice of the IR in its
arguments. So:

- every executor in the package is a container: no resolver, importer or lifecycle hook, which KFP
  2.x's backend does not run ("resolver executors not implemented"); TFX's resolvers and its
  ExampleGen driver run inside the tasks;
- task dependencies are the TFX DAG's edges; TFX does artefact passing, caching and lineage in
  vocdet's own ML Metadata store (`kubeflow.metadata`, `pipeline.metadata.store`), so KFP's own
  caching is off for every task. One more task, `PrepareMetadataStore`, runs first: it waits for
  the store and creates or upgrades its schema once, before the tasks fan out (concurrent first
  connections to an empty database fail);
- the store's password is never in the package: kfp-kubernetes puts its secret into each task's
  environment, and each task carries the pod label the store's NetworkPolicy admits;
- the IR's runtime parameters (`data_root`) are the KFP pipeline's parameters, and KFP's run id is
  TFX's `pipeline-run-id`;
- resources and Kubernetes settings are applied to the tasks while building: KFP's task methods for
  CPU, memory and GPUs, kfp-kubernetes for the PVC, the object-store secret, and the Trainer's GPU
  node selector and tolerations.

TFX's KubeflowV2DagRunner is not used: its output targets Vertex AI Pipelines and does not run on
open-source KFP (docs/kubeflow.md).
"""

from __future__ import annotations

import dataclasses
import inspect
import os

from kfp import compiler, dsl, kubernetes
from tfx import v1 as tfx
from tfx.dsl.compiler import compiler as tfx_compiler
from tfx.dsl.compiler import constants as tfx_constants
from tfx.proto.orchestration import pipeline_pb2

from vocdet.pipeline import beam_args
from vocdet.pipeline.kubeflow import node as kubeflow_node
from vocdet.pipeline.kubeflow import outputs as kfp_outputs
from vocdet.pipeline.metadata import store as metadata_store
from vocdet.pipeline.config import KubeflowConfig, PipelineConfig
from vocdet.pipeline.pipeline import create_pipeline

DATA_ROOT_PARAMETER = kubeflow_node.DATA_ROOT_PARAMETER
TRAINER_NODE = "Trainer"
# The task that prepares the metadata store before the TFX nodes' tasks (not a TFX node).
PREPARE_STORE_TASK = "PrepareMetadataStore"
# The pod label k8s/metadata-store.yaml's NetworkPolicy admits to the store: every task and TFJob replica.
METADATA_CLIENT_LABEL = ("vocdet-metadata-client", "true")
# Where the object-store key is mounted, and the variable Google's libraries read it from.
CREDENTIALS_DIR = "/var/secrets/object-store"
CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
# KFP parameter types for TFX runtime parameter types.
_PARAMETER_TYPES = {
    pipeline_pb2.RuntimeParameter.STRING: str,
    pipeline_pb2.RuntimeParameter.INT: int,
    pipeline_pb2.RuntimeParameter.DOUBLE: float,
}


@dataclasses.dataclass(frozen=True)
class CompiledPackage:
    path: str
    size_bytes: int
    num_tasks: int


def compile_pipeline(config: PipelineConfig, output_path: str) -> CompiledPackage:
    """Writes the KFP pipeline (YAML: the spec, then kfp-kubernetes' platform config) for `config`."""
    kubeflow = config.kubeflow
    if not kubeflow.image:
        raise ValueError("kubeflow.image is not set: pass --image (see docker/build.sh)")
    if not output_path.endswith((".yaml", ".yml")):
        raise ValueError(f"{output_path}: the compiled pipeline is YAML; name it .yaml")
    cluster_config = config.with_overrides(
        {"output_dir": kubeflow.pvc_mount_path, "push": {"serving_dir": kubeflow.serving_dir}}
    )
    data_root = tfx.dsl.experimental.RuntimeParameter(name=DATA_ROOT_PARAMETER, ptype=str, default=kubeflow.data_root)
    # TFX's compiler puts these in the IR of each Beam node (ExampleGen, StatisticsGen, Transform).
    cluster_beam_args = beam_args.pipeline_args(config.beam, image=kubeflow.image, on_cluster=True)
    tfx_pipeline = create_pipeline(
        cluster_config, data_root, pipeline_root=kubeflow.tfx_pipeline_root, beam_pipeline_args=cluster_beam_args
    )
    pipeline_ir = tfx_compiler.Compiler().compile(tfx_pipeline)

    kfp_pipeline = _kfp_pipeline(pipeline_ir, kubeflow, f"{config.pipeline_name}: VOC object detection (KerasCV RetinaNet, TFX)")
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    compiler.Compiler().compile(kfp_pipeline, output_path)
    # A task per TFX node, and the task that prepares the metadata store.
    return CompiledPackage(output_path, os.path.getsize(output_path), len(pipeline_ir.nodes) + 1)


def _kfp_pipeline(pipeline_ir: pipeline_pb2.Pipeline, kubeflow: KubeflowConfig, description: str):
    """A KFP pipeline with one container task per TFX node, wired by the TFX DAG's edges."""
    parameters = _pipeline_parameters(pipeline_ir)
    node_irs = _with_fixed_pipeline_root(pipeline_ir)

    def build(*values):
        run_parameters = dict(zip(parameters, values))
        prepare = _prepare_store_component(kubeflow)()
        prepare.set_display_name(PREPARE_STORE_TASK)
        prepare.set_caching_options(False)
        _configure_task(prepare, kubeflow, trainer=False)
        tasks = {}
        for node in pipeline_ir.nodes:  # topological order
            node_id = node.pipeline_node.node_info.id
            node_parameters = sorted(_pipeline_parameters(pipeline_ir, node_id))
            component = _node_component(node_irs, node_id, node_parameters, kubeflow)
            task = component(**{name: run_parameters[name] for name in node_parameters})
            task.set_display_name(node_id)
            task.set_caching_options(False)  # TFX's cache in ML Metadata decides
            # The DAG's roots wait for the store to be prepared; the others wait for their upstream nodes.
            task.after(*([tasks[upstream] for upstream in node.pipeline_node.upstream_nodes] or [prepare]))
            _configure_task(task, kubeflow, trainer=node_id == TRAINER_NODE)
            tasks[node_id] = task

    build.__signature__ = inspect.Signature(
        [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=kind, default=default)
            for name, (kind, default) in parameters.items()
        ]
    )
    build.__name__ = pipeline_ir.pipeline_info.id
    return dsl.pipeline(name=pipeline_ir.pipeline_info.id, description=description)(build)


def _pipeline_parameters(pipeline_ir: pipeline_pb2.Pipeline, node_id: str | None = None) -> dict[str, tuple[type, object]]:
    """The IR's own runtime parameters (of one node, or all): name -> (KFP type, default).

    TFX's system parameters are not run parameters: the run id comes from KFP, and the pipeline
    root is fixed at compile time (its default).
    """
    scope = pipeline_ir
    if node_id is not None:
        scope = next(node for node in pipeline_ir.nodes if node.pipeline_node.node_info.id == node_id)
    found = kubeflow_node.runtime_parameters(scope)
    found.pop(tfx_constants.PIPELINE_ROOT_PARAMETER_NAME, None)
    return {
        name: (_PARAMETER_TYPES[parameter.type], getattr(parameter.default_value, parameter.default_value.WhichOneof("value")))
        for name, parameter in sorted(found.items())
    }


def _node_component(pipeline_ir: pipeline_pb2.Pipeline, node_id: str, parameters: list[str], kubeflow: KubeflowConfig):
    """A KFP container component that runs `node_id` with `vocdet.pipeline.kubeflow.node`."""
    node_ir = kubeflow_node.node_ir_json(pipeline_ir, node_id)
    declared = kfp_outputs.DECLARED.get(node_id, {})

    def node(*values):
        args = ["--node-ir", node_ir, "--run-id", dsl.PIPELINE_JOB_ID_PLACEHOLDER, *_store_args(kubeflow)]
        for name, value in zip(parameters, values):
            args += ["--parameter", name, value]
        if declared:
            # KFP's launcher contract (pipeline.kubeflow.outputs): the executor input, and each output's local path.
            args += ["--kfp-executor-input", dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER]
            for name, artifact in zip(declared, values[len(parameters):]):
                args += ["--kfp-output", name, artifact.path]
        if node_id == TRAINER_NODE:
            args += _trainer_tfjob_args(kubeflow)
        return dsl.ContainerSpec(image=kubeflow.image, command=kubeflow_node.NODE_COMMAND, args=args)

    node.__signature__ = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str) for name in parameters]
        + [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dsl.Output[getattr(dsl, kind)])
            for name, kind in declared.items()
        ]
    )
    node.__name__ = node_id
    return dsl.container_component(node)


def _store_args(kubeflow: KubeflowConfig) -> list[str]:
    """The metadata store's URL (no password) and wait, as every task and TFJob replica gets them."""
    return ["--metadata", kubeflow.metadata, "--metadata-wait-seconds", f"{kubeflow.metadata_wait_seconds:g}"]


def _prepare_store_component(kubeflow: KubeflowConfig):
    """The first task: waits for the metadata store, and creates or upgrades its schema once."""

    def prepare():
        args = ["--prepare-metadata-store", *_store_args(kubeflow)]
        return dsl.ContainerSpec(image=kubeflow.image, command=kubeflow_node.NODE_COMMAND, args=args)

    prepare.__name__ = PREPARE_STORE_TASK
    return dsl.container_component(prepare)


def _with_fixed_pipeline_root(pipeline_ir: pipeline_pb2.Pipeline) -> pipeline_pb2.Pipeline:
    """The IR with its pipeline-root parameter replaced by its value (compiled in, not a run parameter)."""
    from tfx.orchestration.portable import runtime_parameter_utils

    fixed = pipeline_pb2.Pipeline()
    fixed.CopyFrom(pipeline_ir)
    runtime_parameter_utils.substitute_runtime_parameter(fixed.runtime_spec, {})
    return fixed


def _trainer_tfjob_args(kubeflow: KubeflowConfig) -> list[str]:
    """With `trainer_workers` > 1, the Trainer task's arguments that make it submit a TFJob (vocdet.pipeline.kubeflow.tfjob).

    The replicas' pod settings are fixed here, from the same config that sets the single-pod task's.
    """
    if kubeflow.trainer_workers <= 1:
        return []
    from vocdet.pipeline.kubeflow import tfjob

    pod = tfjob.ReplicaPod(
        image=kubeflow.image,
        service_account=kubeflow.service_account,
        cpu_limit=kubeflow.trainer_cpu_limit,
        memory_limit_gb=kubeflow.trainer_memory_limit_gb,
        gpus=kubeflow.trainer_gpus,
        gpu_resource=kubeflow.gpu_resource,
        gpu_node_selector=dict(kubeflow.gpu_node_selector),
        gpu_tolerations=[dict(toleration) for toleration in kubeflow.gpu_tolerations],
        pvc_name=kubeflow.pvc_name,
        pvc_mount_path=kubeflow.pvc_mount_path,
        object_store_secret=kubeflow.object_store_secret,
        object_store_secret_key=kubeflow.object_store_secret_key if kubeflow.object_store_secret else "",
        credentials_dir=CREDENTIALS_DIR if kubeflow.object_store_secret else "",
        credentials_env=CREDENTIALS_ENV if kubeflow.object_store_secret else "",
        **_replica_store_access(kubeflow),
    )
    return ["--tfjob-workers", str(kubeflow.trainer_workers), "--tfjob-pod", pod.to_json()]


def _replica_store_access(kubeflow: KubeflowConfig) -> dict:
    """A TFJob replica's access to the metadata store: what `_configure_task` gives a task."""
    password = metadata_store.StoreUrl.parse(kubeflow.metadata).needs_password
    return {
        "metadata_secret": kubeflow.metadata_secret if password else "",
        "metadata_secret_key": kubeflow.metadata_secret_key if password else "",
        "metadata_password_env": metadata_store.PASSWORD_ENV if password else "",
        "labels": dict([METADATA_CLIENT_LABEL]),
    }


def _configure_task(task, kubeflow: KubeflowConfig, trainer: bool) -> None:
    """Resources (KFP's task methods) and Kubernetes settings (kfp-kubernetes) of one task.

    A Trainer that submits a TFJob (`trainer_workers` > 1) only watches it: an ordinary task's
    resources, no GPU; the TFJob's replicas get the Trainer's.
    """
    if trainer and kubeflow.trainer_workers <= 1:
        task.set_cpu_limit(f"{kubeflow.trainer_cpu_limit:g}").set_memory_limit(f"{kubeflow.trainer_memory_limit_gb:g}G")
        if kubeflow.trainer_gpus:
            task.set_accelerator_type(kubeflow.gpu_resource).set_accelerator_limit(kubeflow.trainer_gpus)
            for key, value in kubeflow.gpu_node_selector.items():
                kubernetes.add_node_selector(task, label_key=key, label_value=value)
            for toleration in kubeflow.gpu_tolerations:
                kubernetes.add_toleration(task, **toleration)
    else:
        task.set_cpu_limit(f"{kubeflow.cpu_limit:g}").set_memory_limit(f"{kubeflow.memory_limit_gb:g}G")
    kubernetes.mount_pvc(task, pvc_name=kubeflow.pvc_name, mount_path=kubeflow.pvc_mount_path)
    kubernetes.add_pod_label(task, *METADATA_CLIENT_LABEL)
    if metadata_store.StoreUrl.parse(kubeflow.metadata).needs_password:
        kubernetes.use_secret_as_env(
            task,
            secret_name=kubeflow.metadata_secret,
            secret_key_to_env={kubeflow.metadata_secret_key: metadata_store.PASSWORD_ENV},
        )
    if kubeflow.object_store_secret:
        kubernetes.use_secret_as_volume(task, secret_name=kubeflow.object_store_secret, mount_path=CREDENTIALS_DIR)
        task.set_env_variable(CREDENTIALS_ENV, f"{CREDENTIALS_DIR}/{kubeflow.object_store_secret_key}")
