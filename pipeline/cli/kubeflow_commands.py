"""`vocdet compile`, `submit` and `schedule`: the pipeline on Kubeflow Pipelines."""

from __future__ import annotations

import argparse
import os
import tempfile

from vocdet.pipeline import config as config_lib
from vocdet.pipeline.cli import options
from vocdet.pipeline.cli.errors import UsageError


def add_commands(commands) -> None:
    """Adds compile, submit and schedule to the `vocdet` parser's subcommands."""
    compile_ = commands.add_parser("compile", help="compile the pipeline for Kubeflow Pipelines (KFP v2 YAML)")
    options.add_cluster_flags(compile_)
    compile_.add_argument("--out", default="pipeline.yaml", help="the compiled pipeline (default: pipeline.yaml)")
    compile_.set_defaults(handler=_compile)

    submit = commands.add_parser("submit", help="upload the pipeline to Kubeflow Pipelines and start a run")
    options.add_cluster_flags(submit)
    options.add_connection_flags(submit)
    submit.set_defaults(handler=_submit)

    schedule = commands.add_parser("schedule", help="create, list or disable recurring runs (scheduled retraining)")
    options.add_cluster_flags(schedule)
    options.add_connection_flags(schedule)
    schedule.add_argument("--cron", help='when to run, standard 5-field cron, e.g. "0 3 * * 0" (Sundays 03:00)')
    schedule.add_argument("--max-concurrency", type=int, default=1, help="runs of this schedule at once (default 1)")
    schedule.add_argument("--no-catchup", action="store_true", help="skip the runs missed while paused")
    schedule.add_argument("--list", action="store_true", help="list the recurring runs of the experiment")
    schedule.add_argument("--disable", metavar="ID", help="disable a recurring run")
    schedule.set_defaults(handler=_schedule)


def _compile(args: argparse.Namespace) -> int:
    from vocdet.pipeline.kubeflow import compiler

    config = options.cluster_config(args)
    package = compiler.compile_pipeline(config, args.out)
    options.warn_if_tag_only(config, "compile")
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
    from vocdet.pipeline.kubeflow import compiler

    package = compiler.compile_pipeline(config, os.path.join(scratch, "pipeline.yaml")).path
    options.warn_if_tag_only(config, args.command)
    return package


def _submit(args: argparse.Namespace) -> int:
    from vocdet.pipeline.kubeflow import client

    config = options.cluster_config(args)
    with tempfile.TemporaryDirectory() as scratch:
        run_id = client.submit(
            options.connection(args, config),
            _package(args, config, scratch),
            config.pipeline_name,
            args.experiment,
            options.run_arguments(args),
        )
    print(f"vocdet submit: run {run_id} started in experiment {args.experiment}")
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from vocdet.pipeline.kubeflow import client

    config = options.cluster_config(args)
    if args.list:
        for run in client.list_schedules(options.connection(args, config), args.experiment):
            print(f"{run['id']}  {run['status']:<9} {run['cron']:<16} {run['name']}")
        return 0
    if args.disable:
        client.disable_schedule(options.connection(args, config), args.disable)
        print(f"vocdet schedule: disabled {args.disable}")
        return 0
    if not args.cron:
        raise UsageError("give --cron to create a schedule, or --list / --disable ID")
    with tempfile.TemporaryDirectory() as scratch:
        recurring_run_id = client.schedule(
            options.connection(args, config),
            _package(args, config, scratch),
            config.pipeline_name,
            args.experiment,
            options.run_arguments(args),
            cron=args.cron,
            max_concurrency=args.max_concurrency,
            catchup=not args.no_catchup,
        )
    print(f"vocdet schedule: recurring run {recurring_run_id} ({args.cron}) in experiment {args.experiment}")
    return 0
