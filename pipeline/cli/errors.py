"""What a failure means to the person at the terminal: one line naming the file and what to do, and an exit code.

Exit code 2: what was asked for is wrong (a path, a flag, a setting); 1: the machine or a service failed
the run. Anything not recognised here is a bug, and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re

from vocdet.pipeline import config as config_lib
from vocdet.pipeline.metadata.store import StoreError  # a store that cannot be used: one line, exit code 1


class UsageError(Exception):
    """A problem with what the user asked for: printed as one line, exit code 2."""



# What an operating-system error means here, and what to do about it: errno -> (problem, advice, exit code).
# Exit code 2: a path given is wrong (missing, a folder for a file); 1: the machine failed the run.
_OS_ERRORS = {
    errno.ENOENT: ("no such file or folder", "check the path", 2),
    errno.EISDIR: ("is a folder, not a file", "give a file", 2),
    errno.ENOTDIR: ("a part of the path is not a folder", "check the path", 2),
    errno.EEXIST: ("already exists (a file where a folder was to be made?)", "move it aside, or choose another path", 2),
    errno.EACCES: ("permission denied", "fix its permissions, or choose a path you can write to", 1),
    errno.EPERM: ("operation not permitted", "fix its permissions, or choose a path you can write to", 1),
    errno.EROFS: ("read-only file system", "choose a writable folder", 1),
    errno.ENOSPC: ("no space left on the device", "free space there, or choose a folder on another disk", 1),
    errno.EDQUOT: ("disk quota exceeded", "free space there, or choose a folder on another disk", 1),
}
# The same failures as TensorFlow, Beam and SQLite word them, when they arrive wrapped in their own exceptions.
_OS_MESSAGES = {os.strerror(number): number for number in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)}
_SQLITE_CORRUPT = ("file is not a database", "database disk image is malformed")


def machine_failure(error: BaseException, args: argparse.Namespace) -> tuple[str | None, int]:
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
        return args.output or config_lib.DEFAULT_OUTPUT_DIR
    return getattr(args, "out", None)


def _corrupt_store_line(path: str, detail: str) -> str:
    detail = next((marker for marker in _SQLITE_CORRUPT if marker in detail), detail)
    return (
        f"{path}: not a readable ML Metadata store ({detail}); move it aside to start a new store "
        "(TFX's cache and the lineage of earlier runs start over), restore it from a backup, or choose another --output"
    )


def check_metadata_store(args: argparse.Namespace) -> None:
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
        raise StoreError(_corrupt_store_line(path, result))


def _metadata_path(args: argparse.Namespace) -> str:
    """The store of `run`/`ingest --output` (the config's `metadata_path`)."""
    return config_lib.metadata_path(getattr(args, "output", None) or config_lib.DEFAULT_OUTPUT_DIR)
