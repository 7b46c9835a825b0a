"""Compiles the pipeline for Kubeflow Pipelines (KFP v2) with TFX's KubeflowV2DagRunner.

The definition is `pipeline.create_pipeline`, the one `vocdet run` executes;
this module only binds the cluster:

- the data root is a runtime parameter (`data_root`) of every run, so one
  compiled pipeline serves any dataset on the PVC;
- the pipeline root is the spec's `defaultPipelineRoot`, the serving folder
  and Beam's arguments come from `config.kubeflow`, nothing from this machine;
- the Trainer asks for GPUs through TFX's ResourceSpec (KFP's accelerator
  fields), every task gets CPU and memory limits;
- what TFX's V2 runner cannot express (node selector and tolerations for the
  Trainer's GPU nodes, the PVC, the object-store secret) is written by
  kfp-kubernetes' own functions into KFP's `platforms.kubernetes` section, the
  second YAML document that kfp's compiler writes for a plain kfp pipeline.
"""

from __future__ import annotations

import os

from google.protobuf import json_format
from kfp import kubernetes
from kfp.compiler import pipeline_spec_builder
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline

DATA_ROOT_PARAMETER = "data_root"
# Where the object-store key is mounted, and the variable Google's libraries read it from.
CREDENTIALS_DIR = "/var/secrets/object-store"
CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
RESOURCE_SPEC = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


class _KubernetesPlatformConfig:
    """What kfp-kubernetes reads and writes on a kfp PipelineTask: its `platform_config`.

    TFX's runner builds its own tasks, so kfp-kubernetes' functions are given this
    stand-in per executor and produce exactly what they would for a kfp task.
    """

    def __init__(self):
        self.platform_config: dict = {}


def compile_pipeline(config: PipelineConfig, output_path: str) -> str:
    """Writes the KFP v2 pipeline spec (YAML, two documents) for `config`; returns the path."""
    kubeflow = config.kubeflow
    if not kubeflow.image:
        raise ValueError("kubeflow.image is not set: pass --image (see docker/build.sh)")
    if not kubeflow.pipeline_root:
        raise ValueError("kubeflow.pipeline_root is not set: pass --pipeline-root gs://BUCKET/PATH")
    if not output_path.endswith((".yaml", ".yml")):
        raise ValueError(f"{output_path}: the compiled pipeline is YAML; name it .yaml")
    cluster_config = config.with_overrides(
        {
            "output_dir": kubeflow.pvc_mount_path,
            "push": {"serving_dir": kubeflow.serving_dir},
            "beam_pipeline_args": list(kubeflow.beam_pipeline_args),
        }
    )
    data_root = tfx.dsl.experimental.RuntimeParameter(name=DATA_ROOT_PARAMETER, ptype=str, default=kubeflow.data_root)
    pipeline = create_pipeline(cluster_config, data_root)
    _request_resources(pipeline, kubeflow)

    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            display_name=config.pipeline_name,
            default_image=kubeflow.image,
            # Schema 2.1: typed parameters with defaults, what KFP 2's backend and SDK read.
            use_pipeline_spec_2_1=True,
        ),
        output_dir=os.path.dirname(os.path.abspath(output_path)),
    )
    job = runner.run(pipeline, write_out=False)  # the spec as a dict; written below with the platform config
    pipeline_spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    pipeline_spec.default_pipeline_root = kubeflow.pipeline_root
    data_root_spec = pipeline_spec.root.input_definitions.parameters[DATA_ROOT_PARAMETER]
    data_root_spec.default_value.string_value = kubeflow.data_root
    data_root_spec.is_optional = True
    _edit_containers(pipeline_spec, lambda container: _complete_container(container, kubeflow))
    platform_spec = kubernetes_platform_spec(pipeline_spec, kubeflow)
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    pipeline_spec_builder.write_pipeline_spec_to_file(
        pipeline_spec,
        f"{config.pipeline_name}: VOC object detection (KerasCV RetinaNet) compiled by vocdet with TFX's KubeflowV2DagRunner",
        platform_spec,
        output_path,
    )
    return output_path


def _request_resources(pipeline, kubeflow) -> None:
    """CPU and memory limits for every task; GPUs for the Trainer (TFX's ResourceSpec)."""
    for component in pipeline.components:
        if not hasattr(component, "with_platform_config") or component.id.endswith("_resolver"):
            continue
        if component.id == "Trainer":
            spec = RESOURCE_SPEC(cpu_limit=kubeflow.trainer_cpu_limit, memory_limit=kubeflow.trainer_memory_limit_gb)
            if kubeflow.trainer_gpus:
                spec.accelerator.type = kubeflow.gpu_resource
                spec.accelerator.count = kubeflow.trainer_gpus
        else:
            spec = RESOURCE_SPEC(cpu_limit=kubeflow.cpu_limit, memory_limit=kubeflow.memory_limit_gb)
        component.with_platform_config(spec)


def kubernetes_platform_spec(pipeline_spec: pipeline_spec_pb2.PipelineSpec, kubeflow) -> pipeline_spec_pb2.PlatformSpec:
    """kfp-kubernetes' configuration for every container executor of the compiled spec."""
    platform_spec = pipeline_spec_pb2.PlatformSpec()
    for label, executor in pipeline_spec.deployment_spec["executors"].items():
        if "container" not in executor:
            continue  # resolvers and importers run in KFP's own driver
        task = _KubernetesPlatformConfig()
        kubernetes.mount_pvc(task, pvc_name=kubeflow.pvc_name, mount_path=kubeflow.pvc_mount_path)
        if kubeflow.object_store_secret:
            kubernetes.use_secret_as_volume(task, secret_name=kubeflow.object_store_secret, mount_path=CREDENTIALS_DIR)
        if label == trainer_executor_label(pipeline_spec) and kubeflow.trainer_gpus:
            for key, value in kubeflow.gpu_node_selector.items():
                kubernetes.add_node_selector(task, label_key=key, label_value=value)
            for toleration in kubeflow.gpu_tolerations:
                kubernetes.add_toleration(task, **toleration)
        pipeline_spec_builder.merge_platform_specs(
            platform_spec, pipeline_spec_builder.platform_config_to_platform_spec(task.platform_config, label)
        )
    return platform_spec


def trainer_executor_label(pipeline_spec: pipeline_spec_pb2.PipelineSpec) -> str:
    component = pipeline_spec.root.dag.tasks["Trainer"].component_ref.name
    return pipeline_spec.components[component].executor_label


def deployment_config(pipeline_spec: pipeline_spec_pb2.PipelineSpec) -> pipeline_spec_pb2.PipelineDeploymentConfig:
    """The spec's executors as KFP's typed message (PipelineSpec stores them as a Struct)."""
    return json_format.ParseDict(
        json_format.MessageToDict(pipeline_spec.deployment_spec), pipeline_spec_pb2.PipelineDeploymentConfig()
    )


def _complete_container(container, kubeflow) -> None:
    """What TFX's runner leaves out of a container: the credentials variable, and
    resources where it ignores the component's ResourceSpec (FileBasedExampleGen)."""
    if kubeflow.object_store_secret:
        container.env.add(name=CREDENTIALS_ENV, value=f"{CREDENTIALS_DIR}/{kubeflow.object_store_secret_key}")
    if not container.HasField("resources"):
        container.resources.CopyFrom(RESOURCE_SPEC(cpu_limit=kubeflow.cpu_limit, memory_limit=kubeflow.memory_limit_gb))


def _edit_containers(pipeline_spec: pipeline_spec_pb2.PipelineSpec, edit) -> None:
    """Applies `edit` to every container executor of the spec."""
    deployment = deployment_config(pipeline_spec)
    for executor in deployment.executors.values():
        if executor.HasField("container"):
            edit(executor.container)
    pipeline_spec.deployment_spec.Clear()
    pipeline_spec.deployment_spec.update(json_format.MessageToDict(deployment))
