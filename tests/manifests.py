"""The repository's Kubernetes manifests, rendered as kustomize renders them, and the pinned tool versions."""

import os
import re

import yaml



REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


KUBERNETES_VERSION = "1.31.0"


def lock_entries(*parts: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, [sha256, ...]) of a hashed requirements file (`make lock`'s format)."""
    pins = {}
    for entry in re.split(r"\n(?=\S)", read_repo_file(*parts)):
        if entry.startswith("#") or "==" not in entry:
            continue
        name, version = entry.split()[0].split("==")
        pins[name] = (version, re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
    return pins


def render_kustomization(directory: str) -> list[dict]:
    """The documents `kubectl kustomize` renders for the features our kustomization uses.

    Supported: resources (files), namespace, labels (pairs), images (name, newName, newTag,
    digest) and replacements (one source field copied whole to target fields, `[name=...]`
    list selectors). Anything else fails the test, so a new kustomize feature in k8s/ needs its
    rendering here too; `test_rendering_agrees_with_kubectl_kustomize` checks this one against
    kustomize itself where kubectl is installed.
    """
    with open(os.path.join(directory, "kustomization.yaml")) as handle:
        kustomization = yaml.safe_load(handle)
    unsupported = set(kustomization) - {"apiVersion", "kind", "namespace", "resources", "labels", "images", "replacements"}
    assert not unsupported, f"render_kustomization does not know {unsupported}"
    documents = []
    for resource in kustomization["resources"]:
        with open(os.path.join(directory, resource)) as handle:
            documents.extend(document for document in yaml.safe_load_all(handle) if document)
    labels = {key: value for entry in kustomization.get("labels", []) for key, value in entry["pairs"].items()}
    for document in documents:
        metadata = document.setdefault("metadata", {})
        metadata.setdefault("labels", {}).update(labels)
        if document["kind"] not in CLUSTER_SCOPED and "namespace" in kustomization:
            metadata["namespace"] = kustomization["namespace"]
        for subject in document.get("subjects", []):
            subject.setdefault("namespace", kustomization.get("namespace"))
        for container in containers(document):
            container["image"] = _kustomized_image(container["image"], kustomization.get("images", []))
    for replacement in kustomization.get("replacements", []):
        value = _field(_selected(documents, replacement["source"]), replacement["source"]["fieldPath"])
        for target in replacement["targets"]:
            for field_path in target["fieldPaths"]:
                _set_field(_selected(documents, target["select"]), field_path, value)
    return documents


def read_repo_file(*parts: str) -> str:
    with open(os.path.join(REPO, *parts)) as handle:
        return handle.read()


# Kustomize 5.5 sets the namespace on every kind but Namespace, the admission policies too (the API server
# drops it from a cluster-scoped object).
CLUSTER_SCOPED = {"Namespace"}


def _kustomized_image(image: str, entries: list[dict]) -> str:
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    name = name[: len(name) - len(tag) - 1] if tag else name
    for entry in entries:
        if entry["name"] == name:
            name = entry.get("newName", name)
            # A digest replaces the tag unless the entry gives a newTag too (then both are kept, as kustomize does).
            tag = entry.get("newTag", None if "digest" in entry else tag)
            digest = entry.get("digest", digest)
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _field(document: dict, field_path: str):
    parent, key = _walk(document, field_path)
    return _step(parent, key)


def _selected(documents: list[dict], select: dict) -> dict:
    (document,) = [d for d in documents if d["kind"] == select["kind"] and d["metadata"]["name"] == select["name"]]
    return document


def _set_field(document: dict, field_path: str, value) -> None:
    parent, key = _walk(document, field_path)
    parent[key] = value


def containers(document: dict) -> list[dict]:
    template = document.get("spec", {}).get("jobTemplate", {}).get("spec", document.get("spec", {}))
    return template.get("template", {}).get("spec", {}).get("containers", [])


def _walk(document: dict, field_path: str):
    """(parent, key) of a kustomize field path such as `spec.containers.[name=x].image`."""
    parts = field_path.split(".")
    node = document
    for part in parts[:-1]:
        node = _step(node, part)
    return node, parts[-1]


def _step(node, part: str):
    selector = re.fullmatch(r"\[(\w+)=([^\]]+)\]", part)
    if selector:
        (node,) = [item for item in node if item.get(selector.group(1)) == selector.group(2)]
        return node
    return node[part]
