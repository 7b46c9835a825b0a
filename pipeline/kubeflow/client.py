"""Submits and schedules the compiled pipeline on Kubeflow Pipelines (the kfp SDK's Client, API v2beta1).

- `submit`: uploads the compiled spec as a new version of the pipeline
  (created on first use) and starts a run in an experiment;
- `schedule`: the same upload, then a recurring run (KFP's cron trigger) for
  scheduled retraining: each run ingests the newest data span and, with
  `train.warm_start`, starts from the latest blessed model;
- `list_schedules` / `disable_schedule` manage the recurring runs.

Authentication is a bearer token read from an environment variable or a
file; it goes only into the Authorization header, never into logs, output or
the compiled spec, and never over plain http unless asked (`insecure`) or to
the in-cluster service.

An API that cannot be reached, or that refuses the token, is one
`KfpConnectionError` naming the host, at the first request: the kfp SDK's own
health check would retry five times over 25 s and then say only "Failed
getting healthz endpoint after 5 attempts".
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import urllib.parse

from vocdet.components.compat import kfp as kfp_compat

DEFAULT_TOKEN_ENV = "KFP_TOKEN"
# KFP's API service (`ml-pipeline` in the `kubeflow` namespace) as pods reach it: plain http inside the cluster
# is KFP's documented in-cluster endpoint, so the token may go there without --insecure.
IN_CLUSTER_HOSTS = (
    "ml-pipeline",
    "ml-pipeline.kubeflow",
    "ml-pipeline.kubeflow.svc",
    "ml-pipeline.kubeflow.svc.cluster.local",
)


class KfpConnectionError(Exception):
    """The Kubeflow Pipelines API could not be reached, or refused the request; the message names the host."""


@dataclasses.dataclass
class Connection:
    host: str
    namespace: str | None = None
    token_env: str = DEFAULT_TOKEN_ENV
    token_file: str | None = None
    # The Kubernetes service account the run's pods use (k8s/rbac.yaml); empty: KFP's default.
    service_account: str = ""
    # Allow a plain http:// host outside the cluster (the token then travels unencrypted).
    insecure: bool = False

    def __post_init__(self):
        check_transport(self.host, self.insecure)

    def token(self) -> str | None:
        if self.token_file:
            try:
                with open(self.token_file) as handle:
                    return handle.read().strip() or None
            except OSError as error:
                raise FileNotFoundError(f"{self.token_file}: cannot read the KFP token ({error.strerror})") from None
        return os.environ.get(self.token_env) or None

    def client(self):
        """The kfp SDK's Client, after one health check that fails fast (see the module's docstring)."""
        Client = kfp_compat.fail_fast_client_class()
        with self.api_errors():
            client = Client(host=self.host, namespace=self.namespace or "kubeflow", existing_token=self.token())
            client.get_kfp_healthz()  # the constructor skips it when a namespace is set
        return client

    @contextlib.contextmanager
    def api_errors(self):
        """The kfp SDK's network and HTTP errors as one KfpConnectionError naming the host and what to do."""
        import kfp_server_api
        import urllib3

        try:
            yield
        except kfp_server_api.ApiException as error:
            raise KfpConnectionError(self._refused(error.status, error.reason)) from error
        except urllib3.exceptions.HTTPError as error:
            reason = getattr(error, "reason", None) or error
            detail = str(reason).split(": ", 1)[-1] if ": " in str(reason) else str(reason)
            raise KfpConnectionError(
                f"{self.host}: cannot reach the Kubeflow Pipelines API ({detail}); check --host (e.g. "
                "https://kubeflow.example.com/pipeline) and that this machine can reach it (VPN, "
                "or kubectl port-forward -n kubeflow svc/ml-pipeline 8888:8888 and --host http://localhost:8888 --insecure)"
            ) from error

    def _refused(self, status: int, reason: str | None) -> str:
        answer = f"{self.host}: the Kubeflow Pipelines API answered HTTP {status} {reason or ''}".rstrip()
        source = f"--token-file {self.token_file}" if self.token_file else f"${self.token_env}"
        if status == 401:
            if self.token() is None:
                return f"{answer}; no token was sent: set ${self.token_env} or pass --token-file"
            return f"{answer}; the token in {source} was refused: get a fresh one and retry"
        if status == 403:
            namespace = self.namespace or "kubeflow"
            return f"{answer}; the token's identity may not use namespace {namespace}: check --namespace and the profile's contributors"
        if status == 404:
            return f"{answer}; check that --host is the pipelines API endpoint (e.g. https://kubeflow.example.com/pipeline)"
        return f"{answer}; the API is up but failing: retry later, or look at the ml-pipeline pods' logs"


def check_transport(host: str, insecure: bool) -> None:
    """Refuses plain http outside the cluster unless `insecure`: the bearer token would travel in clear text."""
    parsed = urllib.parse.urlsplit(host if "://" in host else f"https://{host}")
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"--host {host}: expected an http(s):// URL, e.g. https://kubeflow.example.com/pipeline")
    if parsed.scheme == "http" and not insecure and parsed.hostname not in IN_CLUSTER_HOSTS:
        raise ValueError(
            f"--host {host}: plain http would send the bearer token unencrypted; use https://, "
            "or pass --insecure if the network is trusted (e.g. a kubectl port-forward to localhost)"
        )


def kfp_cron(expression: str) -> str:
    """KFP's cron format (with a leading seconds field) from a standard 5-field cron expression."""
    fields = expression.split()
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) == 6:
        return expression
    raise ValueError(f"cron expression {expression!r}: expected 5 fields (minute hour day month weekday)")


def upload(client, package_path: str, pipeline_name: str) -> tuple[str, str]:
    """Uploads the package as a new version of `pipeline_name`; returns (pipeline id, version id)."""
    version_name = f"{pipeline_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(package_path, pipeline_name=pipeline_name)
        pipeline_id = pipeline.pipeline_id
    version = client.upload_pipeline_version(package_path, pipeline_version_name=version_name, pipeline_id=pipeline_id)
    return pipeline_id, version.pipeline_version_id


def _upload_into_experiment(connection: Connection, package_path: str, pipeline_name: str, experiment: str):
    """(client, pipeline id, version id, experiment id): what a run or a recurring run refers to."""
    client = connection.client()
    with connection.api_errors():
        pipeline_id, version_id = upload(client, package_path, pipeline_name)
        experiment_id = client.create_experiment(experiment, namespace=connection.namespace).experiment_id
    return client, pipeline_id, version_id, experiment_id


def submit(connection: Connection, package_path: str, pipeline_name: str, experiment: str, parameters: dict) -> str:
    """Uploads the pipeline and starts one run; returns the run id."""
    client, pipeline_id, version_id, experiment_id = _upload_into_experiment(
        connection, package_path, pipeline_name, experiment
    )
    with connection.api_errors():
        run = client.run_pipeline(
            experiment_id=experiment_id,
            job_name=f"{pipeline_name}-{time.strftime('%Y%m%d-%H%M%S')}",
            pipeline_id=pipeline_id,
            version_id=version_id,
            params=parameters,
            service_account=connection.service_account or None,
        )
    return run.run_id


def schedule(
    connection: Connection,
    package_path: str,
    pipeline_name: str,
    experiment: str,
    parameters: dict,
    cron: str,
    max_concurrency: int,
    catchup: bool,
) -> str:
    """Uploads the pipeline and creates a recurring run; returns its id."""
    if max_concurrency < 1:
        raise ValueError("--max-concurrency must be at least 1")
    cron = kfp_cron(cron)
    client, pipeline_id, version_id, experiment_id = _upload_into_experiment(
        connection, package_path, pipeline_name, experiment
    )
    with connection.api_errors():
        recurring_run = client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=f"{pipeline_name}-retraining",
            description=f"scheduled retraining of {pipeline_name} ({cron})",
            cron_expression=cron,
            max_concurrency=max_concurrency,
            no_catchup=not catchup,
            pipeline_id=pipeline_id,
            version_id=version_id,
            params=parameters,
            enabled=True,
            service_account=connection.service_account or None,
        )
    return recurring_run.recurring_run_id


def list_schedules(connection: Connection, experiment: str) -> list[dict]:
    """The recurring runs of `experiment`: id, name, cron, status."""
    client = connection.client()
    with connection.api_errors():
        experiment_id = client.get_experiment(experiment_name=experiment, namespace=connection.namespace).experiment_id
        response = client.list_recurring_runs(experiment_id=experiment_id, page_size=100)
    return [
        {
            "id": run.recurring_run_id,
            "name": run.display_name,
            "cron": run.trigger.cron_schedule.cron if run.trigger and run.trigger.cron_schedule else "",
            "status": run.status,
        }
        for run in response.recurring_runs or []
    ]


def disable_schedule(connection: Connection, recurring_run_id: str) -> None:
    client = connection.client()
    with connection.api_errors():
        client.disable_recurring_run(recurring_run_id)
