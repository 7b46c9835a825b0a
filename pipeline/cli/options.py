"""The flags commands share, and the one way they become a `PipelineConfig` (preset -> YAML -> flags).

Each config `--flag` names one config field (`CONFIG_FLAGS`, `KUBEFLOW_FLAGS`); its type and its
default come from the dataclass, so no default is written twice.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from vocdet.pipeline import config as config_lib
from vocdet.pipeline.cli.errors import UsageError
from vocdet.pipeline.data import layout
from vocdet.pipeline.local import output_lock

# --flag -> (section, field) of PipelineConfig; types come from the dataclass.
CONFIG_FLAGS = {
    "epochs": ("train", "epochs"),
    "steps-per-epoch": ("train", "steps_per_epoch"),
    "batch-size": ("train", "batch_size_per_replica"),
    "learning-rate": ("train", "base_learning_rate"),
    "image-size": ("model", "image_size"),
    "backbone": ("model", "backbone"),
    "backbone-weights": ("model", "backbone_weights"),
    "bounding-box-format": ("model", "bounding_box_format"),
    "blessing-threshold": ("eval", "blessing_threshold"),
    "serving-dir": ("push", "serving_dir"),
}

# Flags of compile, submit and schedule -> (section, field); the cluster side of the config.
KUBEFLOW_FLAGS = {
    "image": ("kubeflow", "image"),
    "pipeline-root": ("kubeflow", "pipeline_root"),
    "data-root": ("kubeflow", "data_root"),
    "trainer-gpus": ("kubeflow", "trainer_gpus"),
}


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        action="append",
        help="dataset folder, recognised from its layout (VOCdevkit, CVAT, Label Studio, LabelImg, Roboflow, "
        "tfds VOC build); repeat it to combine (e.g. VOC2007 and VOC2012). Default: the generated sample",
    )
    parser.add_argument("--spans", action="store_true", help="--data is one root laid out as span-<N>/...; use the newest span")
    parser.add_argument("--labels", help="class names, one a line in id order (default: config data.class_names)")


def add_config_flags(parser: argparse.ArgumentParser, preset: str) -> None:
    defaults = config_lib.PRESETS[preset]()
    for flag, (section, field) in CONFIG_FLAGS.items():
        value = getattr(getattr(defaults, section), field)
        field_type = type(value)
        parser.add_argument(
            f"--{flag}",
            type=field_type if field_type in (int, float) else str,
            help=f"config {section}.{field} ({preset} preset: {value!r})",
        )


def add_preset_flags(parser: argparse.ArgumentParser, preset: str) -> None:
    """--preset (defaulting to `preset`) and --config: the first two layers of the configuration."""
    parser.add_argument("--preset", choices=sorted(config_lib.PRESETS), default=preset, help="the named configuration to start from")
    parser.add_argument("--config", help="YAML file of config overrides, applied after the preset")


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    """compile, submit and schedule: the pipeline as configured, bound to a cluster."""
    add_preset_flags(parser, config_lib.CLUSTER_PRESET)
    parser.add_argument("--labels", help="class names, one a line in id order (default: config data.class_names)")
    parser.add_argument(
        "--data-format", choices=layout.FORMATS, help="what --data-root holds (default: config data.format)"
    )
    parser.add_argument("--spans", action="store_true", help="the data root is laid out as span-<N>/...")
    parser.add_argument("--warm-start", action="store_true", help="start from the latest blessed model, if any")
    parser.add_argument("--package", help="(submit, schedule) an already compiled pipeline YAML instead of compiling")
    parser.add_argument("--verbose", action="store_true", help="show every TFX log line")
    for flag, (section, field) in KUBEFLOW_FLAGS.items():
        field_type = type(getattr(getattr(config_lib.PipelineConfig(), section), field))
        parser.add_argument(f"--{flag}", type=field_type, help=f"config {section}.{field}")
    add_config_flags(parser, config_lib.CLUSTER_PRESET)


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    from vocdet.pipeline.kubeflow import client as kfp_client

    parser.add_argument("--host", required=True, help="Kubeflow Pipelines API endpoint, e.g. https://kubeflow.example.com/pipeline")
    parser.add_argument("--namespace", help="Kubeflow profile namespace (multi-user clusters)")
    parser.add_argument("--experiment", default="vocdet", help="experiment the runs go in (default: vocdet)")
    parser.add_argument(
        "--token-env", default=kfp_client.DEFAULT_TOKEN_ENV, help="environment variable holding the bearer token"
    )
    parser.add_argument("--token-file", help="file holding the bearer token (instead of --token-env)")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a plain http:// --host outside the cluster (the token then travels unencrypted); "
        f"http to the in-cluster service ({kfp_client.IN_CLUSTER_HOSTS[-1]}) needs no flag",
    )


def config_from_args(args: argparse.Namespace) -> config_lib.PipelineConfig:
    overrides: dict = {}
    for flag, (section, field) in {**CONFIG_FLAGS, **KUBEFLOW_FLAGS}.items():
        value = getattr(args, flag.replace("-", "_"), None)
        if value is not None:
            overrides.setdefault(section, {})[field] = value
    if getattr(args, "output", None):
        overrides["output_dir"] = args.output
    if getattr(args, "data_format", None):
        overrides.setdefault("data", {})["format"] = args.data_format
    if getattr(args, "strict", False):
        overrides.setdefault("data", {})["strict"] = True
    if getattr(args, "freeze_backbone", False):
        overrides.setdefault("model", {})["freeze_backbone"] = True
    if getattr(args, "warm_start", False):
        overrides.setdefault("train", {})["warm_start"] = True
    if getattr(args, "no_cache", False):
        overrides["enable_cache"] = False
    if getattr(args, "data", None):
        overrides.setdefault("data", {})["data_dirs"] = args.data
    if args.spans:
        overrides.setdefault("data", {})["spans"] = True
    if args.labels:
        # Checked here, before any data is read or written: a folder or a missing file is a typo.
        if os.path.isdir(args.labels):
            raise UsageError(f"{args.labels}: is a folder (--labels); give the labels file, one class name a line")
        if not os.path.isfile(args.labels):
            raise UsageError(f"{args.labels}: no such file (--labels); give the labels file, one class name a line")
        overrides.setdefault("data", {})["labels_file"] = args.labels
    return config_lib.load(args.preset, args.config, overrides)


@contextlib.contextmanager
def holding(output_dir: str, command: str):
    """The output folder, held for this command (`output_lock`); another vocdet holding it is a one-line error."""
    try:
        with output_lock.hold(output_dir, command):
            yield
    except output_lock.OutputInUse as error:
        raise UsageError(str(error)) from None


def cluster_config(args: argparse.Namespace) -> config_lib.PipelineConfig:
    config = config_from_args(args)
    if config.data.labels_file:
        config = config.with_overrides({"data": {"class_names": layout.read_labels_file(config.data.labels_file)}})
    if not config.data.class_names:
        raise UsageError("the cluster's data cannot be read from here: give the class names (--labels or data.class_names)")
    return config


def warn_if_tag_only(config: config_lib.PipelineConfig, command: str) -> None:
    """A tag can be moved to other bytes after the run is compiled; a digest cannot (`:latest` is refused outright)."""
    if not config.kubeflow.image_pinned_by_digest:
        print(
            f"vocdet {command}: warning: image {config.kubeflow.image} is pinned by tag only; pin it by digest "
            f"({config.kubeflow.image}@sha256:..., as docker push prints it) so every task runs the same bytes",
            file=sys.stderr,
        )


def connection(args: argparse.Namespace, config: config_lib.PipelineConfig):
    from vocdet.pipeline.kubeflow import client as kfp_client

    return kfp_client.Connection(
        host=args.host,
        namespace=args.namespace,
        token_env=args.token_env,
        token_file=args.token_file,
        service_account=config.kubeflow.service_account,
        insecure=args.insecure,
    )


def run_arguments(args: argparse.Namespace) -> dict:
    """The run's parameters given on the command line (submit, schedule): the data root, if given."""
    from vocdet.pipeline.kubeflow.node import DATA_ROOT_PARAMETER

    return {DATA_ROOT_PARAMETER: args.data_root} if args.data_root else {}


def add_operations_flags(parser: argparse.ArgumentParser, serving: bool = False) -> None:
    """runs, models and rollback: which pipeline's ML Metadata store (a local --output, or the cluster's by URL)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--output", help=f"the local output folder vocdet run wrote (its metadata.sqlite) (default: {config_lib.DEFAULT_OUTPUT_DIR})"
    )
    where.add_argument(
        "--metadata", metavar="URL",
        help="the cluster's ML Metadata store (kubeflow.metadata, e.g. mysql://vocdet@localhost:3306/mlmd through "
        "kubectl port-forward), password from $VOCDET_METADATA_PASSWORD",
    )
    parser.add_argument(
        "--preset", choices=sorted(config_lib.PRESETS),
        help=f"the named configuration (default: {config_lib.LOCAL_PRESET}; with --metadata {config_lib.CLUSTER_PRESET})",
    )
    parser.add_argument("--config", help="YAML file of config overrides (pipeline name, push section), after the preset")
    if serving:
        parser.add_argument(
            "--serving-dir",
            help="config push.serving_dir: the serving folder (default: <output>/serving; with --metadata, kubeflow.serving_dir)",
        )
    parser.add_argument("--verbose", action="store_true", help="tracebacks for errors")


def operations_target(args: argparse.Namespace) -> tuple[config_lib.PipelineConfig, str | None, str | None]:
    """(config, local output folder or None, metadata URL or None) for runs, models and rollback.

    The config's `serving_dir` is the folder the Pusher writes: `--serving-dir`, else the local
    output's, else (with --metadata) the cluster's `kubeflow.serving_dir`.
    """
    cluster = args.metadata is not None
    preset = args.preset or (config_lib.CLUSTER_PRESET if cluster else config_lib.LOCAL_PRESET)
    output = None if cluster else (args.output or config_lib.DEFAULT_OUTPUT_DIR)
    overrides: dict = {} if cluster else {"output_dir": output}
    config = config_lib.load(preset, args.config, overrides)
    serving_dir = getattr(args, "serving_dir", None) or (config.kubeflow.serving_dir if cluster else None)
    if serving_dir:
        config = config.with_overrides({"push": {"serving_dir": serving_dir}})
    return config, output, args.metadata
