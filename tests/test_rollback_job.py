"""k8s/rollback/ (`vocdet rollback` as a Kubernetes Job on the cluster), rendered through its kustomization,
validated against Kubernetes' JSON schemas, and tied to the settings the compiled tasks use."""

import os

import kubernetes_validate
import pytest

from tests.manifests import KUBERNETES_VERSION, REPO, containers, render_kustomization
from vocdet.pipeline import config as config_lib
from vocdet.pipeline.cli import app
from vocdet.pipeline.metadata import store


@pytest.fixture(scope="module")
def job() -> dict:
    (document,) = render_kustomization(os.path.join(REPO, "k8s", "rollback"))
    return document


def test_the_job_is_valid_kubernetes_and_never_retried(job):
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "vocdet"
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_job_runs_vocdet_rollback_where_the_tasks_push(job):
    cluster = config_lib.load(config_lib.CLUSTER_PRESET).kubeflow
    (container,) = containers(job)
    assert container["image"].startswith("registry.example.com/vocdet@sha256:")
    command = container["command"]
    assert command[:2] == ["vocdet", "rollback"]
    assert f"--metadata={cluster.metadata}" in command and f"--serving-dir={cluster.serving_dir}" in command
    # The command line parses as vocdet's own once the version is filled in.
    args = app._parser().parse_args([arg.replace("VERSION", "1764770000") for arg in command[1:]])
    assert (args.command, args.to, args.metadata) == ("rollback", 1764770000, cluster.metadata)
    spec = job["spec"]["template"]["spec"]
    (claim,) = [volume for volume in spec["volumes"] if "persistentVolumeClaim" in volume]
    assert claim["persistentVolumeClaim"]["claimName"] == cluster.pvc_name
    assert {"name": claim["name"], "mountPath": cluster.pvc_mount_path} in container["volumeMounts"]
    assert cluster.serving_dir.startswith(cluster.pvc_mount_path + "/")
    (password,) = [env for env in container["env"] if env["name"] == store.PASSWORD_ENV]
    assert password["valueFrom"]["secretKeyRef"] == {"name": cluster.metadata_secret, "key": cluster.metadata_secret_key}
    # The metadata store's NetworkPolicy admits labelled clients only.
    assert job["spec"]["template"]["metadata"]["labels"]["vocdet-metadata-client"] == "true"


def test_the_pod_is_non_root_read_only_with_seccomp_and_limits(job):
    spec = job["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert any(mount["mountPath"] == "/tmp" for mount in container["volumeMounts"])
