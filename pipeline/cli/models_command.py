"""`vocdet models`: the serving folder's versions, newest first, with their lineage (`operations.models`)."""

from __future__ import annotations

import argparse
import os
import sys

from vocdet.pipeline.cli import options


def add_commands(commands) -> None:
    models = commands.add_parser("models", help="the serving folder's versions: run, metrics, data, served, withdrawn")
    options.add_operations_flags(models, serving=True)
    models.add_argument("--format", choices=("table", "json"), default="table", help="how the versions are printed")
    models.set_defaults(handler=_models)


def _models(args: argparse.Namespace) -> int:
    from vocdet.pipeline.operations import lineage, models, source

    config, output, url = options.operations_target(args)
    store, _ = source.open_store(output, url)
    base = os.path.join(config.serving_dir, config.push.model_name)
    versions = models.list_versions(store, base)
    print(models.format_versions(versions, args.format), end="")
    moved = lineage.moved_serving_folder(store, base)
    if moved:
        print(f"vocdet models: note: {moved}", file=sys.stderr)
    return 0
