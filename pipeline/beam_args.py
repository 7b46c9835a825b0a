"""Beam's command-line flags for ExampleGen, StatisticsGen and Transform, built from the config's `beam` section.

One function, `pipeline_args`, used by the local runner (through `PipelineConfig.beam_pipeline_args`) and
by the Kubeflow compiler (`on_cluster=True`), so a runner is configured in one place:

- `direct`: Beam's DirectRunner (FnApiRunner) in the process that runs the node;
- `portable`: a Beam job service (Flink's job server on the cluster, `k8s/flink/`; Beam's own Python
  job service in the tests), whose SDK workers run in a worker pool (EXTERNAL), in Docker (DOCKER, our
  image), or as a local process (PROCESS);
- `dataflow`: Google Cloud Dataflow, with our image as the SDK container.

Example:

    >>> from vocdet.pipeline.config import BeamConfig
    >>> pipeline_args(BeamConfig(runner="portable", job_endpoint="localhost:8099"))
    ['--runner=PortableRunner', '--job_endpoint=localhost:8099', '--environment_type=EXTERNAL', \
'--environment_config=localhost:50000']
"""

from __future__ import annotations

import typing

if typing.TYPE_CHECKING:
    from vocdet.pipeline.config import BeamConfig

BEAM_RUNNERS = ("direct", "portable", "dataflow")
DIRECT_RUNNING_MODES = ("in_memory", "multi_threading", "multi_processing")
ENVIRONMENT_TYPES = ("EXTERNAL", "DOCKER", "PROCESS", "LOOPBACK")
# The worker pool sidecar's address, seen from the Flink task manager it runs beside (k8s/flink/).
DEFAULT_WORKER_POOL = "localhost:50000"
# The flags the section's fields set; `beam.extra_args` may not set them again.
OWNED_FLAGS = {
    "--runner": "beam.runner",
    "--direct_running_mode": "beam.direct_running_mode",
    "--direct_num_workers": "beam.direct_num_workers",
    "--job_endpoint": "beam.job_endpoint",
    "--environment_type": "beam.environment_type",
    "--environment_config": "beam.environment_config",
    "--artifact_endpoint": "beam.artifact_endpoint",
    "--parallelism": "beam.parallelism",
    "--project": "beam.project",
    "--region": "beam.region",
    "--temp_location": "beam.temp_location",
    "--sdk_container_image": "kubeflow.image",
}


def pipeline_args(beam: BeamConfig, *, image: str = "", on_cluster: bool = False) -> list[str]:
    """The Beam flags for `beam`; `image` is the pipeline image (DOCKER environment, Dataflow's SDK container).

    `on_cluster` (a Kubeflow task) only changes the DirectRunner's default: all of the task's cores
    (multi_processing) instead of one in-memory worker.
    """
    if beam.runner == "direct":
        mode = beam.direct_running_mode or ("multi_processing" if on_cluster else "in_memory")
        args = [f"--direct_running_mode={mode}"]
        if mode != "in_memory":
            # 0: one worker per core. In-memory runs one worker whatever the number (Beam warns otherwise).
            args.append(f"--direct_num_workers={beam.direct_num_workers}")
    elif beam.runner == "portable":
        args = ["--runner=PortableRunner", f"--job_endpoint={beam.job_endpoint}", f"--environment_type={beam.environment_type}"]
        config = beam.environment_config
        if not config and beam.environment_type == "EXTERNAL":
            config = DEFAULT_WORKER_POOL
        elif not config and beam.environment_type == "DOCKER":
            if not image:
                raise ValueError("beam.environment_type DOCKER needs an image: set beam.environment_config or kubeflow.image")
            config = image
        if config:
            args.append(f"--environment_config={config}")
        if beam.artifact_endpoint:
            args.append(f"--artifact_endpoint={beam.artifact_endpoint}")
        if beam.parallelism:
            args.append(f"--parallelism={beam.parallelism}")
    elif beam.runner == "dataflow":
        if not image:
            raise ValueError("beam.runner dataflow runs the pipeline image on its workers: set kubeflow.image (--image)")
        args = [
            "--runner=DataflowRunner",
            f"--project={beam.project}",
            f"--region={beam.region}",
            f"--temp_location={beam.temp_location}",
            f"--sdk_container_image={image}",
            # The image has Beam installed: nothing to stage.
            "--sdk_location=container",
        ]
    else:
        raise ValueError(f"beam.runner must be one of {BEAM_RUNNERS}, got {beam.runner!r}")
    return args + list(beam.extra_args)


def validate(beam: BeamConfig) -> None:
    """The section's own checks (plain Python, as every config section's `validate`)."""
    if beam.runner not in BEAM_RUNNERS:
        raise ValueError(f"beam.runner must be one of {', '.join(BEAM_RUNNERS)}, got {beam.runner!r}")
    if beam.direct_running_mode and beam.direct_running_mode not in DIRECT_RUNNING_MODES:
        raise ValueError(
            f"beam.direct_running_mode must be one of {', '.join(DIRECT_RUNNING_MODES)} (or empty), "
            f"got {beam.direct_running_mode!r}"
        )
    if beam.direct_num_workers < 0 or beam.parallelism < 0:
        raise ValueError("beam.direct_num_workers and beam.parallelism must be >= 0 (0: the runner's default)")
    if beam.environment_type not in ENVIRONMENT_TYPES:
        raise ValueError(f"beam.environment_type must be one of {', '.join(ENVIRONMENT_TYPES)}, got {beam.environment_type!r}")
    if beam.runner == "portable":
        if not beam.job_endpoint:
            raise ValueError("beam.runner portable needs beam.job_endpoint (host:port of the Beam job service)")
        if beam.environment_type == "PROCESS" and not beam.environment_config:
            raise ValueError("beam.environment_type PROCESS needs beam.environment_config (the worker command, as JSON)")
    if beam.runner == "dataflow":
        missing = [name for name in ("project", "region", "temp_location") if not getattr(beam, name)]
        if missing:
            raise ValueError(f"beam.runner dataflow needs {', '.join('beam.' + name for name in missing)}")
        if not beam.temp_location.startswith("gs://"):
            raise ValueError(f"beam.temp_location must be a gs:// URI for Dataflow, got {beam.temp_location!r}")
    for flag in beam.extra_args:
        name = flag.split("=", 1)[0]
        if not name.startswith("--"):
            raise ValueError(f"beam.extra_args: {flag!r} is not a --flag=value")
        if name in OWNED_FLAGS:
            raise ValueError(f"beam.extra_args: {name} is set by {OWNED_FLAGS[name]}; set it there")
