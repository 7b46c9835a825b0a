"""docker/ and k8s/, checked without Docker or a cluster: the Dockerfile read statically, every
manifest rendered through its kustomization and validated against Kubernetes' JSON schemas."""

import importlib.metadata
import importlib.util
import os
import re
import sys

import kubernetes_validate
import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUBERNETES_VERSION = "1.31.0"


def _read(*parts: str) -> str:
    with open(os.path.join(REPO, *parts)) as handle:
        return handle.read()


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    """[[(instruction, arguments), ...] per stage], continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", _read("docker", "Dockerfile"))
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def test_dockerfile_base_matches_this_python_and_installs_the_lock():
    stages = _dockerfile_stages()
    bases = [arguments.split()[0] for stage in stages for instruction, arguments in stage if instruction == "FROM"]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert all(re.fullmatch(rf"python:{re.escape(python)}\.\d+-slim-bookworm", base) for base in bases), bases
    runs = " ".join(arguments for instruction, arguments in stages[0] if instruction == "RUN")
    assert "-r requirements.lock" in runs and "--no-deps" in runs
    assert "-r requirements-gpu.txt" in runs


def test_dockerfile_gpu_libraries_are_tensorflows_own_cuda_pins():
    """requirements-gpu.txt is exactly what tensorflow[and-cuda] of the locked version requires."""
    pinned = dict(
        line.split("==")
        for line in _read("docker", "requirements-gpu.txt").splitlines()
        if line and not line.startswith("#")
    )
    lock = dict(line.split("==") for line in _read("requirements.lock").splitlines() if "==" in line)
    assert importlib.metadata.version("tensorflow") == lock["tensorflow"]
    wanted = {}
    for requirement in importlib.metadata.requires("tensorflow"):
        if "extra == 'and-cuda'" in requirement or 'extra == "and-cuda"' in requirement:
            name, version = re.match(r"([\w.-]+)\s*==\s*([\w.]+)", requirement).groups()
            wanted[name] = version
    assert pinned == wanted


def test_runtime_stage_is_non_root_without_build_tools_and_keeps_keras_3():
    runtime = _dockerfile_stages()[-1]
    users = [arguments for instruction, arguments in runtime if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert not any(
        re.search(r"apt-get install|gcc|build-essential", arguments) for instruction, arguments in runtime if instruction == "RUN"
    )
    copies = [arguments for instruction, arguments in runtime if instruction == "COPY"]
    assert copies == ["--from=build /opt/vocdet /opt/vocdet"]  # only the built environment
    env = " ".join(arguments for instruction, arguments in runtime if instruction == "ENV")
    assert "TF_USE_LEGACY_KERAS=0" in env and "PATH=/opt/vocdet/bin" in env


def test_the_commands_tasks_run_exist_in_the_installed_project():
    """The compiled package's task command (`python -m vocdet.pipeline.kubeflow_node`) and the module files it loads."""
    from vocdet.pipeline import kubeflow

    assert kubeflow.NODE_COMMAND[:2] == ["python", "-m"]
    assert importlib.util.find_spec(kubeflow.NODE_COMMAND[2])
    assert importlib.util.find_spec("vocdet.components.trainer.module") and importlib.util.find_spec("vocdet.components.transform")
    copied = {arguments.split()[0] for instruction, arguments in _dockerfile_stages()[0] if instruction == "COPY"}
    assert {"pipeline", "components", "pyproject.toml"} <= copied
    scripts = importlib.metadata.distribution("vocdet").entry_points
    assert any(entry.name == "vocdet" for entry in scripts)


def render_kustomization(directory: str) -> list[dict]:
    """The documents `kubectl kustomize` renders for the features our kustomization uses.

    Supported: resources (files), namespace, labels (pairs). Anything else fails the
    test, so a new kustomize feature in k8s/ needs its rendering here too.
    """
    with open(os.path.join(directory, "kustomization.yaml")) as handle:
        kustomization = yaml.safe_load(handle)
    unsupported = set(kustomization) - {"apiVersion", "kind", "namespace", "resources", "labels"}
    assert not unsupported, f"render_kustomization does not know {unsupported}"
    documents = []
    for resource in kustomization["resources"]:
        with open(os.path.join(directory, resource)) as handle:
            documents.extend(document for document in yaml.safe_load_all(handle) if document)
    labels = {key: value for entry in kustomization.get("labels", []) for key, value in entry["pairs"].items()}
    for document in documents:
        metadata = document.setdefault("metadata", {})
        metadata.setdefault("labels", {}).update(labels)
        if document["kind"] != "Namespace" and "namespace" in kustomization:
            metadata["namespace"] = kustomization["namespace"]
        for subject in document.get("subjects", []):
            subject.setdefault("namespace", kustomization.get("namespace"))
    return documents


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return render_kustomization(os.path.join(REPO, "k8s"))


def test_every_manifest_is_valid_kubernetes(manifests):
    kinds = sorted(document["kind"] for document in manifests)
    assert kinds == sorted(
        ["Namespace", "PersistentVolumeClaim", "ServiceAccount", "ServiceAccount", "Role", "RoleBinding", "Deployment",
         "Service", "CronJob"]
    )
    for document in manifests:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_every_manifest_file_is_in_the_kustomization():
    listed = set(yaml.safe_load(_read("k8s", "kustomization.yaml"))["resources"])
    on_disk = {name for name in os.listdir(os.path.join(REPO, "k8s")) if name != "kustomization.yaml"}
    assert listed == on_disk


def _pod_specs(manifests):
    for document in manifests:
        if document["kind"] == "Deployment":
            yield document["metadata"]["name"], document["spec"]["template"]["spec"]
        elif document["kind"] == "CronJob":
            yield document["metadata"]["name"], document["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_containers_are_non_root_with_requests_and_limits(manifests):
    specs = list(_pod_specs(manifests))
    assert {name for name, _ in specs} == {"vocdet-serving", "vocdet-retraining"}
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name


def test_serving_reads_the_folder_the_pusher_writes(manifests):
    from vocdet.pipeline import config as config_lib

    kubeflow, push = config_lib.KubeflowConfig(), config_lib.PushConfig()
    (serving,) = [spec for name, spec in _pod_specs(manifests) if name == "vocdet-serving"]
    (container,) = serving["containers"]
    assert f"--model_base_path={kubeflow.serving_dir}/{push.model_name}" in container["args"]
    assert {"name": "vocdet-data", "mountPath": kubeflow.pvc_mount_path, "readOnly": True} in container["volumeMounts"]
    claims = [volume["persistentVolumeClaim"]["claimName"] for volume in serving["volumes"] if "persistentVolumeClaim" in volume]
    assert claims == [kubeflow.pvc_name]
    tf_version = importlib.metadata.version("tensorflow").rsplit(".", 1)[0]
    assert container["image"].startswith(f"tensorflow/serving:{tf_version}.")


def test_rbac_grants_no_more_than_the_launcher_needs(manifests):
    (role,) = [document for document in manifests if document["kind"] == "Role"]
    granted = {(resource, verb) for rule in role["rules"] for resource in rule["resources"] for verb in rule["verbs"]}
    assert granted == {("configmaps", "get"), ("pods", "get"), ("pods", "patch")}
    from vocdet.pipeline import config as config_lib

    accounts = {document["metadata"]["name"] for document in manifests if document["kind"] == "ServiceAccount"}
    assert config_lib.KubeflowConfig().service_account in accounts


def test_cronjob_submits_with_the_cli_and_a_projected_token(manifests):
    from vocdet.pipeline import cli

    (cronjob,) = [document for document in manifests if document["kind"] == "CronJob"]
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["vocdet", "submit"]
    # The arguments parse with the real CLI.
    args = cli._parser().parse_args(command[1:])
    assert args.host.startswith("http://ml-pipeline.kubeflow") and args.warm_start
    assert args.token_file.startswith("/var/run/secrets/kubeflow/pipelines/")


def test_the_project_installs_under_one_package_name():
    """pipeline/ and components/ install as vocdet.pipeline and vocdet.components: nothing generic at the top."""
    top_level = importlib.metadata.distribution("vocdet").read_text("top_level.txt").split()
    assert top_level == ["vocdet"]
