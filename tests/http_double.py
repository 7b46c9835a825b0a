"""A local HTTP server for API test doubles: it records every request and answers through `respond`.

The Kubeflow Pipelines double (`kfp_api_double`) and the Kubernetes double (`k8s_api_double`) each
subclass it with the routes of their API; the server, the recording and the reply live here once.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict  # names in lower case
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class HttpApiDouble:
    """Serves on a free localhost port from `with` to its end; `url` is its address.

    A subclass's `respond(request)` returns (status, payload) or (status, payload, content type):
    a str payload is sent as it is, anything else as JSON (the default content type).
    """

    def __init__(self):
        self.requests: list[Request] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                headers = {key.lower(): value for key, value in self.headers.items()}
                request = Request(self.command, url.path, urllib.parse.parse_qs(url.query), headers, self.rfile.read(length))
                double.requests.append(request)
                status, payload, *content_type = double.respond(request)
                body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type[0] if content_type else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def respond(self, request: Request) -> tuple:
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
