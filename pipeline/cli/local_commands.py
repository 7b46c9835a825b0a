"""`vocdet make-sample`, `run` (and `run --package`) and `ingest`: the pipeline on this machine."""

from __future__ import annotations

import argparse
import time

from vocdet.pipeline import config as config_lib
from vocdet.pipeline.cli import options
from vocdet.pipeline.cli.errors import UsageError
from vocdet.pipeline.data import sample
from vocdet.pipeline.data.root import prepare_data_root
from vocdet.pipeline.local import DAG_RUNNERS, input_files, output_folder
from vocdet.pipeline.metadata import store as metadata_store


def add_commands(commands) -> None:
    """Adds make-sample, run and ingest to the `vocdet` parser's subcommands."""
    make_sample = commands.add_parser("make-sample", help="write the generated VOC-format sample dataset")
    make_sample.add_argument("directory", help="where VOC<year>/ is written")
    make_sample.add_argument("--num-images", type=int, default=sample.SampleSpec.num_images, help="images to draw")
    make_sample.add_argument("--seed", type=int, default=sample.SampleSpec.seed, help="the draw: equal seeds, equal images")
    make_sample.set_defaults(handler=_make_sample)

    run = commands.add_parser("run", help="run the whole pipeline locally")
    options.add_data_flags(run)
    run.add_argument(
        "--output", help=f"where artefacts, metadata and pushed models go (default: {config_lib.DEFAULT_OUTPUT_DIR})"
    )
    run.add_argument("--runner", choices=DAG_RUNNERS, default=DAG_RUNNERS[0], help="TFX LocalDagRunner or BeamDagRunner")
    run.add_argument(
        "--package",
        help="run a compiled Kubeflow package (vocdet compile) here instead: its tasks' own commands, in order, "
        "with a local ML Metadata store and <output>/volumes/ as its PVC; --data gives its data_root",
    )
    run.add_argument(
        "--metadata",
        metavar="URL",
        help="(--package) the ML Metadata store its tasks use, e.g. mysql://USER@localhost:3306/mlmd, password "
        "from $VOCDET_METADATA_PASSWORD (default: an SQLite file in --output)",
    )
    run.add_argument(
        "--parallelism",
        type=int,
        metavar="N",
        help="(--package) tasks at once, as Argo runs every ready task (default: 4 with a database server; "
        "SQLite is sequential)",
    )
    options.add_preset_flags(run, config_lib.LOCAL_PRESET)
    run.add_argument("--strict", action="store_true", help="fail on any rejected record instead of reporting it")
    run.add_argument("--freeze-backbone", action="store_true", help="train only the FPN and heads (as the guide)")
    run.add_argument(
        "--warm-start", action="store_true", help="start from the latest blessed model of this pipeline, if any"
    )
    run.add_argument("--no-cache", action="store_true", help="re-run every component")
    run.add_argument("--verbose", action="store_true", help="show every TFX and Beam log line")
    options.add_config_flags(run, config_lib.LOCAL_PRESET)
    run.set_defaults(handler=_run)

    ingest = commands.add_parser("ingest", help="run ExampleGen alone and report what was read, repaired and rejected")
    options.add_data_flags(ingest)
    ingest.add_argument("--output", required=True, help="where the examples and the rejection report go")
    ingest.add_argument("--strict", action="store_true", help="fail on any rejected record")
    options.add_preset_flags(ingest, config_lib.LOCAL_PRESET)
    ingest.add_argument("--verbose", action="store_true", help="show every TFX and Beam log line")
    ingest.set_defaults(handler=_ingest)


def _make_sample(args: argparse.Namespace) -> int:
    spec = sample.SampleSpec(num_images=args.num_images, seed=args.seed)
    voc_dir = sample.make_sample(args.directory, spec, reuse=False)
    print(f"wrote {spec.num_images} images to {voc_dir}")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.package:
        return _run_package(args)
    if args.metadata or args.parallelism:
        raise UsageError("--metadata and --parallelism are for a rehearsed package (--package); vocdet run keeps its "
                         "own store in --output")
    config = options.config_from_args(args)
    input_files.check(config)  # where they are read; a compiled pipeline's files are the cluster's (vocdet compile)
    output_folder.check(config)  # before anything is written: the lock is a write
    started = time.time()
    with options.holding(config.output_dir, "run"):
        config, data_root = prepare_data_root(config)
        print(
            f"vocdet: running {config.pipeline_name} with the {args.runner} runner "
            f"on {config.data.format} data ({config.model.backbone}, {config.model.image_size}px, "
            f"{config.train.epochs} epochs) -> {config.output_dir}",
            flush=True,
        )

        from vocdet.pipeline.local import runner as local_runner  # TFX and TensorFlow load here, not for --help

        run_summary = local_runner.run(config, data_root, runner=args.runner)
    minutes, seconds = divmod(int(time.time() - started), 60)
    print(f"\nvocdet: pipeline finished in {minutes}m{seconds:02d}s")
    for line in run_summary.lines():
        print(f"  {line}")
    return 0


def _run_package(args: argparse.Namespace) -> int:
    """`vocdet run --package`: the compiled Kubeflow package, task by task, on this machine."""
    from vocdet.pipeline.kubeflow import rehearsal as package_runner
    from vocdet.pipeline.kubeflow.node import DATA_ROOT_PARAMETER

    ignored = [f"--{flag}" for flag in options.CONFIG_FLAGS if getattr(args, flag.replace("-", "_"), None) is not None]
    if ignored or args.config or args.spans or args.labels:
        raise UsageError(f"--package runs the package as compiled; settings such as {(ignored or ['--config'])[0]} "
                         "belong to vocdet compile")
    output = args.output or config_lib.DEFAULT_OUTPUT_DIR
    sample_dir = config_lib.PipelineConfig(output_dir=output).sample_dir
    url = metadata_store.StoreUrl.parse(args.metadata or package_runner.store_url(output), "--metadata")
    password = metadata_store.password_from_environment(url)
    try:
        parallelism, note = package_runner.parallelism_for(str(url), args.parallelism)
    except package_runner.PackageError as error:
        raise UsageError(str(error)) from None
    output_folder.check_paths(output, args.data or [])
    if note:
        print(f"vocdet: {note}", flush=True)
    started = time.time()
    try:
        with options.holding(output, "run --package"):
            package = package_runner.Package.read(args.package)
            data_root = package_runner.local_data_root(package, output, args.data or [], DATA_ROOT_PARAMETER, sample_dir)
            print(f"vocdet: running {args.package} ({len(package.task_order())} tasks, {parallelism} at a time) with "
                  f"data_root {data_root}, metadata {url} -> {output}", flush=True)
            run_id, _ = package_runner.run_package(
                package, output, {DATA_ROOT_PARAMETER: data_root}, progress=lambda line: print(line, flush=True),
                metadata_url=str(url), parallelism=parallelism,
            )
    except package_runner.PackageError as error:
        raise UsageError(str(error)) from None
    from vocdet.pipeline.local import summary

    minutes, seconds = divmod(int(time.time() - started), 60)
    print(f"\nvocdet: run {run_id} finished in {minutes}m{seconds:02d}s")
    store = metadata_store.connect(url, password, wait_seconds=0)
    for line in summary.summarize_store(store, str(url), run_id).lines():
        print(f"  {line}")
    print("\nvocdet: what KFP's UI would show (the tasks' output artefacts, as its launcher would upload them):")
    for line in package_runner.ui_lines(package, output, run_id):
        print(f"  {line}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    config = options.config_from_args(args)
    output_folder.check(config)  # before anything is written: the lock is a write
    with options.holding(config.output_dir, "ingest"):
        config, data_root = prepare_data_root(config)

        from vocdet.pipeline.local import runner as local_runner, summary

        examples_uri, counts = local_runner.ingest(config, data_root)
    print(f"\nvocdet ingest: {config.data.format} data from {data_root}")
    print(f"  examples: {examples_uri}")
    for line in summary.count_lines(counts) + summary.ingest_notes(examples_uri):
        print(f"  {line}")
    return 0
