"""`vocdet`: the command line. Every setting comes from `pipeline.config`.

Flags are a thin layer over the typed config: each `--flag` names one config
field (table `CONFIG_FLAGS`), applied after the preset and the YAML file.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import errno
import glob
import importlib.metadata
import logging
import os
import re
import sys
import tempfile
import time
import warnings

from vocdet.pipeline import config as config_lib
from vocdet.pipeline import data_layout, output_lock, sample_data

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

# Lifecycle lines from TFX's runner that make good progress output.
_PROGRESS = re.compile(r"Component \S+ is (running|finished)")


class UsageError(Exception):
    """A problem with what the user asked for: printed as one line, exit code 2."""


class _HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default in its help, where it has a meaningful one."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) and "default" not in help_text:
            help_text += " (default: %(default)s)"
        return help_text


class _Parser(argparse.ArgumentParser):
    """Every vocdet parser: no prefix matching (--epoch is not --epochs), defaults shown in --help."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, formatter_class=_HelpFormatter, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _unrecognized(parser, args, unknown)
    verbose = getattr(args, "verbose", False)
    _quiet_logging(verbose=verbose)
    from vocdet.pipeline import kfp_client

    try:
        _check_metadata_store(args)
        return args.handler(args)
    except (UsageError, data_layout.DataLayoutError, ValueError) as error:
        message, code = str(error), 2
        if verbose:
            raise  # the whole traceback, for debugging
    except (kfp_client.KfpConnectionError, _StoreError) as error:
        message, code = str(error), 1
        if verbose:
            raise
    except Exception as error:
        # The disk or the metadata store failed: one line. Anything else is a bug and keeps its traceback.
        message, code = _machine_failure(error, args)
        if message is None or verbose:
            raise
    print(f"vocdet {args.command}: error: {message}", file=sys.stderr)
    return code


# What an operating-system error means here, and what to do about it: errno -> (problem, advice, exit code).
# Exit code 2: a path given is wrong (missing, a folder for a file); 1: the machine failed the run.
_OS_ERRORS = {
    errno.ENOENT: ("no such file or folder", "check the path", 2),
    errno.EISDIR: ("is a folder, not a file", "give a file", 2),
    errno.ENOTDIR: ("a part of the path is not a folder", "check the path", 2),
    errno.EACCES: ("permission denied", "fix its permissions, or choose a path you can write to", 1),
    errno.EPERM: ("operation not permitted", "fix its permissions, or choose a path you can write to", 1),
    errno.EROFS: ("read-only file system", "choose a writable folder", 1),
    errno.ENOSPC: ("no space left on the device", "free space there, or choose a folder on another disk", 1),
    errno.EDQUOT: ("disk quota exceeded", "free space there, or choose a folder on another disk", 1),
}
# The same failures as TensorFlow, Beam and SQLite word them, when they arrive wrapped in their own exceptions.
_OS_MESSAGES = {os.strerror(number): number for number in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)}
_SQLITE_CORRUPT = ("file is not a database", "database disk image is malformed")


def _machine_failure(error: BaseException, args: argparse.Namespace) -> tuple[str | None, int]:
    """(one line naming the path and what to do, exit code) for a failure of the disk or the metadata store.

    Looks through the exception's causes, since TensorFlow, Beam and TFX wrap the OSError they hit. Anything
    else (None) is a bug and keeps its traceback.
    """
    if isinstance(error, OSError) and error.errno is None and error.args:
        return str(error), 2  # our own message, e.g. "FILE: cannot read the KFP token (...)"
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ if error.__cause__ is not None or error.__suppress_context__ else error.__context__
    for cause in seen:
        if isinstance(cause, OSError) and cause.errno in _OS_ERRORS:
            path = cause.filename or _written_folder(args)
            return _os_line(cause.errno, path, args), _OS_ERRORS[cause.errno][2]
    for cause in seen:
        text = str(cause)
        if any(marker in text for marker in _SQLITE_CORRUPT):
            return _corrupt_store_line(_metadata_path(args), text), 1
        for strerror, number in _OS_MESSAGES.items():
            if strerror in text:
                # TensorFlow's file errors read "<path>; <strerror>".
                match = re.search(rf"(\S+); {re.escape(strerror)}", text)
                return _os_line(number, match.group(1) if match else _written_folder(args), args), 1
    return None, 1


def _os_line(number: int, path: str | None, args: argparse.Namespace) -> str:
    problem, advice, _ = _OS_ERRORS[number]
    flag = _flag_of(path, args)
    where = f"{path}: " if path else ""
    return f"{where}{problem}{f' ({flag})' if flag else ''}; {advice}"


def _flag_of(path: str | None, args: argparse.Namespace) -> str | None:
    """The option a path came from (--output for anything under it), to say where to change it."""
    if not path:
        return None
    path = os.path.abspath(path)
    for flag in ("config", "labels", "model", "token_file", "package", "output", "out", "gt", "dt"):
        given = getattr(args, flag, None)
        if isinstance(given, str) and given:
            given = os.path.abspath(given)
            if path == given or path.startswith(given.rstrip(os.sep) + os.sep):
                return "--" + flag.replace("_", "-")
    return None


def _written_folder(args: argparse.Namespace) -> str | None:
    """The folder a command writes to, for an error that names no file (a failed write(2) names none)."""
    if args.command in ("run", "ingest"):
        return args.output or "outputs"
    return getattr(args, "out", None)


def _metadata_path(args: argparse.Namespace) -> str:
    return os.path.join(getattr(args, "output", None) or "outputs", "metadata.sqlite")


def _corrupt_store_line(path: str, detail: str) -> str:
    detail = next((marker for marker in _SQLITE_CORRUPT if marker in detail), detail)
    return (
        f"{path}: not a readable ML Metadata store ({detail}); move it aside to start a new store "
        "(TFX's cache and the lineage of earlier runs start over), restore it from a backup, or choose another --output"
    )


def _check_metadata_store(args: argparse.Namespace) -> None:
    """`run` and `ingest`: an existing metadata.sqlite must be an SQLite database, checked before TFX loads (1 s, not 20)."""
    if args.command not in ("run", "ingest"):
        return
    path = _metadata_path(args)
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return  # none yet: TFX creates it
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            (result,) = connection.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.DatabaseError as error:
        result = str(error)
    if result != "ok":
        raise _StoreError(_corrupt_store_line(path, result))


class _StoreError(Exception):
    """A metadata store that cannot be read; reported as one line, exit code 1."""


def _unrecognized(parser: argparse.ArgumentParser, args: argparse.Namespace, unknown: list[str]) -> None:
    """argparse's error for unknown options, naming the closest option of the command (no abbreviations)."""
    command = parser._subparsers._group_actions[0].choices[args.command]  # noqa: SLF001 (argparse keeps them there)
    options = [option for action in command._actions for option in action.option_strings]  # noqa: SLF001
    message = f"unrecognized arguments: {' '.join(unknown)}"
    close = difflib.get_close_matches(unknown[0].split("=")[0], options, n=1)
    command.error(message + (f" (did you mean {close[0]}?)" if close else ""))


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vocdet", description="Train and serve a KerasCV RetinaNet on VOC-format data with TFX.")
    parser.add_argument("--version", action="version", version=f"vocdet {importlib.metadata.version('vocdet')}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sample = commands.add_parser("make-sample", help="write the generated VOC-format sample dataset")
    sample.add_argument("directory", help="where VOC<year>/ is written")
    sample.add_argument("--num-images", type=int, default=sample_data.SampleSpec.num_images, help="images to draw")
    sample.add_argument("--seed", type=int, default=sample_data.SampleSpec.seed, help="the draw: equal seeds, equal images")
    sample.set_defaults(handler=_make_sample)

    run = commands.add_parser("run", help="run the whole pipeline locally")
    _add_data_flags(run)
    run.add_argument("--output", help="where artefacts, metadata and pushed models go (default: outputs)")
    run.add_argument("--runner", choices=("local", "beam"), default="local", help="TFX LocalDagRunner or BeamDagRunner")
    run.add_argument(
        "--package",
        help="run a compiled Kubeflow package (vocdet compile) here instead: its tasks' own commands, in order, "
        "with a local ML Metadata store and <output>/volumes/ as its PVC; --data gives its data_root",
    )
    run.add_argument("--preset", choices=sorted(config_lib.PRESETS), default="demo", help="the named configuration to start from")
    run.add_argument("--config", help="YAML file of config overrides, applied after the preset")
    run.add_argument("--strict", action="store_true", help="fail on any rejected record instead of reporting it")
    run.add_argument("--freeze-backbone", action="store_true", help="train only the FPN and heads (as the guide)")
    run.add_argument(
        "--warm-start", action="store_true", help="start from the latest blessed model of this pipeline, if any"
    )
    run.add_argument("--no-cache", action="store_true", help="re-run every component")
    run.add_argument("--verbose", action="store_true", help="show every TFX and Beam log line")
    _add_config_flags(run, "demo")
    run.set_defaults(handler=_run)

    ingest = commands.add_parser("ingest", help="run ExampleGen alone and report what was read, repaired and rejected")
    _add_data_flags(ingest)
    ingest.add_argument("--output", required=True, help="where the examples and the rejection report go")
    ingest.add_argument("--strict", action="store_true", help="fail on any rejected record")
    ingest.add_argument("--preset", choices=sorted(config_lib.PRESETS), default="demo", help="the named configuration to start from")
    ingest.add_argument("--config", help="YAML file of config overrides")
    ingest.add_argument("--verbose", action="store_true", help="show every TFX and Beam log line")
    ingest.set_defaults(handler=_ingest)

    compile_ = commands.add_parser("compile", help="compile the pipeline for Kubeflow Pipelines (KFP v2 YAML)")
    _add_cluster_flags(compile_)
    compile_.add_argument("--out", default="pipeline.yaml", help="the compiled pipeline (default: pipeline.yaml)")
    compile_.set_defaults(handler=_compile)

    submit = commands.add_parser("submit", help="upload the pipeline to Kubeflow Pipelines and start a run")
    _add_cluster_flags(submit)
    _add_connection_flags(submit)
    submit.set_defaults(handler=_submit)

    schedule = commands.add_parser("schedule", help="create, list or disable recurring runs (scheduled retraining)")
    _add_cluster_flags(schedule)
    _add_connection_flags(schedule)
    schedule.add_argument("--cron", help='when to run, standard 5-field cron, e.g. "0 3 * * 0" (Sundays 03:00)')
    schedule.add_argument("--max-concurrency", type=int, default=1, help="runs of this schedule at once (default 1)")
    schedule.add_argument("--no-catchup", action="store_true", help="skip the runs missed while paused")
    schedule.add_argument("--list", action="store_true", help="list the recurring runs of the experiment")
    schedule.add_argument("--disable", metavar="ID", help="disable a recurring run")
    schedule.set_defaults(handler=_schedule)

    evaluate = commands.add_parser("evaluate", help="score COCO-format detections: COCO and VOC mAP, per class, report")
    evaluate.add_argument("--gt", required=True, help="COCO ground truth JSON (images, annotations, categories)")
    evaluate.add_argument("--dt", required=True, help="COCO results JSON (a list of image_id, category_id, bbox, score)")
    evaluate.add_argument("--out", default="outputs/evaluation", help="where metrics.json, report.md and the PR curves go")
    evaluate.set_defaults(handler=_evaluate)

    weights = commands.add_parser(
        "backbone-weights", help="write a KerasCV ImageNet backbone as a local weights file (needs the network)"
    )
    weights.add_argument("preset", help="KerasCV preset: resnet50_imagenet or csp_darknet_tiny_imagenet")
    weights.add_argument("--out", required=True, help="the weights file to write (.weights.h5), for --backbone-weights")
    weights.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    weights.set_defaults(handler=_backbone_weights)

    freeze = commands.add_parser(
        "freeze-schema", help="write the schema a run inferred, curated, to a file to keep (for data.schema_file)"
    )
    freeze.add_argument("schema_file", help="where the schema goes, e.g. schema/schema.pbtxt")
    freeze.add_argument("--output", default="outputs", help="the output folder of the run whose schema is frozen")
    freeze.set_defaults(handler=_freeze_schema)

    predict = commands.add_parser("predict", help="run a pushed model on images; draw and list the detections")
    predict.add_argument("--model", required=True, help="SavedModel folder, or serving base folder (newest version)")
    predict.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...), folders of them, or glob patterns")
    predict.add_argument("--out", default="outputs/predictions", help="where <image>.png and <image>.json go")
    predict.add_argument(
        "--min-score", type=float, default=config_lib.ModelConfig.display_confidence_threshold, help="lowest score shown"
    )
    predict.add_argument(
        "--max-image-pixels",
        type=int,
        default=config_lib.DataConfig.max_image_pixels,
        help="larger images are skipped, checked from their header before decoding",
    )
    predict.set_defaults(handler=_predict)
    return parser


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        action="append",
        help="dataset folder, recognised from its layout (VOCdevkit, CVAT, Label Studio, LabelImg, Roboflow, "
        "tfds VOC build); repeat it to combine (e.g. VOC2007 and VOC2012). Default: the generated sample",
    )
    parser.add_argument("--spans", action="store_true", help="--data is one root laid out as span-<N>/...; use the newest span")
    parser.add_argument("--labels", help="class names, one a line in id order (default: config data.class_names)")


def _add_config_flags(parser: argparse.ArgumentParser, preset: str) -> None:
    defaults = config_lib.PRESETS[preset]()
    for flag, (section, field) in CONFIG_FLAGS.items():
        value = getattr(getattr(defaults, section), field)
        field_type = type(value)
        parser.add_argument(
            f"--{flag}",
            type=field_type if field_type in (int, float) else str,
            help=f"config {section}.{field} ({preset} preset: {value!r})",
        )


def _add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    """compile, submit and schedule: the pipeline as configured, bound to a cluster."""
    parser.add_argument("--preset", choices=sorted(config_lib.PRESETS), default="voc_guide", help="the named configuration to start from")
    parser.add_argument("--config", help="YAML file of config overrides, applied after the preset")
    parser.add_argument("--labels", help="class names, one a line in id order (default: config data.class_names)")
    parser.add_argument(
        "--data-format", choices=("voc", "tfds"), help="what --data-root holds (default: config data.format)"
    )
    parser.add_argument("--spans", action="store_true", help="the data root is laid out as span-<N>/...")
    parser.add_argument("--warm-start", action="store_true", help="start from the latest blessed model, if any")
    parser.add_argument("--package", help="(submit, schedule) an already compiled pipeline YAML instead of compiling")
    parser.add_argument("--verbose", action="store_true", help="show every TFX log line")
    for flag, (section, field) in KUBEFLOW_FLAGS.items():
        field_type = type(getattr(getattr(config_lib.PipelineConfig(), section), field))
        parser.add_argument(f"--{flag}", type=field_type, help=f"config {section}.{field}")
    _add_config_flags(parser, "voc_guide")


def _add_connection_flags(parser: argparse.ArgumentParser) -> None:
    from vocdet.pipeline import kfp_client

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


def prepare_data_root(config: config_lib.PipelineConfig) -> tuple[config_lib.PipelineConfig, str]:
    """(config with data.format, split_by and class_names set, data root) for the folders the config names.

    With no folders, the generated sample (made or reused under output_dir).
    A span-laid-out root is used as it is; otherwise a root of links to the
    given folders, whatever their layouts, is built under output_dir.
    """
    data = config.data
    data_dirs = data.data_dirs
    needed = tuple(data.train_splits + [data.eval_split])
    if data.spans:
        if len(data_dirs) != 1:
            raise UsageError("--spans takes exactly one --data root laid out as span-<N>/...")
        spans = sorted(glob.glob(os.path.join(data_dirs[0], "span-*")))
        if not spans:
            raise UsageError(f"{data_dirs[0]}: no span-<N> folders")
        source = data_layout.detect_source(spans[-1])
        if source.layout not in ("VOCdevkit", "tfds"):
            raise UsageError(f"{spans[-1]}: a span must hold VOC<name>/ folders (Annotations, JPEGImages[, ImageSets/Main])")
        split_by = data_layout.SPLIT_BY_LISTS if set(needed) <= source.splits_listed() else data_layout.SPLIT_BY_HASH
        data_format, descriptions = source.format, [f"{spans[-1]}: {source.layout} layout (the newest span)"]
        root = os.path.abspath(data_dirs[0])
    else:
        if not data_dirs:
            spec = sample_data.SampleSpec(num_images=data.sample_images, seed=data.sample_seed)
            sample_data.make_sample(config.sample_dir, spec)
            data_dirs = [config.sample_dir]
            print(f"vocdet: sample data in {os.path.abspath(config.sample_dir)} ({spec.num_images} images)", flush=True)
        root = os.path.abspath(os.path.join(config.output_dir, "data-root"))
        built = data_layout.make_data_root(data_dirs, root, needed)
        data_format, split_by, descriptions = built.format, built.split_by, list(built.descriptions)
    if data.split_by != "auto":
        split_by = data.split_by
    for line in descriptions:
        print(f"vocdet: {line}", flush=True)
    if split_by == data_layout.SPLIT_BY_HASH:
        print("vocdet: splits derived by ExampleGen from a hash of each image id (data.derived_split)", flush=True)
    if data.labels_file:
        class_names = data_layout.read_labels_file(data.labels_file)
    elif data.class_names:
        class_names = data.class_names
    else:
        class_names = data_layout.class_names_from_data(root, data_format)
    overrides = {"format": data_format, "class_names": class_names, "split_by": split_by}
    return config.with_overrides({"data": overrides}), root


@contextlib.contextmanager
def _holding(output_dir: str, command: str):
    """The output folder, held for this command (`output_lock`); another vocdet holding it is a one-line error."""
    try:
        with output_lock.hold(output_dir, command):
            yield
    except output_lock.OutputInUse as error:
        raise UsageError(str(error)) from None


def _make_sample(args: argparse.Namespace) -> int:
    spec = sample_data.SampleSpec(num_images=args.num_images, seed=args.seed)
    voc_dir = sample_data.make_sample(args.directory, spec, reuse=False)
    print(f"wrote {spec.num_images} images to {voc_dir}")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.package:
        return _run_package(args)
    config = config_from_args(args)
    # Checked here, where it is read; a compiled pipeline's file is the cluster's (vocdet compile).
    if config.model.backbone_weights and not os.path.exists(config.model.backbone_weights):
        raise UsageError(f"{config.model.backbone_weights}: model.backbone_weights: no such file")
    started = time.time()
    with _holding(config.output_dir, "run"):
        config, data_root = prepare_data_root(config)
        print(
            f"vocdet: running {config.pipeline_name} with the {args.runner} runner "
            f"on {config.data.format} data ({config.model.backbone}, {config.model.image_size}px, "
            f"{config.train.epochs} epochs) -> {config.output_dir}",
            flush=True,
        )

        from vocdet.pipeline import local_runner  # TFX and TensorFlow load here, not for --help

        summary = local_runner.run(config, data_root, runner=args.runner)
    minutes, seconds = divmod(int(time.time() - started), 60)
    print(f"\nvocdet: pipeline finished in {minutes}m{seconds:02d}s")
    for line in summary.lines():
        print(f"  {line}")
    return 0


def _run_package(args: argparse.Namespace) -> int:
    """`vocdet run --package`: the compiled Kubeflow package, task by task, on this machine."""
    from vocdet.pipeline import package_runner
    from vocdet.pipeline.kubeflow_node import DATA_ROOT_PARAMETER

    ignored = [f"--{flag}" for flag in CONFIG_FLAGS if getattr(args, flag.replace("-", "_"), None) is not None]
    if ignored or args.config or args.spans or args.labels:
        raise UsageError(f"--package runs the package as compiled; settings such as {(ignored or ['--config'])[0]} "
                         "belong to vocdet compile")
    output = args.output or "outputs"
    started = time.time()
    try:
        with _holding(output, "run --package"):
            package = package_runner.Package.read(args.package)
            data_root = package_runner.local_data_root(package, output, args.data or [], DATA_ROOT_PARAMETER)
            print(f"vocdet: running {args.package} ({len(package.task_order())} tasks) with data_root {data_root} "
                  f"-> {output}", flush=True)
            run_id, _ = package_runner.run_package(
                package, output, {DATA_ROOT_PARAMETER: data_root}, progress=lambda line: print(line, flush=True)
            )
    except package_runner.PackageError as error:
        raise UsageError(str(error)) from None
    from vocdet.pipeline import local_runner

    minutes, seconds = divmod(int(time.time() - started), 60)
    print(f"\nvocdet: run {run_id} finished in {minutes}m{seconds:02d}s")
    for line in local_runner.summarize_metadata(os.path.join(output, "metadata.sqlite")).lines():
        print(f"  {line}")
    return 0


def _cluster_config(args: argparse.Namespace) -> config_lib.PipelineConfig:
    config = config_from_args(args)
    if config.data.labels_file:
        config = config.with_overrides({"data": {"class_names": data_layout.read_labels_file(config.data.labels_file)}})
    if not config.data.class_names:
        raise UsageError("the cluster's data cannot be read from here: give the class names (--labels or data.class_names)")
    return config


def _compile(args: argparse.Namespace) -> int:
    from vocdet.pipeline import kubeflow

    config = _cluster_config(args)
    package = kubeflow.compile_pipeline(config, args.out)
    _warn_if_tag_only(config, "compile")
    print(
        f"vocdet compile: {package.path} ({package.num_tasks} tasks, {package.size_bytes / 1024:.0f} KiB; "
        f"image {config.kubeflow.image}, data_root default {config.kubeflow.data_root}, "
        f"pipeline root {config.kubeflow.tfx_pipeline_root})"
    )
    return 0


def _package(args: argparse.Namespace, config: config_lib.PipelineConfig, scratch: str) -> str:
    """The compiled pipeline to upload: --package, or compiled now from the config."""
    if args.package:
        if not os.path.isfile(args.package):
            raise UsageError(f"{args.package}: no such compiled pipeline")
        return args.package
    from vocdet.pipeline import kubeflow

    package = kubeflow.compile_pipeline(config, os.path.join(scratch, "pipeline.yaml")).path
    _warn_if_tag_only(config, args.command)
    return package


def _warn_if_tag_only(config: config_lib.PipelineConfig, command: str) -> None:
    """A tag can be moved to other bytes after the run is compiled; a digest cannot (`:latest` is refused outright)."""
    if not config.kubeflow.image_pinned_by_digest:
        print(
            f"vocdet {command}: warning: image {config.kubeflow.image} is pinned by tag only; pin it by digest "
            f"({config.kubeflow.image}@sha256:..., as docker push prints it) so every task runs the same bytes",
            file=sys.stderr,
        )


def _connection(args: argparse.Namespace, config: config_lib.PipelineConfig):
    from vocdet.pipeline import kfp_client

    return kfp_client.Connection(
        host=args.host,
        namespace=args.namespace,
        token_env=args.token_env,
        token_file=args.token_file,
        service_account=config.kubeflow.service_account,
        insecure=args.insecure,
    )


def _run_parameters(args: argparse.Namespace) -> dict:
    from vocdet.pipeline.kubeflow_node import DATA_ROOT_PARAMETER

    return {DATA_ROOT_PARAMETER: args.data_root} if args.data_root else {}


def _submit(args: argparse.Namespace) -> int:
    from vocdet.pipeline import kfp_client

    config = _cluster_config(args)
    with tempfile.TemporaryDirectory() as scratch:
        run_id = kfp_client.submit(
            _connection(args, config),
            _package(args, config, scratch),
            config.pipeline_name,
            args.experiment,
            _run_parameters(args),
        )
    print(f"vocdet submit: run {run_id} started in experiment {args.experiment}")
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from vocdet.pipeline import kfp_client

    config = _cluster_config(args)
    if args.list:
        for run in kfp_client.list_schedules(_connection(args, config), args.experiment):
            print(f"{run['id']}  {run['status']:<9} {run['cron']:<16} {run['name']}")
        return 0
    if args.disable:
        kfp_client.disable_schedule(_connection(args, config), args.disable)
        print(f"vocdet schedule: disabled {args.disable}")
        return 0
    if not args.cron:
        raise UsageError("give --cron to create a schedule, or --list / --disable ID")
    with tempfile.TemporaryDirectory() as scratch:
        recurring_run_id = kfp_client.schedule(
            _connection(args, config),
            _package(args, config, scratch),
            config.pipeline_name,
            args.experiment,
            _run_parameters(args),
            cron=args.cron,
            max_concurrency=args.max_concurrency,
            catchup=not args.no_catchup,
        )
    print(f"vocdet schedule: recurring run {recurring_run_id} ({args.cron}) in experiment {args.experiment}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    with _holding(config.output_dir, "ingest"):
        config, data_root = prepare_data_root(config)

        from vocdet.pipeline import local_runner

        examples_uri, counts = local_runner.ingest(config, data_root)
    print(f"\nvocdet ingest: {config.data.format} data from {data_root}")
    print(f"  examples: {examples_uri}")
    for line in local_runner.count_lines(counts) + local_runner.ingest_notes(examples_uri):
        print(f"  {line}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from vocdet.components.coco_evaluator import coco_files, report, scoring

    try:
        ground_truth, detections, class_names = coco_files.load(args.gt, args.dt)
    except coco_files.CocoFileError as error:
        raise UsageError(str(error)) from None
    scores, curves = scoring.score(ground_truth, detections, class_names)
    report.write_report(args.out, scores, curves, num_images=len(ground_truth["images"]))
    metrics = scores["metrics"]
    print(
        f"COCO mAP@[.5:.95] {metrics['coco/AP']:.4f}, mAP@0.5 {metrics['coco/AP50']:.4f}, "
        f"VOC2007 mAP@0.5 {metrics['voc/mAP50_11point']:.4f} on {len(ground_truth['images'])} images"
    )
    print(f"report: {os.path.join(args.out, report.REPORT_FILE)}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from vocdet.pipeline import predict

    try:
        model_dir = predict.resolve_model_dir(args.model)
    except predict.PredictError as error:
        raise UsageError(str(error)) from None
    import tensorflow as tf

    try:
        paths = predict.expand_inputs(args.images)
    except predict.PredictError as error:
        raise UsageError(str(error)) from None
    serving_fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    failures = 0
    from tqdm import tqdm

    progress = tqdm(paths, unit="image", disable=len(paths) < 2 or not sys.stderr.isatty())
    for path in progress:
        try:
            image = predict.read_image(path, args.max_image_pixels)
        except predict.PredictError as error:
            progress.write(f"vocdet predict: error: {error}", file=sys.stderr)
            failures += 1
            continue
        detections = predict.detect(serving_fn, image, args.min_score)
        picture, _ = predict.write_outputs(image, detections, args.out, os.path.splitext(os.path.basename(path))[0])
        progress.write(f"{path}: {len(detections)} detections -> {picture}")
    return 1 if failures else 0


def _freeze_schema(args: argparse.Namespace) -> int:
    from vocdet.pipeline import frozen_schema

    try:
        source, class_names = frozen_schema.freeze(args.output, args.schema_file)
    except frozen_schema.FreezeError as error:
        raise UsageError(str(error)) from None
    print(f"vocdet freeze-schema: {args.schema_file} from {source} ({len(class_names)} classes)")
    print(f"  review it, keep it with the project, and set data.schema_file: {args.schema_file}")
    return 0


def _backbone_weights(args: argparse.Namespace) -> int:
    from vocdet.pipeline import backbone_weights

    try:
        backbone = backbone_weights.write_backbone_weights(args.preset, args.out)
    except backbone_weights.DownloadError as error:
        raise UsageError(str(error)) from None
    print(f"vocdet backbone-weights: {args.out} ({args.preset}); train with --backbone {backbone} --backbone-weights {args.out}")
    return 0


def _quiet_logging(verbose: bool) -> None:
    """Progress lines only (component start/finish, our own messages), unless verbose."""
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
        logging.basicConfig(level=logging.INFO)
        return
    # TensorFlow's C++ start-up lines (CUDA factories, CPU features) are not errors of ours.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Libraries reset the warning filters as they import (Google's FutureWarnings, Keras'
    # UserWarnings): drop the warnings where they are shown instead.
    warnings.filterwarnings("ignore")
    warnings.showwarning = lambda *args, **kwargs: None
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    # vocdet's own modules log under their package names; TFX logs through absl.
    handler.addFilter(
        lambda record: record.name.startswith("vocdet.")
        or record.levelno >= logging.ERROR
        or bool(_PROGRESS.search(record.getMessage()))
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    absl_handler = absl_logging.get_absl_handler()
    absl_handler.setLevel(logging.CRITICAL + 1)
    logging.getLogger("absl").handlers[:] = []
    logging.getLogger("absl").propagate = True


if __name__ == "__main__":
    sys.exit(main())
