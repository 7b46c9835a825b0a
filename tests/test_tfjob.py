"""The Trainer on several nodes: the TFJob its KFP task submits (kubeflow.trainer_workers > 1).

- the manifest, built from a compiled package's Trainer task, validated against the Training
  Operator's TFJob CRD schema;
- submit, status, the chief's log, failure with the job's reason and delete on SIGTERM, against a
  local test double of the Kubernetes API;
- (e2e) a compiled package run here whose Trainer task submits to the double, which plays the
  operator: it starts each replica of the job as a local process with the TF_CONFIG the operator
  sets. Both train; ML Metadata holds one Trainer execution, and its model is the chief's.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import jsonschema
import pytest
import yaml
from ml_metadata.metadata_store import metadata_store
from tfx.orchestration import metadata

from tests.k8s_api_double import KubernetesApiDouble, condition
from tests.ports import free_ports
from vocdet.components import compat
from vocdet.pipeline import cli
from vocdet.pipeline.kubeflow import node as kubeflow_node
from vocdet.pipeline.kubeflow import rehearsal as package_runner
from vocdet.pipeline.kubeflow import tfjob

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(REPO, "tests", "schemas", "tfjob-kubeflow.org-v1.yaml")
IMAGE = "registry.example.com/vocdet:test"
TINY = {
    "model": {"eval_confidence_threshold": 0.0},
    "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size_per_replica": 2},
    "eval": {"blessing_threshold": 0.0},
}
RUN_ID = "4b7e2f0c-0000-4000-8000-00000000abcd"


def _compile(folder, overrides: dict) -> str:
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(overrides))
    path = folder / "pipeline.yaml"
    assert cli.main(["compile", "--preset", "demo", "--config", str(config), "--image", IMAGE, "--out", str(path)]) == 0
    return str(path)


def _task_command(package: package_runner.Package, node: str, run_id: str = RUN_ID, data_root: str | None = None):
    """The task's command and arguments as KFP's driver fills them in (`node`: the DAG's task name)."""
    task = package.spec.root.dag.tasks[node]
    container = package.executors().executors[package.executor_label(node)].container
    parameters = package.parameter_defaults()
    if data_root:
        parameters["data_root"] = data_root
    values = package_runner._task_inputs(task, parameters)
    context = {"pipeline_job_uuid": run_id, "pipeline_job_name": f"vocdet-{run_id[:8]}"}
    launcher = package_runner._launcher_outputs(package, node, "/tmp/kfp-launcher-outputs")  # the Trainer's, as KFP gives them
    return [package_runner._substitute(part, values, context, node, launcher) for part in [*container.command, *container.args]]


@pytest.fixture(scope="module")
def two_worker_package(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tfjob")
    overrides = {**TINY, "kubeflow": {"trainer_workers": 2, "trainer_gpus": 2, "object_store_secret": "store-key"}}
    return package_runner.Package.read(_compile(folder, overrides))


@pytest.fixture(scope="module")
def schema():
    with open(SCHEMA) as handle:
        return yaml.safe_load(handle)


def _tfjob_from_task(command: list[str], namespace: str = "vocdet"):
    """The TFJob the task's entrypoint would submit, built the way `kubeflow_node.submit_tfjob` builds it."""
    argv = command[3:]
    args = kubeflow_node._parser().parse_args(argv)
    name = tfjob.job_name("Trainer", args.run_id)
    return tfjob.build_tfjob(
        name, namespace, workers=args.tfjob_workers, pod=tfjob.ReplicaPod.from_json(args.tfjob_pod),
        command=kubeflow_node.NODE_COMMAND, args=[*kubeflow_node.replica_args(argv), "--tfjob-replica-of", name],
        run_id=args.run_id,
    )  # fmt: skip


def test_the_trainer_task_submits_a_tfjob_that_the_crd_schema_accepts(two_worker_package, schema):
    command = _task_command(two_worker_package, "trainer")
    assert command[:3] == kubeflow_node.NODE_COMMAND
    assert command[command.index("--tfjob-workers") + 1] == "2"
    manifest = tfjob.manifest(_tfjob_from_task(command))
    jsonschema.validate(manifest, schema)  # the operator's CRD schema (v1.7.0)

    assert (manifest["apiVersion"], manifest["kind"]) == ("kubeflow.org/v1", "TFJob")
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", manifest["metadata"]["name"])
    assert len(manifest["metadata"]["name"]) + len("-worker-99") <= 63
    replicas = manifest["spec"]["tfReplicaSpecs"]
    assert {kind: spec["replicas"] for kind, spec in replicas.items()} == {"Chief": 1, "Worker": 1}
    for spec in replicas.values():
        assert spec["restartPolicy"] == "Never"
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "tensorflow"  # the container the operator gives TF_CONFIG
        assert container["image"] == IMAGE
        # The same entrypoint and inputs as the task, told it is a replica, not told to submit.
        assert container["command"] == kubeflow_node.NODE_COMMAND
        args = container["args"]
        assert args[args.index("--node-ir") + 1] == command[command.index("--node-ir") + 1]
        assert args[args.index("--run-id") + 1] == RUN_ID
        assert args[args.index("--tfjob-replica-of") + 1] == manifest["metadata"]["name"]
        assert "--tfjob-workers" not in args and "--tfjob-pod" not in args
        # Each replica gets the Trainer's GPUs (trainer_gpus per replica), node selector and toleration.
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert pod["serviceAccountName"] == "vocdet-pipeline-runner"
        assert {volume["name"] for volume in pod["volumes"]} == {"data", "object-store"}
        assert container["env"] == [
            {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/secrets/object-store/key.json"},
            # The chief runs TFX's Launcher against the metadata store: its password, as the tasks get it.
            {"name": "VOCDET_METADATA_PASSWORD",
             "valueFrom": {"secretKeyRef": {"name": "vocdet-metadata", "key": "password"}}},
        ]  # fmt: skip
        assert args[args.index("--metadata") + 1] == command[command.index("--metadata") + 1]
        # The label the store's NetworkPolicy admits (k8s/metadata-store.yaml), as on every task.
        assert spec["template"]["metadata"]["labels"]["vocdet-metadata-client"] == "true"
    assert manifest["spec"]["runPolicy"]["cleanPodPolicy"] == "Running"


def test_the_schema_rejects_what_the_api_server_would(two_worker_package, schema):
    """The fixture validates: a replica count that is not an integer, or an unknown restart policy field type, fails."""
    manifest = tfjob.manifest(_tfjob_from_task(_task_command(two_worker_package, "trainer")))
    manifest["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = "1"
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'integer'"):
        jsonschema.validate(manifest, schema)
    manifest["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = 1
    del manifest["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(jsonschema.ValidationError, match="'name' is a required property"):
        jsonschema.validate(manifest, schema)


def test_the_trainer_task_gets_no_gpu_when_the_tfjob_has_them(two_worker_package):
    """The submitting pod only watches the job: an ordinary task's resources."""
    label = two_worker_package.executor_label("trainer")
    resources = two_worker_package.executors().executors[label].container.resources
    assert not resources.accelerator.count and not resources.accelerator.resource_count
    assert resources.cpu_limit == 4.0


def test_one_trainer_worker_keeps_the_single_pod_task(tmp_path):
    package = package_runner.Package.read(_compile(tmp_path, {**TINY, "kubeflow": {"trainer_workers": 1}}))
    command = _task_command(package, "trainer")
    assert not [arg for arg in command if arg.startswith("--tfjob")]


def test_trainer_workers_must_be_positive():
    from vocdet.pipeline import config as config_lib

    with pytest.raises(ValueError, match="trainer_workers"):
        config_lib.demo().with_overrides({"kubeflow": {"trainer_workers": 0}}).validate()


def test_replica_args_drop_only_the_submit_arguments():
    argv = ["--node-ir", "{}", "--tfjob-workers", "3", "--tfjob-pod={}", "--run-id", "r", "--tfjob-poll-seconds", "1"]
    assert kubeflow_node.replica_args(argv) == ["--node-ir", "{}", "--run-id", "r"]


def test_the_chief_handoff_refuses_an_untested_tfx(monkeypatch):
    """It overrides TFX's private Launcher._run_executor: only on the TFX releases it was tested on."""
    import tfx

    assert kubeflow_node._launcher_class("handoff").__name__ == "HandoffLauncher"  # this TFX (the lock's)
    monkeypatch.setattr(tfx, "__version__", "1.17.0")
    with pytest.raises(compat.UntestedVersion, match=r"^TFX 1\.17\.0: .*_run_executor.*compat\.tfx\.LAUNCHER_TESTED"):
        kubeflow_node._launcher_class("handoff")
    assert kubeflow_node._launcher_class(None).__name__ == "Launcher"  # a single-pod task uses TFX's own


def _api(double: KubernetesApiDouble, tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", double.kubeconfig(tmp_path / "kubeconfig"))
    return tfjob.api_client()


def _small_job(namespace: str):
    pod = tfjob.ReplicaPod(
        image=IMAGE, service_account="vocdet-pipeline-runner", cpu_limit=2, memory_limit_gb=4, gpus=0,
        gpu_resource="nvidia.com/gpu", gpu_node_selector={}, gpu_tolerations=[], pvc_name="vocdet-data",
        pvc_mount_path="/mnt/vocdet",
    )  # fmt: skip
    return tfjob.build_tfjob("trainer-run-abc123", namespace, 3, pod, ["--run-id", RUN_ID], kubeflow_node.NODE_COMMAND, RUN_ID)


def test_submit_streams_status_and_the_chief_log_until_success(tmp_path, monkeypatch, caplog, capsys, schema):
    script = [
        [condition("Created", "TFJobCreated")],
        [condition("Created", "TFJobCreated"), condition("Running", "TFJobRunning", "TFJob vocdet/x is running.")],
        [condition("Created", "TFJobCreated"), condition("Succeeded", "TFJobSucceeded", "TFJob vocdet/x successfully completed.")],
    ]  # fmt: skip
    with KubernetesApiDouble(script, pod_log="Epoch 1/1\nServing model written to /mnt/x\n") as double:
        api, namespace = _api(double, tmp_path, monkeypatch)
        assert namespace == "vocdet"  # the kubeconfig context's; in a pod, the service account's
        caplog.set_level("INFO")
        tfjob.run_tfjob(_small_job(namespace), api, poll_seconds=0.05)
        time.sleep(0.3)  # the log thread
    (created,) = double.calls("POST")
    assert created.path == "/apis/kubeflow.org/v1/namespaces/vocdet/tfjobs"
    jsonschema.validate(created.json(), schema)
    assert created.json()["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2
    assert not double.calls("DELETE")  # a finished job stays (the operator's TTL removes it)
    messages = [record.getMessage() for record in caplog.records]
    assert any("Running (TFJobRunning)" in message for message in messages)
    assert any("Succeeded (TFJobSucceeded)" in message for message in messages)
    assert sum("Running (TFJobRunning)" in message for message in messages) == 1  # each change once
    assert "[trainer-run-abc123-chief-0] Serving model written to /mnt/x" in capsys.readouterr().out
    (log_call,) = [r for r in double.requests if r.path.endswith("/log")]
    assert log_call.path == "/api/v1/namespaces/vocdet/pods/trainer-run-abc123-chief-0/log"
    assert log_call.query["container"] == ["tensorflow"]


def test_a_failed_job_fails_with_its_reason(tmp_path, monkeypatch):
    script = [
        [condition("Created", "TFJobCreated")],
        [condition("Failed", "TFJobFailed", "TFJob vocdet/x has failed because 1 Chief replica(s) failed.")],
    ]
    with KubernetesApiDouble(script) as double:
        api, namespace = _api(double, tmp_path, monkeypatch)
        with pytest.raises(RuntimeError, match=r"failed: TFJobFailed: TFJob vocdet/x has failed because 1 Chief"):
            tfjob.run_tfjob(_small_job(namespace), api, poll_seconds=0.05, stream_logs=False)


def test_a_job_deleted_under_the_task_fails_it(tmp_path, monkeypatch):
    with KubernetesApiDouble([[condition("Created", "TFJobCreated")]]) as double:
        api, namespace = _api(double, tmp_path, monkeypatch)
        threading.Timer(0.3, lambda: double.jobs.clear()).start()
        with pytest.raises(RuntimeError, match="was deleted while it ran"):
            tfjob.run_tfjob(_small_job(namespace), api, poll_seconds=0.05, stream_logs=False)


def test_sigterm_deletes_the_job(two_worker_package, tmp_path):
    """KFP cancels the run: the task's own entrypoint, as a process, deletes the TFJob and fails."""
    running = [condition("Created", "TFJobCreated"), condition("Running", "TFJobRunning")]
    with KubernetesApiDouble([running]) as double:
        env = {**os.environ, "KUBECONFIG": double.kubeconfig(tmp_path / "kubeconfig"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        command = _task_command(two_worker_package, "trainer")
        argv = [sys.executable, "-m", "vocdet.pipeline.kubeflow.node", *command[3:], "--tfjob-poll-seconds", "0.2"]
        with open(tmp_path / "task.log", "w") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        try:
            deadline = time.time() + 180
            while not double.calls("POST") or len(double.calls("GET")) < 2:
                assert process.poll() is None and time.time() < deadline, (tmp_path / "task.log").read_text()[-3000:]
                time.sleep(0.2)
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=60)
        finally:
            process.kill()
    output = (tmp_path / "task.log").read_text()
    (created,) = double.calls("POST")
    (deleted,) = double.calls("DELETE")
    assert deleted.path.endswith("/tfjobs/" + created.json()["metadata"]["name"])
    assert deleted.json()["propagationPolicy"] == "Foreground"  # the replicas' pods go with it
    assert not double.jobs
    assert code == 1 and f"{kubeflow_node.STATE_LINE_PREFIX}CANCELLED" in output, output[-3000:]


class LocalTrainingOperator:
    """What the Training Operator does with a created TFJob, here: each replica as a local process.

    Each process gets the TF_CONFIG the operator sets (cluster: chief and workers; task: its own
    type and index) and the rehearsal's environment; the job's conditions follow the processes:
    Running, then Succeeded when the chief succeeds, Failed when any replica fails.
    """

    def __init__(self, double: KubernetesApiDouble, env: dict, log_dir):
        self.double, self.env, self.log_dir = double, env, log_dir
        self.processes: dict[str, subprocess.Popen] = {}
        double.on_create = self.create
        double.conditions = self.conditions
        double.pod_log_for = self.pod_log

    def create(self, job: dict) -> None:
        name = job["metadata"]["name"]
        replicas = [(kind.lower(), index, spec)
                    for kind, spec in job["spec"]["tfReplicaSpecs"].items() for index in range(spec["replicas"])]
        ports = free_ports(len(replicas))
        cluster: dict[str, list[str]] = {}
        for (kind, _, _), port in zip(replicas, ports):
            cluster.setdefault(kind, []).append(f"127.0.0.1:{port}")
        for kind, index, spec in replicas:
            (container,) = spec["template"]["spec"]["containers"]
            tf_config = {"cluster": cluster, "task": {"type": kind, "index": index}, "environment": "cloud"}
            command = [sys.executable if part == "python" else part for part in container["command"]]
            pod = f"{name}-{kind}-{index}"
            with open(self.log_dir / f"{pod}.log", "w") as log:
                self.processes[pod] = subprocess.Popen(
                    [*command, *container["args"]], stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                    env={**self.env, "TF_CONFIG": json.dumps(tf_config)},
                )  # fmt: skip

    def conditions(self, job: dict) -> list[dict]:
        codes = {pod: process.poll() for pod, process in self.processes.items()}
        created = [condition("Created", "TFJobCreated")]
        failed = [pod for pod, code in codes.items() if code not in (None, 0)]
        if failed:
            for process in self.processes.values():
                process.kill()
            return created + [condition("Failed", "TFJobFailed", f"replica(s) {failed} failed")]
        chief = next(code for pod, code in codes.items() if "-chief-" in pod)
        if chief == 0 and all(code == 0 for code in codes.values()):
            return created + [condition("Succeeded", "TFJobSucceeded")]
        return created + [condition("Running", "TFJobRunning")]

    def pod_log(self, pod: str) -> str:
        path = self.log_dir / f"{pod}.log"
        self.processes[pod].wait(timeout=900)
        return path.read_text()

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.wait()


@pytest.mark.e2e
def test_the_trainer_task_trains_on_two_localhost_replicas_and_publishes_the_chief_model(
    small_voc_root, tmp_path, monkeypatch
):
    """A package run up to the Trainer, whose task submits a TFJob that runs as 2 local processes."""
    package = package_runner.Package.read(_compile(tmp_path, {**TINY, "kubeflow": {"trainer_workers": 2}}))
    order = package.task_order()
    package.task_order = lambda: order[: order.index("trainer") + 1]  # the Trainer is what is tested here
    output = tmp_path / "output"
    mounts = package_runner.local_mounts(package, str(output))
    replica_env = {
        **os.environ,
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
        "CUDA_VISIBLE_DEVICES": "",
        kubeflow_node.METADATA_URL_ENV: f"sqlite://{output / 'metadata.sqlite'}",
        kubeflow_node.LOCAL_MOUNTS_ENV: json.dumps(mounts),
    }
    (tmp_path / "pods").mkdir()
    with KubernetesApiDouble() as double:
        operator = LocalTrainingOperator(double, replica_env, tmp_path / "pods")
        monkeypatch.setenv("KUBECONFIG", double.kubeconfig(tmp_path / "kubeconfig"))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        try:
            started = time.time()
            data_root = package_runner.local_data_root(
                package, str(output), [small_voc_root], "data_root", str(output / "sample-data")
            )
            run_id, results = package_runner.run_package(
                package, str(output), {"data_root": data_root}, progress=lambda line: None
            )
            print(f"\npackage up to the Trainer, TFJob of 2: {time.time() - started:.0f}s")
        finally:
            operator.stop()
    trainer_log = open(results[-1].log).read()
    logs = {pod: (tmp_path / "pods" / f"{pod}.log").read_text() for pod in operator.processes}
    (chief_log,) = [log for pod, log in logs.items() if "-chief-0" in pod]
    (worker_log,) = [log for pod, log in logs.items() if "-worker-0" in pod]
    assert results[-1].name == "Trainer" and results[-1].state == "COMPLETE", trainer_log[-3000:]
    assert "Succeeded (TFJobSucceeded)" in trainer_log
    assert re.search(r"\[trainer-[0-9a-f]+-[0-9a-f]+-chief-0\] .*Serving model written to ", trainer_log)  # its log, copied
    for log in (chief_log, worker_log):
        assert "MultiWorkerMirroredStrategy over 2 replica(s)" in log, log[-3000:]
    # One step, one loss: both workers trained the same global batch.
    assert re.findall(r" - loss: ([0-9.]+)", chief_log)[-1] == re.findall(r" - loss: ([0-9.]+)", worker_log)[-1]

    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(str(output / "metadata.sqlite")))
    trainer_context = store.get_context_by_type_and_name("node", "vocdet.Trainer")
    (execution,) = store.get_executions_by_context(trainer_context.id)  # the chief's; the worker made none
    assert kubeflow_node.node_state(store, "vocdet", "Trainer", run_id) == "COMPLETE"
    assert f"execution {execution.id}'s executor (no ML Metadata)" in worker_log
    outputs = {}
    for event in store.get_events_by_execution_ids([execution.id]):
        if event.type == event.OUTPUT:
            (artifact,) = store.get_artifacts_by_id([event.artifact_id])
            outputs[event.path.steps[0].key] = artifact
    model, model_run = outputs["model"], outputs["model_run"]
    assert f"Serving model written to {model.uri}/Format-Serving" in chief_log
    assert os.path.exists(os.path.join(model.uri, "Format-Serving", "saved_model.pb"))
    assert os.path.isdir(os.path.join(model_run.uri, ".worker-0"))  # the worker's own logs, beside the chief's
    assert [a.id for a in store.get_artifacts_by_type("Model")] == [model.id]  # one model: the chief's
