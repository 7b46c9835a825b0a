"""`vocdet rollback [--to VERSION]`: an earlier version served again (`operations.rollback`)."""

from __future__ import annotations

import argparse
import contextlib
import os

from vocdet.pipeline.cli import options


def add_commands(commands) -> None:
    rollback = commands.add_parser(
        "rollback", help="serve an earlier version again (re-published as the newest) and withdraw the newer models"
    )
    options.add_operations_flags(rollback, serving=True)
    rollback.add_argument(
        "--to", type=int, metavar="VERSION",
        help="the version to serve (default: the newest earlier version of another blessed, not withdrawn model); "
        "a withdrawn one is brought back",
    )
    rollback.set_defaults(handler=_rollback)


def _rollback(args: argparse.Namespace) -> int:
    from vocdet.pipeline.operations import rollback, source

    config, output, url = options.operations_target(args)
    store, where = source.open_store(output, url)
    base = os.path.join(config.serving_dir, config.push.model_name)
    # A vocdet run in the output folder may be about to push, or be judging against the served model.
    with options.holding(output, "rollback") if output else contextlib.nullcontext():
        result = rollback.rollback(store, config.pipeline_name, base, config.push.keep_versions, to=args.to)
    print(f"vocdet rollback: version {result.to_version} served again as version {result.published_version} "
          f"({result.published_path}; was version {result.previous_version})")
    if result.withdrawn_versions:
        print(f"  withdrawn: {', '.join(f'version {v}' for v in result.withdrawn_versions)} "
              "(skipped as baseline and warm start, refused by the Pusher)")
    if result.cleared_mark:
        print(f"  version {result.to_version}'s model was withdrawn; its mark is cleared")
    print(f"  recorded in {where}")
    return 0
