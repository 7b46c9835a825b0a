"""A local HTTP test double of the Kubeflow Pipelines v2beta1 REST API.

It answers the calls the kfp SDK's Client makes for upload, experiments,
runs and recurring runs with minimal valid JSON, and records every request
(method, path, query, headers, body) for the tests to assert on.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class KfpApiDouble:
    def __init__(self):
        self.requests: list[Request] = []
        self.pipelines: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command,
                    url.path,
                    urllib.parse.parse_qs(url.query),
                    {key.lower(): value for key, value in self.headers.items()},
                    self.rfile.read(length),
                )
                double.requests.append(request)
                status, payload = double.respond(request)
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "KfpApiDouble":
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

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
