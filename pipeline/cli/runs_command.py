"""`vocdet runs`: the pipeline's runs and rollbacks from ML Metadata (`operations.history`), and `--plot`."""

from __future__ import annotations

import argparse

from vocdet.pipeline.cli import options


def add_commands(commands) -> None:
    runs = commands.add_parser("runs", help="the pipeline's runs and rollbacks, read from ML Metadata")
    options.add_operations_flags(runs)
    runs.add_argument("--format", choices=("table", "csv", "json"), default="table", help="how the runs are printed")
    runs.add_argument(
        "--plot", metavar="FILE.png",
        help="also draw the metrics run by run over time, with pushes and rollbacks (.png added to a name without one)",
    )
    runs.set_defaults(handler=_runs)


def _runs(args: argparse.Namespace) -> int:
    from vocdet.pipeline.operations import history, plot, source

    config, output, url = options.operations_target(args)
    plot_path = plot.output_path(args.plot) if args.plot else None
    store, where = source.open_store(output, url)
    records = history.read(store, config.pipeline_name)
    print(history.format_records(records, args.format), end="")
    if plot_path:
        withdrawn = {v for record in records for v in record.withdrawn_versions}
        plot.plot(records, plot_path, withdrawn)
        print(f"vocdet runs: {len(records)} records from {where}; plot: {plot_path}")
    return 0
