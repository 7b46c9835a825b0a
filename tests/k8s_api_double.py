"""A local HTTP test double of the Kubernetes API, for the calls `vocdet.pipeline.kubeflow.tfjob` makes.

It stores TFJobs (kubeflow.org/v1, namespaced custom objects: create, get, delete), plays a
scripted sequence of job conditions, one step per GET (what the Training Operator would write
into `status`), serves a pod log, and records every request. `kubeconfig()` writes a kubeconfig
that points the kubernetes client at it.
"""

from __future__ import annotations

import json
import re

from tests.http_double import HttpApiDouble, Request

_TFJOBS = re.compile(r"^/apis/kubeflow\.org/v1/namespaces/([^/]+)/tfjobs(?:/([^/]+))?$")
_POD_LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")


def condition(kind: str, reason: str = "", message: str = "", time: str = "2026-11-23T00:00:00Z") -> dict:
    return {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": time}


class KubernetesApiDouble(HttpApiDouble):
    """`script`: the job's conditions after each GET (the last one repeats)."""

    def __init__(self, script: list[list[dict]] | None = None, pod_log: str = ""):
        super().__init__()
        self.jobs: dict[tuple[str, str], dict] = {}
        self.script = script or [[condition("Created", "TFJobCreated")]]
        self.pod_log = pod_log
        self._gets = 0
        # Hooks a test may set to play the operator: called with a created job; its conditions now; a pod's log.
        self.on_create = None
        self.conditions = None
        self.pod_log_for = None

    def kubeconfig(self, path, namespace: str = "vocdet") -> str:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "double", "cluster": {"server": self.url}}],
            "users": [{"name": "runner", "user": {"token": "test-token"}}],
            "contexts": [{"name": "double", "context": {"cluster": "double", "user": "runner", "namespace": namespace}}],
            "current-context": "double",
        }
        path.write_text(json.dumps(config))
        return str(path)

    def calls(self, method: str) -> list[Request]:
        return [request for request in self.requests if request.method == method]

    def respond(self, request: Request):
        jobs = _TFJOBS.match(request.path)
        if jobs:
            namespace, name = jobs.groups()
            if request.method == "POST" and name is None:
                job = request.json()
                key = (namespace, job["metadata"]["name"])
                if key in self.jobs:
                    return 409, _status(409, "AlreadyExists", f"tfjobs {key[1]} already exists"), "application/json"
                self.jobs[key] = job
                if self.on_create:
                    self.on_create(job)
                return 201, job, "application/json"
            key = (namespace, name)
            if key not in self.jobs:
                return 404, _status(404, "NotFound", f'tfjobs.kubeflow.org "{name}" not found'), "application/json"
            if request.method == "GET":
                if self.conditions:
                    step = self.conditions(self.jobs[key])
                else:
                    step = self.script[min(self._gets, len(self.script) - 1)]
                self._gets += 1
                self.jobs[key]["status"] = {"conditions": step}
                return 200, self.jobs[key], "application/json"
            if request.method == "DELETE":
                del self.jobs[key]
                return 200, _status(200, "", "", "Success"), "application/json"
        logs = _POD_LOG.match(request.path)
        if logs and request.method == "GET":
            return 200, self.pod_log_for(logs.group(2)) if self.pod_log_for else self.pod_log, "text/plain"
        return 404, _status(404, "NotFound", request.path), "application/json"


def _status(code: int, reason: str, message: str, status: str = "Failure") -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": status, "reason": reason, "message": message, "code": code}
