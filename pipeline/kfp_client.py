"""Submits and schedules the compiled pipeline on Kubeflow Pipelines (the kfp SDK's Client, API v2beta1).

- `submit`: uploads the compiled spec as a new version of the pipeline
  (created on first use) and starts a run in an experiment;
- `schedule`: the same upload, then a recurring run (KFP's cron trigger) for
  scheduled retraining: each run ingests the newest data span and, with
  `train.warm_start`, starts from the latest blessed model;
- `list_schedules` / `disable_schedule` manage the recurring runs.

Authentication is a bearer token read from an environment variable or a
file; it goes only into the Authorization header, never into logs, output or
the compiled spec.
"""

from __future__ import annotations

import dataclasses
import os
import time

DEFAULT_TOKEN_ENV = "KFP_TOKEN"


@dataclasses.dataclass
class Connection:
    host: str
    namespace: str | None = None
    token_env: str = DEFAULT_TOKEN_ENV
    token_file: str | None = None
    # The Kubernetes service account the run's pods use (k8s/rbac.yaml); empty: KFP's default.
    service_account: str = ""

    def token(self) -> str | None:
        if self.token_file:
            try:
                with open(self.token_file) as handle:
                    return handle.read().strip() or None
            except OSError as error:
                raise FileNotFoundError(f"{self.token_file}: cannot read the KFP token ({error.strerror})") from None
        return os.environ.get(self.token_env) or None

    def client(self):
        import kfp

        return kfp.Client(host=self.host, namespace=self.namespace or "kubeflow", existing_token=self.token())


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
    pipeline_id, version_id = upload(client, package_path, pipeline_name)
    experiment_id = client.create_experiment(experiment, namespace=connection.namespace).experiment_id
    return client, pipeline_id, version_id, experiment_id


def submit(connection: Connection, package_path: str, pipeline_name: str, experiment: str, parameters: dict) -> str:
    """Uploads the pipeline and starts one run; returns the run id."""
    client, pipeline_id, version_id, experiment_id = _upload_into_experiment(
        connection, package_path, pipeline_name, experiment
    )
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
    connection.client().disable_recurring_run(recurring_run_id)
