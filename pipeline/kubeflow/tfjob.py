"""The Trainer on several nodes: a Kubeflow Training Operator `TFJob`, submitted and watched by the Trainer's KFP task.

With `kubeflow.trainer_workers: N` > 1, the Trainer's KFP task does not train. It builds a TFJob of
one `Chief` and N-1 `Worker` replicas (this module, with the operator's own SDK models,
`kubeflow-training`), creates it in its own namespace, logs the job's conditions as they change and
the chief's log, and ends as the job ends: 0 when it succeeded, 1 with the job's reason and message
when it failed. SIGTERM (KFP cancelling the run) deletes the job before the task exits.

Every replica runs the same image and the same entrypoint (`python -m vocdet.pipeline.kubeflow.node`)
with the task's own arguments (node IR, run id, metadata store URL, run parameters; KFP has filled
its placeholders already) plus `--tfjob-replica-of JOB`, and the task's access to the metadata
store: its password secret as the same environment variable, and the label the store's
NetworkPolicy admits. The operator gives each replica its
`TF_CONFIG`; what each replica then does, and why only the chief publishes, is in
`vocdet.pipeline.kubeflow.node`'s docstring.

Why a TFJob (Training Operator v1) and not Kubeflow Trainer v2's TrainJob: a TrainJob runs a
`TrainingRuntime` an admin installs, and v2's runtimes are built for PyTorch (torchrun) and MPI
(later DeepSpeed, MLX, JAX); TensorFlow is not among its frameworks, so nothing there sets
`TF_CONFIG`, which MultiWorkerMirroredStrategy reads. The v1 operator's TFJob sets it, has a chief
whose completion is the job's success, and is the operator that Kubeflow platforms without
Trainer v2 install. Its SDK 1.7.0 is the last release that accepts this project's kubernetes 26.1
(1.8 needs >= 27.2); the CRD schema the manifest is tested against is the operator's v1.7.0 one
(tests/schemas/tfjob-kubeflow.org-v1.yaml).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import secrets
import signal
import threading
import time

from kubeflow.training import models as training_models
from kubeflow.training.constants import constants as training_constants
from kubernetes import client as k8s
from kubernetes import config as k8s_config

GROUP = training_constants.KUBEFLOW_GROUP
VERSION = training_constants.OPERATOR_VERSION
PLURAL = training_constants.TFJOB_PLURAL
KIND = training_constants.TFJOB_KIND
# The operator sets TF_CONFIG only in the container with this name.
CONTAINER = training_constants.TFJOB_CONTAINER
CHIEF, WORKER = "Chief", "Worker"
RUN_ID_LABEL = "vocdet.pipeline/run-id"
_SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
_logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ReplicaPod:
    """What each replica's pod gets, fixed when the package is compiled (from `KubeflowConfig`).

    `gpus` is per replica: the job trains on `workers x gpus` GPUs, MirroredStrategy's replicas on
    each node inside MultiWorkerMirroredStrategy.
    """

    image: str
    service_account: str
    cpu_limit: float
    memory_limit_gb: float
    gpus: int
    gpu_resource: str
    gpu_node_selector: dict[str, str]
    gpu_tolerations: list[dict[str, str]]
    pvc_name: str
    pvc_mount_path: str
    # (secret name, key, mount folder, environment variable naming the key file) or empty.
    object_store_secret: str = ""
    object_store_secret_key: str = ""
    credentials_dir: str = ""
    credentials_env: str = ""
    # The metadata store's password: (secret, key) -> environment variable, as kfp-kubernetes gives the
    # tasks; and the pod labels the store's NetworkPolicy admits (the chief runs TFX's Launcher against it).
    metadata_secret: str = ""
    metadata_secret_key: str = ""
    metadata_password_env: str = ""
    labels: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "ReplicaPod":
        return cls(**json.loads(text))


def job_name(node_id: str, run_id: str) -> str:
    """A new DNS-1035 name per submission (a retried task must not meet its previous job), short
    enough for the operator's pod and service names (`<name>-worker-<index>`)."""
    run = re.sub(r"[^a-z0-9]", "", run_id.lower())[:12]
    return f"{re.sub(r'[^a-z0-9]', '', node_id.lower())[:16]}-{run}-{secrets.token_hex(3)}"


def build_tfjob(
    name: str, namespace: str, workers: int, pod: ReplicaPod, args: list[str], command: list[str], run_id: str
) -> training_models.KubeflowOrgV1TFJob:
    """The TFJob: one Chief and `workers - 1` Workers, each running `command + args`."""
    if workers < 2:
        raise ValueError(f"a TFJob of {workers} worker(s): trainer_workers: 1 runs the Trainer in the task's own pod")
    limits = {"cpu": f"{pod.cpu_limit:g}", "memory": f"{pod.memory_limit_gb:g}G"}
    if pod.gpus:
        limits[pod.gpu_resource] = str(pod.gpus)
    mounts = [k8s.V1VolumeMount(name="data", mount_path=pod.pvc_mount_path)]
    volumes = [k8s.V1Volume(name="data", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=pod.pvc_name))]
    env = []
    if pod.object_store_secret:
        mounts.append(k8s.V1VolumeMount(name="object-store", mount_path=pod.credentials_dir, read_only=True))
        volumes.append(k8s.V1Volume(name="object-store", secret=k8s.V1SecretVolumeSource(secret_name=pod.object_store_secret)))
        env.append(k8s.V1EnvVar(name=pod.credentials_env, value=f"{pod.credentials_dir}/{pod.object_store_secret_key}"))
    if pod.metadata_secret:
        secret = k8s.V1SecretKeySelector(name=pod.metadata_secret, key=pod.metadata_secret_key)
        env.append(k8s.V1EnvVar(name=pod.metadata_password_env, value_from=k8s.V1EnvVarSource(secret_key_ref=secret)))
    container = k8s.V1Container(
        name=CONTAINER,
        image=pod.image,
        command=list(command),
        args=list(args),
        env=env or None,
        resources=k8s.V1ResourceRequirements(limits=limits, requests=dict(limits)),
        volume_mounts=mounts,
    )
    template = k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels={**pod.labels, RUN_ID_LABEL: _label_value(run_id)}),
        spec=k8s.V1PodSpec(
            containers=[container],
            volumes=volumes,
            service_account_name=pod.service_account,
            node_selector=dict(pod.gpu_node_selector) if pod.gpus else None,
            tolerations=[k8s.V1Toleration(**toleration) for toleration in pod.gpu_tolerations] if pod.gpus else None,
        ),
    )

    def replicas(count: int) -> training_models.KubeflowOrgV1ReplicaSpec:
        # Never restart a replica on its own: a lone restarted worker cannot rejoin the collective
        # ring; KFP's retry of the task submits a new job, which resumes from the Trainer's backup.
        return training_models.KubeflowOrgV1ReplicaSpec(replicas=count, restart_policy="Never", template=template)

    return training_models.KubeflowOrgV1TFJob(
        api_version=f"{GROUP}/{VERSION}",
        kind=KIND,
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels={RUN_ID_LABEL: _label_value(run_id)}),
        spec=training_models.KubeflowOrgV1TFJobSpec(
            tf_replica_specs={CHIEF: replicas(1), WORKER: replicas(workers - 1)},
            # The chief's success is the job's (the operator's default with a chief); the workers
            # still running then are removed, and the finished job a day later.
            run_policy=training_models.KubeflowOrgV1RunPolicy(
                clean_pod_policy="Running", backoff_limit=0, ttl_seconds_after_finished=86400
            ),
        ),
    )


def _label_value(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63].strip("-_.") or "none"


def manifest(tfjob: training_models.KubeflowOrgV1TFJob) -> dict:
    """The TFJob as the API server receives it (camelCase JSON, no nulls)."""
    return k8s.ApiClient().sanitize_for_serialization(tfjob)


def api_client() -> tuple[k8s.ApiClient, str]:
    """(client, namespace): the pod's own service account in the cluster, else the kubeconfig's context."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config()
        with open(_SERVICE_ACCOUNT_NAMESPACE) as handle:
            namespace = handle.read().strip()
    else:
        config_file = os.environ.get("KUBECONFIG") or None
        k8s_config.load_kube_config(config_file=config_file)
        _, context = k8s_config.list_kube_config_contexts(config_file=config_file)
        namespace = context["context"].get("namespace", "default")
    return k8s.ApiClient(), namespace


class Cancelled(Exception):
    """SIGTERM arrived while the job ran."""


def run_tfjob(tfjob, api: k8s.ApiClient, poll_seconds: float = 10.0, stream_logs: bool = True) -> None:
    """Creates the job, logs its conditions and the chief's log, returns when it succeeds.

    Raises RuntimeError with the job's reason and message when it fails (or disappears), and
    `Cancelled` after deleting the job when SIGTERM arrives.
    """
    custom = k8s.CustomObjectsApi(api)
    name, namespace = tfjob.metadata.name, tfjob.metadata.namespace
    previous = signal.signal(signal.SIGTERM, _raise_cancelled) if _main_thread() else None
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest(tfjob))
        _logger.info("TFJob %s/%s created: %d replicas", namespace, name, _replica_count(tfjob))
        seen: set[tuple[str, str, str]] = set()
        logs = _ChiefLog(api, namespace, name) if stream_logs else None
        while True:
            job = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            conditions = [c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
            for condition in conditions:
                key = (condition.get("type", ""), condition.get("reason", ""), condition.get("lastTransitionTime", ""))
                if key not in seen:
                    seen.add(key)
                    _logger.info("TFJob %s: %s (%s) %s", name, key[0], key[1], condition.get("message", ""))
            types = {c.get("type"): c for c in conditions}
            if "Running" in types and logs is not None:
                logs.start()
            if "Succeeded" in types:
                return
            if "Failed" in types:
                failed = types["Failed"]
                raise RuntimeError(
                    f"TFJob {namespace}/{name} failed: {failed.get('reason', 'no reason given')}: "
                    f"{failed.get('message', '')}".rstrip(": ")
                )
            time.sleep(poll_seconds)
    except Cancelled:
        _logger.warning("Cancelled: deleting TFJob %s/%s", namespace, name)
        _delete(custom, namespace, name)
        raise
    except k8s.ApiException as error:
        if error.status == 404:
            raise RuntimeError(f"TFJob {namespace}/{name} was deleted while it ran") from None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _delete(custom: k8s.CustomObjectsApi, namespace: str, name: str) -> None:
    try:
        custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, body=k8s.V1DeleteOptions(propagation_policy="Foreground")
        )
    except k8s.ApiException as error:
        if error.status != 404:
            raise


def _replica_count(tfjob) -> int:
    return sum(spec.replicas for spec in tfjob.spec.tf_replica_specs.values())


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_cancelled(signum, frame) -> None:
    raise Cancelled()


class _ChiefLog:
    """Copies the chief pod's log (`<job>-chief-0`, the operator's name for it) to this task's log, once."""

    def __init__(self, api: k8s.ApiClient, namespace: str, job: str) -> None:
        self._core = k8s.CoreV1Api(api)
        self._namespace, self._pod = namespace, f"{job}-{CHIEF.lower()}-0"
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._follow, name="chief-log", daemon=True)
            self._thread.start()

    def _follow(self) -> None:
        try:
            stream = self._core.read_namespaced_pod_log(
                self._pod, self._namespace, container=CONTAINER, follow=True, _preload_content=False
            )
            for line in stream.stream(decode_content=True):
                for text in line.decode(errors="replace").splitlines():
                    print(f"[{self._pod}] {text}", flush=True)
        except Exception as error:  # the job's status, not its log, decides the task
            _logger.warning("Cannot follow %s's log: %s", self._pod, error)
