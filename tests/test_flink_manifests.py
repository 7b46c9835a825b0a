"""k8s/flink/ (Beam on Flink for `beam.runner: portable`), checked without a cluster: built-in kinds against
Kubernetes' JSON schemas, the FlinkDeployment against the Flink Kubernetes Operator's CRD schema
(tests/schemas/), and the settings that tie the manifests to the pipeline's config."""

import copy
import os
import re

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.manifests import KUBERNETES_VERSION, REPO, lock_entries, render_kustomization
from vocdet.pipeline import beam_args
from vocdet.pipeline import config as config_lib

FLINK_DIR = os.path.join(REPO, "k8s", "flink")
FLINK_SCHEMA = os.path.join(REPO, "tests", "schemas", "flinkdeployment-v1beta1.yaml")


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return render_kustomization(FLINK_DIR)


def _strict(schema):
    """The CRD schema as the API server's strict field validation applies it: unknown fields are errors.

    An object schema that lists its properties gets `additionalProperties: false`, unless it keeps unknown
    fields (`x-kubernetes-preserve-unknown-fields`) or is a map (its own `additionalProperties`).
    """
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def validate_flink_deployment(document: dict) -> None:
    """The operator's schema for `spec` (strict), apiVersion and kind, and each pod template as a Kubernetes Pod."""
    assert (document["apiVersion"], document["kind"]) == ("flink.apache.org/v1beta1", "FlinkDeployment")
    with open(FLINK_SCHEMA) as handle:
        schema = _strict(yaml.safe_load(handle))
    body = {key: value for key, value in document.items() if key not in ("apiVersion", "kind", "metadata")}
    jsonschema.validate(body, schema)
    for template in _pod_templates(document).values():
        kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)


def _pod_templates(document: dict) -> dict[str, dict]:
    spec = document["spec"]
    found = {"spec": spec.get("podTemplate")} | {part: spec.get(part, {}).get("podTemplate") for part in ("jobManager", "taskManager")}
    return {part: template for part, template in found.items() if template}


def _pod_specs(manifests):
    for document in manifests:
        if document["kind"] == "Deployment":
            yield document["metadata"]["name"], document["spec"]["template"]["spec"]
        elif document["kind"] == "FlinkDeployment":
            for part, template in _pod_templates(document).items():
                yield f"{document['metadata']['name']} {part}", template["spec"]


def _by_kind(manifests, kind):
    return [document for document in manifests if document["kind"] == kind]


def test_every_manifest_is_valid_and_the_flink_deployment_matches_the_operators_crd(manifests):
    kinds = sorted(document["kind"] for document in manifests)
    assert kinds == ["Deployment", "FlinkDeployment", "NetworkPolicy", "NetworkPolicy", "Service"]
    for document in manifests:
        if document["kind"] == "FlinkDeployment":
            validate_flink_deployment(document)
        else:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        assert document["metadata"]["namespace"] == "vocdet"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda spec: spec.update(taskManger={"replicas": 2}), "Additional properties are not allowed"),
        (lambda spec: spec.update(flinkVersion="v1_12"), "is not one of"),
        (lambda spec: spec["taskManager"].update(replicas="two"), "is not of type 'integer'"),
        (lambda spec: spec["taskManager"]["podTemplate"]["spec"].update(containres=[]), "containres"),
    ],
)
def test_the_schema_check_rejects_what_the_api_server_would(manifests, change, message):
    (document,) = _by_kind(manifests, "FlinkDeployment")
    broken = copy.deepcopy(document)
    change(broken["spec"])
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError), match=message):
        validate_flink_deployment(broken)


def test_flink_is_not_part_of_the_base_kustomization():
    """Applied apart (it needs the Flink operator's CRD); `kubectl apply -k k8s/` must not need it."""
    with open(os.path.join(REPO, "k8s", "kustomization.yaml")) as handle:
        resources = yaml.safe_load(handle)["resources"]
    assert not any(resource.startswith("flink") for resource in resources)
    listed = set(yaml.safe_load(open(os.path.join(FLINK_DIR, "kustomization.yaml")))["resources"])
    assert listed == {name for name in os.listdir(FLINK_DIR) if name != "kustomization.yaml"}


def test_pods_are_non_root_read_only_with_seccomp(manifests):
    specs = dict(_pod_specs(manifests))
    assert set(specs) == {"vocdet-beam-job-server", "vocdet-flink jobManager", "vocdet-flink taskManager"}
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        scratch = {volume["name"] for volume in spec["volumes"] if "emptyDir" in volume}
        for container in spec["containers"]:
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert any(mount["mountPath"] == "/tmp" and mount["name"] in scratch for mount in container["volumeMounts"]), where
            if container["name"] != "flink-main-container":  # the operator sets its resources from `resource:`
                assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
                assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where


def test_images_are_pinned_and_beam_is_the_locked_version(manifests):
    (flink,) = _by_kind(manifests, "FlinkDeployment")
    (job_server,) = _by_kind(manifests, "Deployment")
    images = [flink["spec"]["image"]] + [
        container["image"] for _, spec in _pod_specs(manifests) for container in spec["containers"] if "image" in container
    ]
    assert len(images) == 3
    for image in images:
        assert re.search(r":[\w.-]+@sha256:[0-9a-f]{64}$", image) and ":latest" not in image, image
    beam_version = lock_entries("requirements.lock")["apache-beam"][0]
    (server_image,) = [container["image"] for container in job_server["spec"]["template"]["spec"]["containers"]]
    flink_minor = re.search(r"flink:(\d+\.\d+)", flink["spec"]["image"]).group(1)
    assert server_image.startswith(f"apache/beam_flink{flink_minor}_job_server:{beam_version}@"), server_image
    assert flink["spec"]["flinkVersion"] == "v" + flink_minor.replace(".", "_")


def test_the_worker_pool_sidecar_serves_the_address_and_paths_the_config_defaults_to(manifests):
    """`beam.runner: portable` with the defaults reaches this sidecar, and the workers see the KFP tasks' PVC."""
    kubeflow = config_lib.KubeflowConfig()
    (flink,) = _by_kind(manifests, "FlinkDeployment")
    task_manager = flink["spec"]["taskManager"]["podTemplate"]["spec"]
    (sidecar,) = [container for container in task_manager["containers"] if container["name"] == "beam-worker-pool"]
    assert sidecar["image"].split("@")[0].rsplit(":", 1)[0] == "registry.example.com/vocdet"  # k8s/kustomization.yaml's name
    assert sidecar["command"] + sidecar["args"] == [
        "python", "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={beam_args.DEFAULT_WORKER_POOL.split(':')[1]}"
    ]
    assert beam_args.DEFAULT_WORKER_POOL.startswith("localhost:")  # the sidecar, beside its task manager
    claims = {volume["name"]: volume["persistentVolumeClaim"]["claimName"] for volume in task_manager["volumes"] if "persistentVolumeClaim" in volume}
    for container in task_manager["containers"]:
        (mount,) = [mount for mount in container["volumeMounts"] if mount["name"] in claims]
        assert (claims[mount["name"]], mount["mountPath"]) == (kubeflow.pvc_name, kubeflow.pvc_mount_path), container["name"]


def test_the_job_server_talks_to_the_session_cluster_and_stages_on_the_pvc(manifests):
    (flink,) = _by_kind(manifests, "FlinkDeployment")
    (deployment,) = _by_kind(manifests, "Deployment")
    (service,) = _by_kind(manifests, "Service")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = dict(arg.removeprefix("--").split("=", 1) for arg in container["args"])
    assert args["flink-master"] == f"{flink['metadata']['name']}-rest:8081"  # the operator's REST service
    assert args["artifacts-dir"].startswith(config_lib.KubeflowConfig().pvc_mount_path + "/")
    assert {port["name"]: port["port"] for port in service["spec"]["ports"]} == {
        "job": int(args["job-port"]), "artifact": int(args["artifact-port"]), "expansion": int(args["expansion-port"])
    }
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_only_the_namespace_reaches_the_job_server_and_only_flink_reaches_flink(manifests):
    policies = {policy["metadata"]["name"]: policy["spec"] for policy in _by_kind(manifests, "NetworkPolicy")}
    job_server = policies["vocdet-beam-job-server-namespace-only"]
    assert job_server["ingress"][0]["from"] == [{"podSelector": {}}]  # no namespaceSelector: this namespace only
    flink = policies["vocdet-flink-internal-only"]
    assert flink["podSelector"] == {"matchLabels": {"app": "vocdet-flink"}}
    assert [peer["podSelector"]["matchLabels"] for peer in flink["ingress"][0]["from"]] == [
        {"app": "vocdet-flink"}, {"app.kubernetes.io/name": "vocdet-beam-job-server"}
    ]
