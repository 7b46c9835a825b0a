"""A local HTTP test double of the Kubeflow Pipelines v2beta1 REST API.

It answers the calls the kfp SDK's Client makes for upload, experiments,
runs and recurring runs with minimal valid JSON, and records every request
(method, path, query, headers, body) for the tests to assert on.
"""

from __future__ import annotations

import json
import re

from tests.http_double import HttpApiDouble, Request


class KfpApiDouble(HttpApiDouble):
    def __init__(self):
        super().__init__()
        self.pipelines: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}

    def calls(self, method: str, pattern: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]

    def respond(self, request: Request) -> tuple[int, dict]:
        api = "/apis/v2beta1"
        path, method = request.path, request.method
        if path == f"{api}/healthz":
            return 200, {"multi_user": False}
        if path == f"{api}/pipelines" and method == "GET":
            return 200, self._filtered(request, "pipelines", self.pipelines.values())
        if path == f"{api}/pipelines/upload" and method == "POST":
            pipeline = {"pipeline_id": f"pipeline-{len(self.pipelines) + 1}", "display_name": request.query["name"][0]}
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            return 200, pipeline
        if path == f"{api}/pipelines/upload_version" and method == "POST":
            pipeline_id = request.query["pipelineid"][0]
            return 200, {
                "pipeline_id": pipeline_id,
                "pipeline_version_id": f"version-{len(self.calls('POST', '.*/upload_version'))}",
                "display_name": request.query["name"][0],
            }
        if path == f"{api}/experiments" and method == "GET":
            return 200, self._filtered(request, "experiments", self.experiments.values())
        if path == f"{api}/experiments" and method == "POST":
            experiment = {**request.json(), "experiment_id": f"experiment-{len(self.experiments) + 1}"}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if path == f"{api}/runs" and method == "POST":
            return 200, {**request.json(), "run_id": "run-1", "state": "PENDING"}
        if path == f"{api}/recurringruns" and method == "POST":
            run = {**request.json(), "recurring_run_id": f"recurring-{len(self.recurring_runs) + 1}", "status": "ENABLED"}
            self.recurring_runs[run["recurring_run_id"]] = run
            return 200, run
        if path == f"{api}/recurringruns" and method == "GET":
            wanted = request.query.get("experiment_id", [None])[0]
            runs = [run for run in self.recurring_runs.values() if wanted in (None, run.get("experiment_id"))]
            return 200, {"recurringRuns": runs, "total_size": len(runs)}  # the API's JSON name
        match = re.fullmatch(rf"{api}/recurringruns/([^/:]+):disable", path)
        if match and method == "POST":
            self.recurring_runs[match.group(1)]["status"] = "DISABLED"
            return 200, {}
        return 404, {"error": f"test double: no route for {method} {path}"}

    @staticmethod
    def _filtered(request: Request, key: str, items) -> dict:
        """`{key: [items whose display_name equals the filter's string value]}`, or {} for none."""
        wanted = None
        if "filter" in request.query:
            predicates = json.loads(request.query["filter"][0]).get("predicates", [])
            wanted = {p.get("string_value", p.get("stringValue")) for p in predicates}
        found = [item for item in items if wanted is None or item["display_name"] in wanted]
        return {key: found, "total_size": len(found)} if found else {}
