"""`vocdet compile`: a KFP-SDK-compiled package of container tasks, read back with KFP's own protos;
`submit` and `schedule` through the kfp SDK against a local test double of the v2beta1 REST API.
The package is run for real in `test_kubeflow_package_e2e.py`."""

import json
import os
import re

import pytest
import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.proto.orchestration import pipeline_pb2 as tfx_pipeline_pb2

from vocdet.pipeline import cli
from vocdet.pipeline import config as config_lib
from vocdet.pipeline.kubeflow import compiler
from vocdet.pipeline.kubeflow import node as kubeflow_node
from vocdet.pipeline.metadata import store as metadata_store
from tests.kfp_api_double import KfpApiDouble

IMAGE = "registry.example.com/vocdet:1.2.3"
TOKEN = "test-token-7f3a9c"
NODES = ("FileBasedExampleGen", "StatisticsGen", "SchemaGen", "Transform", "latest_blessed_model_resolver", "Trainer",
         "baseline_model_resolver", "CocoEvaluator", "ServingCheck", "Pusher")


def compile_package(path, *flags):
    """(PipelineSpec, {executor label: KubernetesExecutorConfig}, YAML text, compile's stdout line) of one compile."""
    assert cli.main(["compile", "--image", IMAGE, "--out", str(path), *flags]) == 0
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
    return spec, kubernetes, text


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The guide's preset with warm start, 7 epochs and an object-store secret, compiled once."""
    folder = tmp_path_factory.mktemp("kfp")
    overrides = folder / "cluster.yaml"
    overrides.write_text(yaml.safe_dump({"kubeflow": {"object_store_secret": "vocdet-object-store"}}))
    path = folder / "pipeline.yaml"
    return (path, *compile_package(path, "--warm-start", "--epochs", "7", "--config", str(overrides)))


def _executors(spec):
    return json_format.ParseDict(
        json_format.MessageToDict(spec.deployment_spec), pipeline_spec_pb2.PipelineDeploymentConfig()
    ).executors


def _task_by_node(spec):
    """TFX node id -> (task name, task spec); the display name is the node id. Without the store's preparation."""
    return {
        task.task_info.name: (name, task) for name, task in spec.root.dag.tasks.items()
        if task.task_info.name != compiler.PREPARE_STORE_TASK
    }


def _executor_label(spec, task_name):
    return spec.components[spec.root.dag.tasks[task_name].component_ref.name].executor_label


def _node_ir(container):
    args = list(container.args)
    return json_format.Parse(args[args.index("--node-ir") + 1], tfx_pipeline_pb2.Pipeline())


def test_every_executor_is_a_container_and_nothing_needs_a_kfp_driver_feature(compiled):
    """KFP 2.x's backend runs no resolver executors, and OSS KFP never reads lifecycle hooks."""
    _, spec, _, text = compiled
    executors = _executors(spec)
    assert executors and all(executor.WhichOneof("spec") == "container" for executor in executors.values())
    assert "lifecycle" not in text and "preCacheCheck" not in text
    for name, task in spec.root.dag.tasks.items():
        assert not task.caching_options.enable_cache, name  # TFX's cache decides, in ML Metadata


def test_one_task_per_tfx_node_wired_by_the_tfx_dag_after_the_store_is_prepared(compiled):
    _, spec, _, _ = compiled
    by_node = _task_by_node(spec)
    assert set(by_node) == set(NODES)
    (prepare,) = [name for name, task in spec.root.dag.tasks.items() if task.task_info.name == compiler.PREPARE_STORE_TASK]
    assert not spec.root.dag.tasks[prepare].dependent_tasks
    executors = _executors(spec)
    roots = set()
    for node_id, (task_name, task) in by_node.items():
        node = _node_ir(executors[_executor_label(spec, task_name)].container).nodes[0].pipeline_node
        assert node.node_info.id == node_id
        upstream = {by_node[upstream][0] for upstream in node.upstream_nodes}
        assert (upstream or {prepare}) == set(task.dependent_tasks), node_id
        roots |= {node_id} if not upstream else set()
    assert roots == {"FileBasedExampleGen", "latest_blessed_model_resolver"}  # with warm start: both start at once
    prepare_args = list(executors[_executor_label(spec, prepare)].container.args)
    assert prepare_args[:1] == ["--prepare-metadata-store"] and "--node-ir" not in prepare_args
    assert spec.pipeline_info.name == config_lib.voc_guide().pipeline_name


def test_every_task_runs_the_node_entrypoint_in_the_image_against_vocdets_store(compiled):
    _, spec, _, _ = compiled
    kubeflow_config = config_lib.KubeflowConfig()
    by_node = _task_by_node(spec)
    executors = _executors(spec)
    for node_id, (task_name, _) in by_node.items():
        container = executors[_executor_label(spec, task_name)].container
        assert container.image == IMAGE, node_id
        assert list(container.command) == kubeflow_node.NODE_COMMAND
        args = list(container.args)
        assert args[args.index("--run-id") + 1] == "{{$.pipeline_job_uuid}}"
        assert args[args.index("--metadata") + 1] == kubeflow_config.metadata
        assert args[args.index("--metadata-wait-seconds") + 1] == f"{kubeflow_config.metadata_wait_seconds:g}"
        assert {env.name: env.value for env in container.env}["GOOGLE_APPLICATION_CREDENTIALS"] == (
            "/var/secrets/object-store/key.json"
        )
        if node_id == "Trainer":
            assert container.resources.cpu_limit == kubeflow_config.trainer_cpu_limit
            assert container.resources.memory_limit == kubeflow_config.trainer_memory_limit_gb
            assert container.resources.accelerator.type == "nvidia.com/gpu"
            assert container.resources.accelerator.count == kubeflow_config.trainer_gpus
        else:
            assert container.resources.cpu_limit == kubeflow_config.cpu_limit, node_id
            assert not container.resources.accelerator.type, node_id


def test_kfp_kubernetes_mounts_pvc_and_secret_and_pins_the_trainer_to_gpu_nodes(compiled):
    _, spec, kubernetes, _ = compiled
    kubeflow_config = config_lib.KubeflowConfig()
    assert set(kubernetes) == set(_executors(spec))
    trainer = _executor_label(spec, _task_by_node(spec)["Trainer"][0])
    for label, executor in kubernetes.items():
        assert [(m.constant, m.mount_path) for m in executor.pvc_mount] == [
            (kubeflow_config.pvc_name, kubeflow_config.pvc_mount_path)
        ]
        assert [s.secret_name for s in executor.secret_as_volume] == ["vocdet-object-store"]
        # The store's password from its secret, and the label its NetworkPolicy admits (k8s/metadata-store.yaml).
        assert [(s.secret_name, [(k.secret_key, k.env_var) for k in s.key_to_env]) for s in executor.secret_as_env] == [
            (kubeflow_config.metadata_secret, [(kubeflow_config.metadata_secret_key, metadata_store.PASSWORD_ENV)])
        ]
        assert dict(executor.pod_metadata.labels) == dict([compiler.METADATA_CLIENT_LABEL]), label
        if label == trainer:
            assert dict(executor.node_selector.labels) == kubeflow_config.gpu_node_selector
            assert [(t.key, t.operator, t.effect) for t in executor.tolerations] == [
                ("nvidia.com/gpu", "Exists", "NoSchedule")
            ]
        else:
            assert not executor.node_selector.labels and not executor.tolerations, label


def test_data_root_is_a_run_parameter_and_settings_travel_in_the_node_ir(compiled):
    _, spec, _, text = compiled
    data_root = spec.root.input_definitions.parameters["data_root"]
    assert data_root.parameter_type == pipeline_spec_pb2.ParameterType.STRING
    assert data_root.default_value.string_value == config_lib.KubeflowConfig().data_root
    by_node = _task_by_node(spec)
    task_name, example_gen = by_node["FileBasedExampleGen"]
    assert example_gen.inputs.parameters["data_root"].component_input_parameter == "data_root"
    args = list(_executors(spec)[_executor_label(spec, task_name)].container.args)
    assert args[args.index("--parameter") + 1 : args.index("--parameter") + 3] == [
        "data_root", "{{$.inputs.parameters['data_root']}}"
    ]
    for local in (os.getcwd(), os.path.expanduser("~"), "/tmp/", "outputs/"):
        assert local not in text, local
    trainer_ir = _node_ir(_executors(spec)[_executor_label(spec, by_node["Trainer"][0])].container)
    assert trainer_ir.runtime_spec.pipeline_root.field_value.string_value == "/mnt/vocdet/pipeline_root"
    custom_config = json.loads(
        trainer_ir.nodes[0].pipeline_node.parameters.parameters["custom_config"].field_value.string_value
    )
    assert custom_config["train"]["epochs"] == 7 and custom_config["train"]["warm_start"] is True
    assert set(custom_config) == {"model", "train", "class_names", "tuning_metric", "tuning_splits"}  # the Trainer's own slice only
    pusher_ir = _node_ir(_executors(spec)[_executor_label(spec, by_node["Pusher"][0])].container)
    destination = pusher_ir.nodes[0].pipeline_node.parameters.parameters["push_destination"].field_value.string_value
    assert "/mnt/vocdet/serving/vocdet" in destination


def test_the_package_is_small_and_compile_says_how_small(tmp_path, capsys):
    """Each task carries its own node's IR, so the file grows with the IR once (Argo's etcd limit: ~1.5 MB)."""
    overrides = tmp_path / "spans.yaml"
    overrides.write_text(yaml.safe_dump({"data": {"train_on_last_spans": 2}}))
    path = tmp_path / "spans.yaml.out.yaml"
    spec, _, text = compile_package(path, "--spans", "--warm-start", "--config", str(overrides))
    assert "training_spans_resolver" in {task.task_info.name for task in spec.root.dag.tasks.values()}
    size = os.path.getsize(path)
    assert size < 500 * 1024
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.search(rf"\({len(spec.root.dag.tasks)} tasks, {size / 1024:.0f} KiB;", line), line


def test_compile_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["compile", "--out", str(tmp_path / "p.yaml")]) == 2
    assert cli.main(["compile", "--image", IMAGE, "--pipeline-root", "s3://bucket/root", "--out", str(tmp_path / "p.yaml")]) == 2
    assert cli.main(["compile", "--image", IMAGE, "--pipeline-root", "/data/root", "--out", str(tmp_path / "p.yaml")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and "--image" in errors[0] and "gs://" in errors[1] and "PVC" in errors[2]


@pytest.fixture
def kfp_api(monkeypatch):
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    with KfpApiDouble() as api:
        yield api


def test_submit_uploads_the_pipeline_and_starts_a_run(compiled, kfp_api, capsys):
    path, _, _, text = compiled
    argv = ["submit", "--host", kfp_api.url, "--insecure", "--package", str(path), "--experiment", "weekly",
            "--data-root", "/mnt/vocdet/data/voc2012"]
    assert cli.main(argv) == 0
    assert "run run-1 started in experiment weekly" in capsys.readouterr().out

    upload = kfp_api.calls("POST", "/apis/v2beta1/pipelines/upload")
    version = kfp_api.calls("POST", "/apis/v2beta1/pipelines/upload_version")
    assert len(upload) == 1 and upload[0].query["name"] == ["vocdet"]
    assert len(version) == 1 and version[0].query["pipelineid"] == ["pipeline-1"]
    assert b"vocdet.pipeline.kubeflow.node" in version[0].body  # the compiled package itself
    (run,) = kfp_api.calls("POST", "/apis/v2beta1/runs")
    body = run.json()
    assert body["pipeline_version_reference"] == {"pipeline_id": "pipeline-1", "pipeline_version_id": "version-1"}
    assert body["runtime_config"]["parameters"] == {"data_root": "/mnt/vocdet/data/voc2012"}
    assert body["experiment_id"] == "experiment-1"
    assert body["service_account"] == "vocdet-pipeline-runner"


def test_the_token_goes_only_into_the_authorization_header(compiled, kfp_api, capsys):
    path, _, _, text = compiled
    assert cli.main(["submit", "--host", kfp_api.url, "--insecure", "--package", str(path)]) == 0
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
    assert cli.main(["submit", "--host", kfp_api.url, "--insecure", "--package", path, "--token-file", str(token_file)]) == 0
    assert {r.headers["authorization"] for r in kfp_api.requests} == {"Bearer file-token"}
    missing = tmp_path / "missing"
    assert cli.main(["submit", "--host", kfp_api.url, "--insecure", "--package", path, "--token-file", str(missing)]) == 2
    assert f"{missing}: cannot read the KFP token" in capsys.readouterr().err


def test_schedule_creates_lists_and_disables_a_recurring_run(compiled, kfp_api, capsys):
    path = str(compiled[0])
    argv = ["schedule", "--host", kfp_api.url, "--insecure", "--package", path, "--cron", "0 3 * * 0", "--max-concurrency", "1",
            "--no-catchup"]
    assert cli.main(argv) == 0
    (created,) = kfp_api.calls("POST", "/apis/v2beta1/recurringruns")
    body = created.json()
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * 0"}}  # KFP's cron has a seconds field
    assert body["max_concurrency"] == 1 and body["no_catchup"] is True and body["mode"] == "ENABLE"
    assert body["pipeline_version_reference"]["pipeline_id"] == "pipeline-1"

    assert cli.main(["schedule", "--host", kfp_api.url, "--insecure", "--list"]) == 0
    assert re.search(r"recurring-1\s+ENABLED\s+0 0 3 \* \* 0\s+vocdet-retraining", capsys.readouterr().out)
    assert cli.main(["schedule", "--host", kfp_api.url, "--insecure", "--disable", "recurring-1"]) == 0
    assert kfp_api.calls("POST", "/apis/v2beta1/recurringruns/recurring-1:disable")
    assert cli.main(["schedule", "--host", kfp_api.url, "--insecure", "--list"]) == 0
    assert "DISABLED" in capsys.readouterr().out


def test_schedule_rejects_a_bad_cron_in_one_line(compiled, kfp_api, capsys):
    argv = ["schedule", "--host", kfp_api.url, "--insecure", "--package", str(compiled[0]), "--cron", "every sunday"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "cron expression 'every sunday'" in err and err.count("\n") == 1
    assert not kfp_api.calls("POST", "/apis/v2beta1/recurringruns")


def test_compile_warns_about_a_tag_only_image_and_refuses_latest(tmp_path, capsys):
    out = str(tmp_path / "p.yaml")
    assert cli.main(["compile", "--image", IMAGE, "--out", out]) == 0
    assert f"warning: image {IMAGE} is pinned by tag only" in capsys.readouterr().err
    assert cli.main(["compile", "--image", f"{IMAGE}@sha256:{'0' * 64}", "--out", out]) == 0
    assert "warning" not in capsys.readouterr().err
    assert cli.main(["compile", "--image", "registry.example.com/vocdet:latest", "--out", out]) == 2
    assert "the tag latest names whatever was pushed last" in capsys.readouterr().err


def test_the_default_package_never_names_kfps_removed_store_and_grpc_is_still_possible(compiled, tmp_path):
    """kubeflow/pipelines#13986 removed metadata-grpc-service: the default is vocdet's own MySQL store;
    `kubeflow.metadata: grpc://...` names an ML Metadata server instead, with no password to carry."""
    _, _, _, text = compiled
    assert "metadata-grpc-service" not in text and config_lib.KubeflowConfig().metadata in text
    overrides = tmp_path / "grpc.yaml"
    overrides.write_text(yaml.safe_dump({"kubeflow": {"metadata": "grpc://metadata-grpc-service.kubeflow:8080"}}))
    spec, kubernetes, grpc_text = compile_package(tmp_path / "grpc.yaml.out.yaml", "--config", str(overrides))
    for name, (task_name, _) in _task_by_node(spec).items():
        args = list(_executors(spec)[_executor_label(spec, task_name)].container.args)
        assert args[args.index("--metadata") + 1] == "grpc://metadata-grpc-service.kubeflow:8080", name
    assert "mysql://" not in grpc_text
    assert all(not executor.secret_as_env for executor in kubernetes.values())


def test_no_password_in_the_package(tmp_path, monkeypatch, capsys):
    """The password reaches the tasks from the secret at run time; a URL holding one is refused in one line."""
    password = "s3cret-Pa55word-9d1e"
    monkeypatch.setenv(metadata_store.PASSWORD_ENV, password)
    _, _, text = compile_package(tmp_path / "pipeline.yaml")
    assert password not in text and metadata_store.PASSWORD_ENV in text
    capsys.readouterr()
    overrides = tmp_path / "leaky.yaml"
    overrides.write_text(yaml.safe_dump({"kubeflow": {"metadata": f"mysql://vocdet:{password}@db:3306/mlmd"}}))
    assert cli.main(["compile", "--image", IMAGE, "--out", str(tmp_path / "leaky.yaml.out.yaml"), "--config", str(overrides)]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert "kubeflow.metadata" in line and "password" in line and password not in line
    assert not (tmp_path / "leaky.yaml.out.yaml").exists()


def test_the_result_tasks_declare_kfp_output_artefacts_and_pass_the_launcher_contract(compiled):
    """CocoEvaluator, ExampleGen, Trainer and Pusher declare system.* outputs (read with KFP's PipelineSpec proto), and
    get the executor input ({{$}}, whose outputs.outputFile the launcher reads) and each output's local path."""
    _, spec, _, _ = compiled
    by_node = _task_by_node(spec)
    expected = {
        "CocoEvaluator": {"metrics": "system.Metrics", "report": "system.Markdown", "report_html": "system.HTML"},
        "FileBasedExampleGen": {"ingest_report": "system.Markdown"},
        "Pusher": {"push": "system.Markdown"},
        "Trainer": {"training": "system.Metrics", "starting_weights": "system.Markdown", "curves": "system.HTML"},
    }
    for node_id, (task_name, task) in by_node.items():
        component = spec.components[task.component_ref.name]
        declared = {name: a.artifact_type.schema_title for name, a in component.output_definitions.artifacts.items()}
        assert declared == expected.get(node_id, {}), node_id
        args = list(_executors(spec)[component.executor_label].container.args)
        if declared:
            assert args[args.index("--kfp-executor-input") + 1] == "{{$}}"
            outputs = {args[i + 1]: args[i + 2] for i, arg in enumerate(args) if arg == "--kfp-output"}
            assert outputs == {name: f"{{{{$.outputs.artifacts['{name}'].path}}}}" for name in declared}
        else:
            assert "--kfp-executor-input" not in args and "--kfp-output" not in args, node_id
    assert "{{$.outputs.output_file}}" not in json_format.MessageToJson(spec)  # the cluster's launcher never fills it
