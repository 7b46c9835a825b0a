"""`vocdet compile`, `submit` and `schedule`: the KFP v2 spec, read with KFP's own protos, and
the API calls, made by the kfp SDK against a local test double of the v2beta1 REST API."""

import os
import re

import pytest
import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline import cli, config as config_lib
from tests.kfp_api_double import KfpApiDouble

IMAGE = "registry.example.com/vocdet:1.2.3"
PIPELINE_ROOT = "gs://vocdet-test-bucket/pipeline_root"
TFX_ENTRYPOINT = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
TOKEN = "test-token-7f3a9c"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """(path, PipelineSpec, {executor label: KubernetesExecutorConfig}, YAML text) of one compile."""
    path = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    argv = ["compile", "--image", IMAGE, "--pipeline-root", PIPELINE_ROOT, "--out", str(path), "--warm-start",
            "--epochs", "7"]
    assert cli.main(argv) == 0
    text = path.read_text()
    spec_doc, platform_doc = yaml.safe_load_all(text)
    spec = json_format.ParseDict(spec_doc, pipeline_spec_pb2.PipelineSpec())
    platform = json_format.ParseDict(platform_doc, pipeline_spec_pb2.PlatformSpec())
    kubernetes = {
        label: json_format.ParseDict(
            json_format.MessageToDict(body), kubernetes_executor_config_pb2.KubernetesExecutorConfig()
        )
        for label, body in platform.platforms["kubernetes"].deployment_spec.executors.items()
    }
    return path, spec, kubernetes, text


def _containers(spec):
    deployment = json_format.ParseDict(
        json_format.MessageToDict(spec.deployment_spec), pipeline_spec_pb2.PipelineDeploymentConfig()
    )
    return {label: e.container for label, e in deployment.executors.items() if e.HasField("container")}


def _executor_label(spec, task):
    return spec.components[spec.root.dag.tasks[task].component_ref.name].executor_label


def test_every_component_of_the_local_pipeline_is_a_task(compiled):
    _, spec, _, _ = compiled
    tasks = set(spec.root.dag.tasks)
    for component in ("FileBasedExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer", "CocoEvaluator",
                      "ServingCheck", "Pusher"):
        assert component in tasks
    assert spec.pipeline_info.name == config_lib.voc_guide().pipeline_name
    assert spec.schema_version == "2.1.0"


def test_every_task_runs_the_image_with_tfx_entrypoint_and_resource_limits(compiled):
    _, spec, _, _ = compiled
    kubeflow = config_lib.KubeflowConfig()
    containers = _containers(spec)
    assert len(containers) == 8
    trainer = _executor_label(spec, "Trainer")
    for label, container in containers.items():
        assert container.image == IMAGE, label
        assert list(container.command) == TFX_ENTRYPOINT, label
        assert "--direct_running_mode=multi_processing" in container.args, label
        assert {env.name: env.value for env in container.env}["GOOGLE_APPLICATION_CREDENTIALS"].startswith(
            "/var/secrets/object-store/"
        )
        if label == trainer:
            assert container.resources.cpu_limit == kubeflow.trainer_cpu_limit
            assert container.resources.memory_limit == kubeflow.trainer_memory_limit_gb
            assert container.resources.accelerator.type == "nvidia.com/gpu"
            assert container.resources.accelerator.count == kubeflow.trainer_gpus
        else:
            assert container.resources.cpu_limit == kubeflow.cpu_limit, label
            assert not container.resources.accelerator.type, label


def test_kubernetes_platform_config_mounts_pvc_and_secret_and_pins_the_trainer_to_gpu_nodes(compiled):
    _, spec, kubernetes, _ = compiled
    kubeflow = config_lib.KubeflowConfig()
    assert set(kubernetes) == set(_containers(spec))
    trainer = _executor_label(spec, "Trainer")
    for label, executor in kubernetes.items():
        assert [(m.constant, m.mount_path) for m in executor.pvc_mount] == [(kubeflow.pvc_name, kubeflow.pvc_mount_path)]
        assert [s.secret_name for s in executor.secret_as_volume] == [kubeflow.object_store_secret]
        if label == trainer:
            assert dict(executor.node_selector.labels) == kubeflow.gpu_node_selector
            assert [(t.key, t.operator, t.effect) for t in executor.tolerations] == [
                ("nvidia.com/gpu", "Exists", "NoSchedule")
            ]
        else:
            assert not executor.node_selector.labels and not executor.tolerations, label


def test_cluster_locations_are_parameters_or_config_not_local_paths(compiled):
    _, spec, _, text = compiled
    data_root = spec.root.input_definitions.parameters["data_root"]
    assert data_root.parameter_type == pipeline_spec_pb2.ParameterType.STRING
    assert data_root.default_value.string_value == config_lib.KubeflowConfig().data_root
    assert spec.default_pipeline_root == PIPELINE_ROOT
    # ExampleGen reads the runtime parameter, not a path fixed at compile time.
    example_gen = spec.root.dag.tasks["FileBasedExampleGen"]
    assert example_gen.inputs.parameters["input_base"].component_input_parameter == "data_root"
    for local in (os.getcwd(), os.path.expanduser("~"), "/tmp/", "outputs/"):
        assert local not in text, local
    # The training settings travel in the config the Trainer reads.
    trainer_config = spec.root.dag.tasks["Trainer"].inputs.parameters["custom_config"].runtime_value.constant
    assert '"epochs": 7' in trainer_config.string_value and '"warm_start": true' in trainer_config.string_value
    assert '"serving_dir": "/mnt/vocdet/serving"' in trainer_config.string_value


def test_warm_start_feeds_the_latest_blessed_model_to_the_trainer(compiled):
    _, spec, _, _ = compiled
    base_model = spec.root.dag.tasks["Trainer"].inputs.artifacts["base_model"].task_output_artifact
    assert base_model.producer_task == "latest_blessed_model_resolver-model-resolver"


def test_compile_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["compile", "--pipeline-root", PIPELINE_ROOT, "--out", str(tmp_path / "p.yaml")]) == 2
    assert cli.main(["compile", "--image", IMAGE, "--pipeline-root", "/data/root", "--out", str(tmp_path / "p.yaml")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "--image" in errors[0] and "gs://" in errors[1]


@pytest.fixture
def kfp_api(monkeypatch):
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    with KfpApiDouble() as api:
        yield api


def test_submit_uploads_the_pipeline_and_starts_a_run(compiled, kfp_api, capsys):
    path, _, _, text = compiled
    argv = ["submit", "--host", kfp_api.url, "--package", str(path), "--experiment", "weekly",
            "--data-root", "/mnt/vocdet/data/voc2012"]
    assert cli.main(argv) == 0
    assert "run run-1 started in experiment weekly" in capsys.readouterr().out

    upload = kfp_api.calls("POST", "/apis/v2beta1/pipelines/upload")
    version = kfp_api.calls("POST", "/apis/v2beta1/pipelines/upload_version")
    assert len(upload) == 1 and upload[0].query["name"] == ["vocdet"]
    assert len(version) == 1 and version[0].query["pipelineid"] == ["pipeline-1"]
    assert b"defaultPipelineRoot: " + PIPELINE_ROOT.encode() in version[0].body  # the compiled spec itself
    (run,) = kfp_api.calls("POST", "/apis/v2beta1/runs")
    body = run.json()
    assert body["pipeline_version_reference"] == {"pipeline_id": "pipeline-1", "pipeline_version_id": "version-1"}
    assert body["runtime_config"]["parameters"] == {"data_root": "/mnt/vocdet/data/voc2012"}
    assert body["experiment_id"] == "experiment-1"
    assert body["service_account"] == "vocdet-pipeline-runner"


def test_the_token_goes_only_into_the_authorization_header(compiled, kfp_api, capsys):
    path, _, _, text = compiled
    assert cli.main(["submit", "--host", kfp_api.url, "--package", str(path)]) == 0
    output = capsys.readouterr()
    assert kfp_api.requests
    for request in kfp_api.requests:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert TOKEN.encode() not in request.body
    assert TOKEN not in output.out + output.err and TOKEN not in text


def test_token_from_a_file(compiled, kfp_api, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KFP_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    path = str(compiled[0])
    assert cli.main(["submit", "--host", kfp_api.url, "--package", path, "--token-file", str(token_file)]) == 0
    assert {r.headers["authorization"] for r in kfp_api.requests} == {"Bearer file-token"}
    missing = tmp_path / "missing"
    assert cli.main(["submit", "--host", kfp_api.url, "--package", path, "--token-file", str(missing)]) == 2
    assert f"{missing}: cannot read the KFP token" in capsys.readouterr().err


def test_schedule_creates_lists_and_disables_a_recurring_run(compiled, kfp_api, capsys):
    path = str(compiled[0])
    argv = ["schedule", "--host", kfp_api.url, "--package", path, "--cron", "0 3 * * 0", "--max-concurrency", "1",
            "--no-catchup"]
    assert cli.main(argv) == 0
    (created,) = kfp_api.calls("POST", "/apis/v2beta1/recurringruns")
    body = created.json()
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * 0"}}  # KFP's cron has a seconds field
    assert body["max_concurrency"] == 1 and body["no_catchup"] is True and body["mode"] == "ENABLE"
    assert body["pipeline_version_reference"]["pipeline_id"] == "pipeline-1"

    assert cli.main(["schedule", "--host", kfp_api.url, "--list"]) == 0
    assert re.search(r"recurring-1\s+ENABLED\s+0 0 3 \* \* 0\s+vocdet-retraining", capsys.readouterr().out)
    assert cli.main(["schedule", "--host", kfp_api.url, "--disable", "recurring-1"]) == 0
    assert kfp_api.calls("POST", "/apis/v2beta1/recurringruns/recurring-1:disable")
    assert cli.main(["schedule", "--host", kfp_api.url, "--list"]) == 0
    assert "DISABLED" in capsys.readouterr().out


def test_schedule_rejects_a_bad_cron_in_one_line(compiled, kfp_api, capsys):
    argv = ["schedule", "--host", kfp_api.url, "--package", str(compiled[0]), "--cron", "every sunday"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "cron expression 'every sunday'" in err and err.count("\n") == 1
    assert not kfp_api.calls("POST", "/apis/v2beta1/recurringruns")
