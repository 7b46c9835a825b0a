"""`vocdet`: the command line's entry point. Every setting comes from `pipeline.config`.

Builds the parser from each group of commands (`local_commands`, `kubeflow_commands`,
`tool_commands`, `runs_command`, `models_command`, `rollback_command`), runs the chosen handler,
and turns a failure into one line (`errors`).
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import sys

from vocdet.pipeline import console
from vocdet.pipeline.cli import (
    errors, kubeflow_commands, local_commands, models_command, rollback_command, runs_command, tool_commands,
)
from vocdet.pipeline.data import layout


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
    console.quiet_logging(verbose=verbose)
    from vocdet.pipeline.kubeflow import client as kfp_client

    try:
        errors.check_metadata_store(args)
        return args.handler(args)
    except (errors.UsageError, layout.DataLayoutError, ValueError) as error:
        message, code = str(error), 2
        if verbose:
            raise  # the whole traceback, for debugging
    except (kfp_client.KfpConnectionError, errors.StoreError) as error:
        message, code = str(error), 1
        if verbose:
            raise
    except Exception as error:
        # The disk or the metadata store failed: one line. Anything else is a bug and keeps its traceback.
        message, code = errors.machine_failure(error, args)
        if message is None or verbose:
            raise
    print(f"vocdet {args.command}: error: {message}", file=sys.stderr)
    return code


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
    for group in (local_commands, kubeflow_commands, tool_commands, runs_command, models_command, rollback_command):
        group.add_commands(commands)
    return parser

