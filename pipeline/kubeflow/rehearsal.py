"""Runs a compiled Kubeflow package on this machine: `vocdet run --package pipeline.yaml`.

A rehearsal before `vocdet submit`, and the proof that the file runs. It reads the YAML KFP would
read (the pipeline spec and kfp-kubernetes' platform config), resolves the run's parameters and
KFP's placeholders as KFP's driver does, and runs each task's own command and arguments, in
dependency order, as its own process in this Python environment. Two things stand in for the
cluster, through `pipeline.kubeflow.node`'s environment variables:

- the metadata store: the one `--metadata URL` names (a local PostgreSQL, say), or an SQLite file
  (`<output>/metadata.sqlite`), in place of the package's `kubeflow.metadata`, whose host is the
  cluster's; the password, as on the cluster, from `$VOCDET_METADATA_PASSWORD`;
- the PVC: each `pvcMount` of a task is a local folder, `<output>/volumes/<claim name>`.

Each task's log goes to `<output>/logs/<run id>/<task>.log`; progress is one line a task.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import uuid

import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from vocdet.pipeline import config as config_lib
from vocdet.pipeline.kubeflow import node as kubeflow_node

_INPUT_PARAMETER = re.compile(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}")
_OUTPUT_PATH = re.compile(r"\{\{\$\.outputs\.artifacts\['([^']+)'\]\.path\}\}")
# Where the rehearsal keeps what KFP's launcher would upload: <output>/kfp_outputs/<run id>/<task>/.
KFP_OUTPUTS_DIR = "kfp_outputs"
OUTPUT_METADATA_FILE = "output_metadata.json"
_PLACEHOLDER = re.compile(r"\{\{\$[^}]*\}\}")


class PackageError(Exception):
    """A package this runner cannot run, or a task that failed: one line for the user."""


@dataclasses.dataclass
class Package:
    """A compiled KFP package: its spec and the Kubernetes config of each executor."""

    path: str
    spec: pipeline_spec_pb2.PipelineSpec
    kubernetes: dict[str, kubernetes_executor_config_pb2.KubernetesExecutorConfig]

    @classmethod
    def read(cls, path: str) -> "Package":
        try:
            with open(path) as handle:
                documents = [document for document in yaml.safe_load_all(handle) if document]
        except (OSError, yaml.YAMLError) as error:
            raise PackageError(f"{path}: cannot read the compiled pipeline ({error})") from None
        if not documents or "root" not in documents[0]:
            raise PackageError(f"{path}: not a KFP pipeline spec (no root DAG)")
        spec = json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=True)
        kubernetes = {}
        if len(documents) > 1:
            platform = json_format.ParseDict(documents[1], pipeline_spec_pb2.PlatformSpec())
            if "kubernetes" in platform.platforms:
                for label, body in platform.platforms["kubernetes"].deployment_spec.executors.items():
                    kubernetes[label] = json_format.ParseDict(
                        json_format.MessageToDict(body), kubernetes_executor_config_pb2.KubernetesExecutorConfig()
                    )
        return cls(path, spec, kubernetes)

    def executors(self) -> pipeline_spec_pb2.PipelineDeploymentConfig:
        return json_format.ParseDict(
            json_format.MessageToDict(self.spec.deployment_spec), pipeline_spec_pb2.PipelineDeploymentConfig()
        )

    def executor_label(self, task_name: str) -> str:
        return self.spec.components[self.spec.root.dag.tasks[task_name].component_ref.name].executor_label

    def task_order(self) -> list[str]:
        """The root DAG's tasks, each after the tasks it depends on."""
        tasks = self.spec.root.dag.tasks
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in order:
                return
            if name in visiting:
                raise PackageError(f"{self.path}: the DAG has a cycle through task {name!r}")
            visiting.add(name)
            for upstream in tasks[name].dependent_tasks:
                visit(upstream)
            order.append(name)

        for name in sorted(tasks):
            visit(name)
        return order

    def parameter_defaults(self) -> dict[str, str]:
        defaults = {}
        for name, definition in self.spec.root.input_definitions.parameters.items():
            if definition.HasField("default_value"):
                defaults[name] = _parameter_text(json_format.MessageToDict(definition.default_value))
        return defaults

    def mount_paths(self) -> dict[str, str]:
        """Mount path -> PVC claim name, over every task."""
        return {
            mount.mount_path: mount.constant or mount.component_input_parameter
            for config in self.kubernetes.values()
            for mount in config.pvc_mount
        }


@dataclasses.dataclass
class TaskResult:
    name: str
    state: str
    seconds: float
    log: str
    # Wall-clock start and end (time.time()), to see which tasks ran at the same time.
    started: float = 0.0
    ended: float = 0.0


def local_mounts(package: Package, output_dir: str) -> dict[str, str]:
    """Mount path -> the local folder standing in for its PVC."""
    return {
        mount_path: os.path.abspath(os.path.join(output_dir, "volumes", claim))
        for mount_path, claim in package.mount_paths().items()
    }


def run_package(
    package: Package,
    output_dir: str,
    parameters: dict[str, str] | None = None,
    progress=print,
    metadata_url: str | None = None,
    parallelism: int = 1,
) -> tuple[str, list[TaskResult]]:
    """Runs every task of `package` once; returns (run id, results in the order the tasks ended).

    `metadata_url` is the store the tasks use (default: `store_url(output_dir)`, an SQLite file). With
    `parallelism` > 1, as Argo does, every task whose upstream tasks have succeeded starts at once, up
    to that many at a time; after a failure no new task starts, the running ones finish, and the
    first failure is raised.
    """
    run_id = str(uuid.uuid4())
    run_parameters = {**package.parameter_defaults(), **(parameters or {})}
    undefined = set(parameters or {}) - set(package.spec.root.input_definitions.parameters)
    if undefined:
        raise PackageError(f"{package.path}: the pipeline has no parameter {sorted(undefined)[0]!r}")
    mounts = local_mounts(package, output_dir)
    for folder in mounts.values():
        os.makedirs(folder, exist_ok=True)
    log_dir = os.path.join(output_dir, "logs", run_id)
    os.makedirs(log_dir, exist_ok=True)
    environment = {
        **os.environ,
        # The task's `python` is this environment's.
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
        kubeflow_node.METADATA_URL_ENV: metadata_url or store_url(output_dir),
        kubeflow_node.LOCAL_MOUNTS_ENV: json.dumps(mounts),
    }
    executors = package.executors().executors
    order = package.task_order()
    tasks = package.spec.root.dag.tasks
    context = {"pipeline_job_uuid": run_id, "pipeline_job_name": f"{package.spec.pipeline_info.name}-{run_id[:8]}"}

    def start(name: str) -> tuple[subprocess.Popen, TaskResult, object]:
        task = tasks[name]
        container = executors[package.executor_label(name)].container
        values = _task_inputs(task, run_parameters)
        launcher = _launcher_outputs(package, name, os.path.join(output_dir, KFP_OUTPUTS_DIR, run_id, task.task_info.name or name))
        command = [_substitute(part, values, context, name, launcher) for part in [*container.command, *container.args]]
        env = {**environment, **{variable.name: variable.value for variable in container.env}}
        display = task.task_info.name or name
        result = TaskResult(display, "RUNNING", 0.0, os.path.join(log_dir, f"{display}.log"), started=time.time())
        progress(f"[{order.index(name) + 1}/{len(order)}] {display} ...")
        log = open(result.log, "w")
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), result, log

    pending = list(order)
    running: dict[str, tuple[subprocess.Popen, TaskResult, object]] = {}
    done: set[str] = set()
    results: list[TaskResult] = []
    failure: str | None = None
    while pending or running:
        if failure is None:
            ready = [name for name in pending if set(tasks[name].dependent_tasks) <= done]
            for name in ready[: max(1, parallelism) - len(running)]:
                pending.remove(name)
                running[name] = start(name)
        if not running:
            break  # a failure stopped the rest
        finished = _wait_any(running)
        process, result, log = running.pop(finished)
        log.close()
        result.ended = time.time()
        result.seconds = result.ended - result.started
        result.state = _last_state(result.log)
        results.append(result)
        index = f"[{order.index(finished) + 1}/{len(order)}]"
        if process.returncode != 0:
            progress(f"{index} {result.name} failed in {result.seconds:.0f}s")
            failure = failure or (
                f"task {result.name} failed (exit {process.returncode}): {_last_error(result.log)} (log: {result.log})"
            )
            continue
        done.add(finished)
        progress(f"{index} {result.name} {result.state.lower()} in {result.seconds:.0f}s")
    if failure:
        raise PackageError(failure)
    return run_id, results


def _wait_any(running: dict) -> str:
    """The name of a running task that has ended (polling: the tasks are minutes long)."""
    while True:
        for name, (process, _, _) in running.items():
            if process.poll() is not None:
                return name
        time.sleep(0.2)


# Tasks at once against a database server, unless told otherwise (Argo runs every ready task; the
# demo package's widest level is three: StatisticsGen beside the span resolver, Evaluator beside ServingCheck).
DEFAULT_PARALLELISM = 4
SQLITE_SEQUENTIAL = (
    "SQLite takes one writer at a time and its file lock is not safe across the processes of parallel tasks: "
    "tasks run one by one; --metadata mysql://... runs them side by side, as the cluster does"
)


def parallelism_for(url: str, asked: int | None) -> tuple[int, str | None]:
    """(tasks at once, why fewer than asked) for a store: SQLite is sequential, a server runs `asked` (default 4)."""
    if url.startswith("sqlite:"):
        return 1, None if asked == 1 else SQLITE_SEQUENTIAL
    if asked is not None and asked < 1:
        raise PackageError(f"--parallelism must be at least 1, got {asked}")
    return asked or DEFAULT_PARALLELISM, None


def store_url(output_dir: str) -> str:
    """The rehearsal's default store: `<output>/metadata.sqlite`, as `vocdet run` keeps it."""
    return f"sqlite://{os.path.abspath(config_lib.metadata_path(output_dir))}"


def ui_lines(package: Package, output_dir: str, run_id: str) -> list[str]:
    """What KFP's UI would show for the run: each task's scalar metrics, and where each report is."""
    lines = []
    root = os.path.join(output_dir, KFP_OUTPUTS_DIR, run_id)
    for name in package.task_order():
        task = package.spec.root.dag.tasks[name]
        folder = os.path.join(root, task.task_info.name or name)
        metadata_file = os.path.join(folder, OUTPUT_METADATA_FILE)
        if not os.path.exists(metadata_file):
            continue
        with open(metadata_file) as handle:
            recorded = json.load(handle).get("artifacts", {})
        component = package.spec.components[task.component_ref.name]
        for output, spec in component.output_definitions.artifacts.items():
            kind = spec.artifact_type.schema_title
            values = (recorded.get(output, {}).get("artifacts") or [{}])[0].get("metadata")
            if values:
                shown = ", ".join(f"{key} {value:.4g}" for key, value in sorted(values.items()))
                lines.append(f"{task.task_info.name} {output} ({kind}): {shown}")
            else:
                lines.append(f"{task.task_info.name} {output} ({kind}): {os.path.join(folder, output)}")
    return lines


def _parameter_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _task_inputs(task, run_parameters: dict[str, str]) -> dict[str, str]:
    """The task's input parameters as KFP's driver resolves them: run parameters and constants."""
    values = {}
    for name, spec in task.inputs.parameters.items():
        if spec.component_input_parameter:
            values[name] = run_parameters[spec.component_input_parameter]
        elif spec.HasField("runtime_value"):
            values[name] = _parameter_text(json_format.MessageToDict(spec.runtime_value.constant))
        else:
            raise PackageError(f"task {task.task_info.name}: input {name!r} comes from another task's output, "
                               "which vocdet's packages never use")
    return values


def _launcher_outputs(package: Package, task_name: str, folder: str) -> dict:
    """KFP's launcher's part for one task's output artefacts: their local paths, and the executor input.

    As `launcher_v2.go` does (see `pipeline.kubeflow.outputs`): each declared artefact gets a local
    path, here `<folder>/<name>`, and the executor input names the output-metadata file, here
    `<folder>/output_metadata.json`, beside the artefact files the launcher would upload.
    """
    component = package.spec.components[package.spec.root.dag.tasks[task_name].component_ref.name]
    artifacts = component.output_definitions.artifacts
    paths = {name: os.path.abspath(os.path.join(folder, name)) for name in artifacts}
    executor_input = {
        "outputs": {
            "artifacts": {
                name: {"artifacts": [{"name": name, "type": {"schemaTitle": spec.artifact_type.schema_title},
                                      "uri": f"file://{paths[name]}"}]}
                for name, spec in artifacts.items()
            },
            "outputFile": os.path.abspath(os.path.join(folder, OUTPUT_METADATA_FILE)),
        }
    }
    return {"paths": paths, "executor_input": json.dumps(executor_input)}


def _substitute(text: str, inputs: dict[str, str], context: dict[str, str], task: str, launcher: dict | None = None) -> str:
    text = _INPUT_PARAMETER.sub(lambda match: inputs[match.group(1)], text)
    if launcher is not None:
        text = _OUTPUT_PATH.sub(lambda match: launcher["paths"][match.group(1)], text)
        text = text.replace("{{$}}", launcher["executor_input"])
    for key, value in context.items():
        text = text.replace("{{$.%s}}" % key, value)
    leftover = _PLACEHOLDER.search(text)
    if leftover:
        raise PackageError(f"task {task}: KFP placeholder {leftover.group(0)} is not supported by the local runner")
    return text


def _last_state(log_path: str) -> str:
    with open(log_path, errors="replace") as handle:
        states = [line[len(kubeflow_node.STATE_LINE_PREFIX):].strip() for line in handle
                  if line.startswith(kubeflow_node.STATE_LINE_PREFIX)]
    return states[-1] if states else "FAILED"


def _last_error(log_path: str) -> str:
    """The last line of the task's log that names an error: a Python exception, or a line logged as an ERROR."""
    with open(log_path, errors="replace") as handle:
        lines = [line.strip() for line in handle if line.strip()]
    errors = [
        line.split(" ERROR ", 1)[-1] for line in lines
        if re.match(r"^[\w.]+(Error|Exception)\b", line) or re.match(r"^\S+ \S+ ERROR ", line)
    ]
    return (errors or lines or ["no output"])[-1][:400]


def local_data_root(package: Package, output_dir: str, data_dirs: list[str], parameter: str, sample_dir: str) -> str:
    """The local folder for the package's data-root parameter.

    `--data` folders as `vocdet run` lays them out (`data.root`: a `span-<N>/` root as it is);
    without them, the parameter's default on the stand-in PVC, filled with the generated sample
    (made in `sample_dir`) if empty.
    """
    from vocdet.pipeline.data import root as data_root
    from vocdet.pipeline.data import layout, sample

    if data_dirs:
        if len(data_dirs) == 1 and data_root.span_folders(data_dirs[0]):
            data_root.newest_span(data_dirs[0])  # checked as `vocdet run --spans` checks it
            return os.path.abspath(data_dirs[0])
        return data_root.link_data_root(data_dirs, output_dir).root
    default = package.parameter_defaults().get(parameter, "")
    root = default
    for mount_path, folder in local_mounts(package, output_dir).items():
        if default.startswith(mount_path.rstrip("/") + "/"):
            root = folder + default[len(mount_path.rstrip("/")):]
    if "://" in root or not root.startswith(os.path.abspath(output_dir)):
        raise PackageError(f"{package.path}: {parameter} defaults to {default!r}, not on the PVC; give --data")
    if not os.path.isdir(root) or not os.listdir(root):
        layout.make_data_root([data_root.generated_sample(sample_dir, sample.SampleSpec())], root)
        print(f"vocdet: the generated sample in {root} stands for the PVC's {default}", flush=True)
    return root
