"""docker/ and k8s/, checked without Docker or a cluster: the Dockerfile read statically, every
manifest rendered through its kustomization and validated against Kubernetes' JSON schemas."""

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml
from tests.manifests import KUBERNETES_VERSION, REPO, containers, lock_entries, read_repo_file, render_kustomization


def _dockerfile_lines() -> list[tuple[str, str]]:
    """[(instruction, arguments), ...], continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", read_repo_file("docker", "Dockerfile"))
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            lines.append((instruction.upper(), arguments.strip()))
    return lines


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    """[[(instruction, arguments), ...] per stage]; the ARGs before the first FROM are in no stage."""
    stages: list[list[tuple[str, str]]] = []
    for instruction, arguments in _dockerfile_lines():
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, arguments))
    return stages


def _dockerfile_bases() -> list[str]:
    """Each stage's base image, with the global ARGs' defaults substituted as `docker build` does."""
    arguments_before_from = {}
    for instruction, arguments in _dockerfile_lines():
        if instruction == "FROM":
            break
        if instruction == "ARG":
            name, _, default = arguments.partition("=")
            arguments_before_from[name] = default
    bases = [arguments.split()[0] for stage in _dockerfile_stages() for instruction, arguments in stage if instruction == "FROM"]
    return [re.sub(r"\$\{(\w+)\}", lambda match: arguments_before_from[match.group(1)], base) for base in bases]


def test_dockerfile_base_matches_this_python_is_pinned_by_digest_and_installs_the_lock_by_hash():
    stages = _dockerfile_stages()
    bases = _dockerfile_bases()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert len(bases) == 2 and len(set(bases)) == 1, bases  # build and runtime from the same bytes
    assert all(
        re.fullmatch(rf"python:{re.escape(python)}\.\d+-slim-bookworm@sha256:[0-9a-f]{{64}}", base) for base in bases
    ), bases
    runs = " ".join(arguments for instruction, arguments in stages[0] if instruction == "RUN")
    assert "-r requirements.lock" in runs and "--no-deps" in runs
    assert "-r requirements-gpu.txt" in runs
    installs = [command for command in re.split(r"&&|\|", runs) if "pip install" in command]
    assert len(installs) == 3 and all("--require-hashes" in command for command in installs), installs


def test_the_lock_carries_hashes_and_setup_requires_them():
    """Every pin of the lock (pip, setuptools and wheel included), the CUDA pins and the docs lock has its files' sha256."""
    for parts in (("requirements.lock",), ("docker", "requirements-gpu.txt"), ("docs", "requirements.lock")):
        pins = lock_entries(*parts)
        assert pins and all(hashes for _, hashes in pins.values()), [name for name, (_, h) in pins.items() if not h]
    lock = lock_entries("requirements.lock")
    assert {"pip", "setuptools", "wheel"} <= set(lock)
    makefile = read_repo_file("Makefile")
    setup = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    installs = [line for line in setup.splitlines() if "pip install" in line]
    assert len(installs) == 4  # pip, setuptools and wheel; the lock; the project (editable); the docs lock
    assert all("--require-hashes" in line for line in installs if "-e ." not in line)
    assert "--hash" in makefile.split("define HASH_LOCK", 1)[1]


def test_dockerfile_gpu_libraries_are_tensorflows_own_cuda_pins():
    """requirements-gpu.txt is exactly what tensorflow[and-cuda] of the locked version requires."""
    lock = {name: version for name, (version, _) in lock_entries("requirements.lock").items()}
    pinned = {name: version for name, (version, _) in lock_entries("docker", "requirements-gpu.txt").items()}
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
    """The compiled package's task command (`python -m vocdet.pipeline.kubeflow.node`) and the module files it loads."""
    from vocdet.pipeline.kubeflow import node

    assert node.NODE_COMMAND[:2] == ["python", "-m"]
    assert importlib.util.find_spec(node.NODE_COMMAND[2])
    assert importlib.util.find_spec("vocdet.components.trainer.module") and importlib.util.find_spec("vocdet.components.transform")
    copied = {arguments.split()[0] for instruction, arguments in _dockerfile_stages()[0] if instruction == "COPY"}
    assert {"pipeline", "components", "pyproject.toml", "setup.py"} <= copied
    scripts = importlib.metadata.distribution("vocdet").entry_points
    assert any(entry.name == "vocdet" for entry in scripts)


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return render_kustomization(os.path.join(REPO, "k8s"))


def test_every_manifest_is_valid_kubernetes(manifests):
    kinds = sorted(document["kind"] for document in manifests)
    assert kinds == sorted(
        ["Namespace", "PersistentVolumeClaim", "ServiceAccount", "ServiceAccount", "Role", "RoleBinding", "Deployment",
         "Service", "CronJob", "NetworkPolicy", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
         "Secret", "StatefulSet", "Service", "NetworkPolicy"]
    )
    for document in manifests:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl (with its kustomize) is not installed")
def test_rendering_agrees_with_kubectl_kustomize(manifests):
    rendered = subprocess.run(
        ["kubectl", "kustomize", os.path.join(REPO, "k8s")], capture_output=True, text=True, check=True
    ).stdout
    by_name = lambda documents: {(d["kind"], d["metadata"]["name"]): d for d in documents}  # noqa: E731
    assert by_name(yaml.safe_load_all(rendered)) == by_name(manifests)


def test_every_image_is_pinned_by_digest_never_latest(manifests):
    images = [container["image"] for document in manifests for container in containers(document)]
    assert len(images) == 3
    for image in images:
        assert re.search(r"@sha256:[0-9a-f]{64}$", image) and ":latest" not in image, image
    for name in ("cronjob.yaml", "serving.yaml", "metadata-store.yaml"):
        assert "latest" not in read_repo_file("k8s", name)


def test_every_manifest_file_is_in_the_kustomization():
    listed = set(yaml.safe_load(read_repo_file("k8s", "kustomization.yaml"))["resources"])
    k8s = os.path.join(REPO, "k8s")
    # Folders are add-ons with their own kustomization (k8s/flink/: tests/test_flink_manifests.py).
    on_disk = {name for name in os.listdir(k8s) if name != "kustomization.yaml" and os.path.isfile(os.path.join(k8s, name))}
    assert listed == on_disk


def _pod_specs(manifests):
    for document in manifests:
        if document["kind"] in ("Deployment", "StatefulSet"):
            yield document["metadata"]["name"], document["spec"]["template"]["spec"]
        elif document["kind"] == "CronJob":
            yield document["metadata"]["name"], document["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_pods_are_non_root_read_only_with_seccomp_and_requests_and_limits(manifests):
    specs = list(_pod_specs(manifests))
    assert {name for name, _ in specs} == {"vocdet-serving", "vocdet-retraining", "vocdet-metadata"}
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        scratch = {volume["name"] for volume in spec["volumes"] if "emptyDir" in volume}
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            # What must be writable is an emptyDir: /tmp.
            assert any(mount["mountPath"] == "/tmp" and mount["name"] in scratch for mount in container["volumeMounts"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name


def _named(manifests, kind: str, name: str) -> dict:
    (document,) = [d for d in manifests if d["kind"] == kind and d["metadata"]["name"] == name]
    return document


def test_only_labelled_clients_reach_tf_serving(manifests):
    policy = _named(manifests, "NetworkPolicy", "vocdet-serving-clients-only")
    service = _named(manifests, "Service", "vocdet-serving")
    deployment = _named(manifests, "Deployment", "vocdet-serving")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"vocdet-serving-client": "true"}}}]
    ports = {(port["protocol"], port["port"]) for port in rule["ports"]}
    container_ports = {
        port["name"]: port["containerPort"] for port in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert ports == {("TCP", container_ports[port["targetPort"]]) for port in service["spec"]["ports"]}


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
    assert granted == {
        ("configmaps", "get"), ("pods", "get"), ("pods", "patch"),
        # The multi-node Trainer's task: its own TFJob, and the chief's log (pipeline/kubeflow/tfjob.py).
        ("tfjobs", "create"), ("tfjobs", "get"), ("tfjobs", "delete"), ("pods/log", "get"),
    }
    (configmaps,) = [rule for rule in role["rules"] if rule["resources"] == ["configmaps"]]
    assert configmaps["resourceNames"] == ["kfp-launcher"]
    # Each rule says why it is there.
    rules_text = read_repo_file("k8s", "rbac.yaml").split("rules:", 1)[1].split("---", 1)[0]
    assert len(re.findall(r"\n  #[^\n]*\n(?:  #[^\n]*\n)*  - apiGroups", rules_text)) == len(role["rules"])
    from vocdet.pipeline import config as config_lib

    accounts = {document["metadata"]["name"] for document in manifests if document["kind"] == "ServiceAccount"}
    assert config_lib.KubeflowConfig().service_account in accounts


def test_pods_patch_is_narrowed_to_the_runners_own_pod_metadata(manifests):
    """RBAC cannot name a generated pod: a ValidatingAdmissionPolicy limits `pods: patch` to the runner's own pod."""
    from vocdet.pipeline import config as config_lib

    (policy,) = [document for document in manifests if document["kind"] == "ValidatingAdmissionPolicy"]
    (binding,) = [document for document in manifests if document["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"] and binding["spec"]["validationActions"] == ["Deny"]
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["pods"] and rule["operations"] == ["UPDATE"]  # a patch is an UPDATE at admission
    (condition,) = policy["spec"]["matchConditions"]
    assert f':{config_lib.KubeflowConfig().service_account}"' in condition["expression"]
    checks = " ".join(validation["expression"] for validation in policy["spec"]["validations"])
    assert "authentication.kubernetes.io/pod-name" in checks and "object.spec == oldObject.spec" in checks
    assert policy["spec"]["failurePolicy"] == "Fail"


def test_cronjob_submits_with_the_cli_and_a_projected_token(manifests):
    from vocdet.pipeline.cli import app, options

    (cronjob,) = [document for document in manifests if document["kind"] == "CronJob"]
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    # Kubernetes expands $(NAME) in a command from the container's env.
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    command = [re.sub(r"\$\((\w+)\)", lambda match: env[match.group(1)], part) for part in container["command"]]
    assert command[:2] == ["vocdet", "submit"]
    # The arguments parse with the real CLI, and the tasks run the image the CronJob runs, pinned by digest.
    args = app._parser().parse_args(command[1:])
    assert args.host.startswith("http://ml-pipeline.kubeflow") and args.warm_start
    assert args.token_file.startswith("/var/run/secrets/kubeflow/pipelines/")
    assert args.image == container["image"]
    assert options.config_from_args(args).kubeflow.image_pinned_by_digest
    # Plain http is accepted without --insecure only because this is KFP's in-cluster service.
    from vocdet.pipeline.kubeflow import client as kfp_client

    assert not args.insecure
    kfp_client.Connection(host=args.host, insecure=args.insecure)


def test_the_project_installs_under_one_package_name():
    """pipeline/ and components/ install as vocdet.pipeline and vocdet.components: nothing generic at the top."""
    top_level = importlib.metadata.distribution("vocdet").read_text("top_level.txt").split()
    assert top_level == ["vocdet"]


def test_the_metadata_store_is_what_the_compiled_tasks_reach(manifests, tmp_path):
    """The default kubeflow.metadata names this Service, the tasks carry the label its NetworkPolicy admits
    and read the password from its Secret; only labelled pods reach it, and it refuses the placeholder."""
    from vocdet.pipeline import config as config_lib
    from vocdet.pipeline.kubeflow import compiler
    from vocdet.pipeline.metadata import store

    kubeflow = config_lib.KubeflowConfig()
    url = store.StoreUrl.parse(kubeflow.metadata)
    statefulset = _named(manifests, "StatefulSet", "vocdet-metadata")
    service = _named(manifests, "Service", url.host)
    policy = _named(manifests, "NetworkPolicy", "vocdet-metadata-clients-only")
    secret = _named(manifests, "Secret", kubeflow.metadata_secret)
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    env = {variable["name"]: variable for variable in container["env"]}
    assert (url.scheme, url.user, url.database) == ("mysql", env["MYSQL_USER"]["value"], env["MYSQL_DATABASE"]["value"])
    assert env["MYSQL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": kubeflow.metadata_secret_key}
    assert kubeflow.metadata_secret_key in secret["stringData"]
    assert container["args"][0].startswith(f'if [ "$MYSQL_PASSWORD" = {secret["stringData"][kubeflow.metadata_secret_key]} ]')
    assert "--default-authentication-plugin=mysql_native_password" in container["args"][0]  # ML Metadata's client
    assert container["image"].startswith("mysql:8.0@sha256:")
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
    (port,) = service["spec"]["ports"]
    assert port["port"] == url.port and service["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == statefulset["spec"]["selector"]["matchLabels"]
    (rule,) = policy["spec"]["ingress"]
    label = dict([compiler.METADATA_CLIENT_LABEL])
    assert rule["from"] == [{"podSelector": {"matchLabels": label}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": url.port}]
    cronjob = _named(manifests, "CronJob", "vocdet-retraining")
    assert label.items() <= cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"].items()
