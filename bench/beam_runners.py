"""ExampleGen + Transform on Beam's runners: DirectRunner (in_memory, multi_processing) against the portable runner.

The same generated VOC sample (default 200 images of about 500x375, `BENCH_BEAM_IMAGES`) goes through
ExampleGen, StatisticsGen, SchemaGen and Transform, exactly as the pipeline configures them, three
times in one run, with the flags `beam_args.pipeline_args` builds for
  - reference: `beam.runner: direct`, in_memory (the local default);
  - DirectRunner multi_processing, 2 workers;
  - `beam.runner: portable`: Beam's own Python job service and an EXTERNAL worker pool (both on
    this machine, loopback), the way a Flink job server and its worker-pool sidecars are used on a cluster.
    The local job service runs a job on one SDK worker (Beam 2.59's FnApiRunner reads no worker count on
    that path), so this row measures the portable path's overhead, not its parallelism.
Each component's time is read from ML Metadata (execution created -> published); the figure is
images/s over ExampleGen + Transform, and each runner's ratio to the reference.

`local_portable_services` and `run_data_pipeline` are shared with `tests/test_beam_portable.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator

NUM_IMAGES = int(os.environ.get("BENCH_BEAM_IMAGES", "200"))
DATA_COMPONENTS = ("FileBasedExampleGen", "StatisticsGen", "SchemaGen", "Transform")

# Beam's external worker pool servicer (what `python -m apache_beam.runners.worker.worker_pool_main` runs),
# bound to the loopback address: worker_pool_main itself binds every interface ([::]).
_WORKER_POOL = """
import time
import grpc
from apache_beam.portability.api import beam_fn_api_pb2_grpc
from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer
from apache_beam.utils import thread_pool_executor
server = grpc.server(thread_pool_executor.shared_unbounded_instance())
port = server.add_insecure_port("127.0.0.1:0")
beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(BeamFnExternalWorkerPoolServicer(use_process=True), server)
server.start()
print(port, flush=True)
while True:
    time.sleep(3600)
"""


@dataclasses.dataclass(frozen=True)
class PortableServices:
    job_endpoint: str
    worker_pool: str
    log_dir: str


def _stop(process: subprocess.Popen) -> None:
    """Stops a service started in its own session, and the SDK workers it started (same process group)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # workers left in the group after the leader exited


@contextlib.contextmanager
def local_portable_services(log_dir: str) -> Iterator[PortableServices]:
    """Beam's Python job service and an external worker pool on this machine; stopped on exit.

    The worker pool starts each SDK worker as `python -c ...`: this environment's python goes first on PATH.
    """
    os.makedirs(log_dir, exist_ok=True)
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    processes = []
    try:
        with open(os.path.join(log_dir, "worker-pool.log"), "w") as log:
            pool = subprocess.Popen(
                [sys.executable, "-c", _WORKER_POOL], env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                start_new_session=True,
            )  # fmt: skip
        processes.append(pool)
        pool_port = int(pool.stdout.readline().strip() or 0)
        if not pool_port:
            raise RuntimeError(f"the Beam worker pool did not start; see {log_dir}/worker-pool.log")
        port_file = os.path.join(log_dir, "job-service.port")
        with open(os.path.join(log_dir, "job-service.log"), "w") as log:
            job_service = subprocess.Popen(
                [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", "--port=0",
                 f"--port_file={port_file}"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        processes.append(job_service)
        deadline = time.monotonic() + 60
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if job_service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Beam's job service did not start; see {log_dir}/job-service.log")
            time.sleep(0.2)
        # The job service binds `localhost` (Beam's LocalJobServicer).
        job_port = int(open(port_file).read().strip())
        yield PortableServices(f"localhost:{job_port}", f"127.0.0.1:{pool_port}", log_dir)
    finally:
        for process in reversed(processes):
            _stop(process)


def run_data_pipeline(config, data_dir: str, beam_pipeline_args: list[str]) -> dict[str, object]:
    """ExampleGen, StatisticsGen, SchemaGen and Transform of `create_pipeline(config)` on the VOC folder
    `data_dir`, run with LocalDagRunner and `beam_pipeline_args`.

    Returns {"executions": {component id: its MLMD execution}, "uris": {output: artefact URI}}.
    """
    from ml_metadata.metadata_store import metadata_store
    from tfx import v1 as tfx

    from vocdet.pipeline.data.root import prepare_data_root
    from vocdet.pipeline.local import runner as local_runner
    from vocdet.pipeline.local.runner import metadata_config
    from vocdet.pipeline.pipeline import create_pipeline

    os.makedirs(config.output_dir, exist_ok=True)
    # The data root `vocdet run --data data_dir` builds (links to the folder, whatever its layout).
    config, data_root = prepare_data_root(config.with_overrides({"data": {"data_dirs": [data_dir]}}))
    full = create_pipeline(config, data_root, beam_pipeline_args=beam_pipeline_args)
    components = [component for component in full.components if component.id in DATA_COMPONENTS]
    for component in components:  # the pipeline's own components, cut loose from the Trainer's side
        for downstream in list(component.downstream_nodes):
            if downstream.id not in DATA_COMPONENTS:
                component.remove_downstream_node(downstream)
    with warnings.catch_warnings():
        # TFX warns that the components were defined for another pipeline object: they were, for the full one.
        warnings.filterwarnings("ignore", message="Component .* is not found from the registry")
        pipeline = tfx.dsl.Pipeline(
            pipeline_name=f"{config.pipeline_name}-data",
            pipeline_root=config.pipeline_root,
            components=components,
            enable_cache=False,
            metadata_connection_config=metadata_config(config),
            beam_pipeline_args=beam_pipeline_args,
        )
    with local_runner.tfx_argv():
        tfx.orchestration.LocalDagRunner().run(pipeline)
    store = metadata_store.MetadataStore(metadata_config(config))
    executions = {}
    for execution in store.get_executions():
        for context in store.get_contexts_by_execution(execution.id):
            if context.type == "node" and context.name.rsplit(".", 1)[-1] in DATA_COMPONENTS:
                executions[context.name.rsplit(".", 1)[-1]] = execution
    type_names = {artifact_type.id: artifact_type.name for artifact_type in store.get_artifact_types()}
    uris: dict[str, list[str]] = {}
    for artifact in sorted(store.get_artifacts(), key=lambda artifact: artifact.id):
        uris.setdefault(type_names[artifact.type_id], []).append(artifact.uri)
    artifacts = {
        "examples": next(uri for uri in uris["Examples"] if "/Transform/" not in uri),
        "transformed_examples": next(uri for uri in uris["Examples"] if "/Transform/" in uri),
        "schema": uris["Schema"][-1],
        "statistics": uris["ExampleStatistics"][-1],
        "transform_graph": uris["TransformGraph"][-1],
    }
    return {"executions": executions, "uris": artifacts}


def _seconds(execution) -> float:
    return (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000


def main() -> None:
    from vocdet.pipeline import beam_args
    from vocdet.pipeline import config as config_lib
    from vocdet.pipeline.data import sample as sample_data

    work = tempfile.mkdtemp(prefix="bench-beam-")
    try:
        spec = sample_data.SampleSpec(num_images=NUM_IMAGES, seed=1, min_size=375, max_size=500)
        sample_data.make_sample(work, spec)
        base = config_lib.load("demo")
        results = {}
        with local_portable_services(os.path.join(work, "services")) as services:
            runs = {
                "direct in_memory (reference)": {"runner": "direct", "direct_running_mode": "in_memory"},
                "direct multi_processing, 2 workers": {
                    "runner": "direct", "direct_running_mode": "multi_processing", "direct_num_workers": 2
                },
                "portable, local job service + worker pool": {
                    "runner": "portable", "job_endpoint": services.job_endpoint,
                    "environment_config": services.worker_pool,
                },
            }  # fmt: skip
            for name, beam in runs.items():
                config = base.with_overrides({"output_dir": os.path.join(work, f"out-{len(results)}"), "beam": beam})
                started = time.perf_counter()
                run = run_data_pipeline(config, work, beam_args.pipeline_args(config.beam))
                total = time.perf_counter() - started
                seconds = {component: _seconds(execution) for component, execution in run["executions"].items()}
                results[name] = (seconds, total)
            with open(os.path.join(services.log_dir, "worker-pool.log")) as log:
                sdk_workers = log.read().count("Starting worker with command")
        reference = None
        for name, (seconds, total) in results.items():
            data_seconds = seconds["FileBasedExampleGen"] + seconds["Transform"]
            rate = NUM_IMAGES / data_seconds
            reference = reference or rate
            print(
                f"beam_runners: {name:45s} ExampleGen {seconds['FileBasedExampleGen']:5.1f}s + Transform "
                f"{seconds['Transform']:5.1f}s = {rate:6.1f} images/s, ratio {rate / reference:.2f} "
                f"(StatisticsGen {seconds['StatisticsGen']:.1f}s; whole run {total:.0f}s)"
            )
        print(
            f"beam_runners: {NUM_IMAGES} images; the worker pool started {sdk_workers} SDK worker(s), one a Beam job: "
            "Beam's local job service runs each job on one SDK worker (it reads no worker count from the job's options)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
