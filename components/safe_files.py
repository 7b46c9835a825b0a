"""Reading a user's file without trusting it: regular files only, opened without blocking, read up to a cap.

A dataset, a detections file or an image to predict on is a path someone else made. A FIFO named
`x.jpg` blocks `open()` until a writer comes, a link to `/dev/zero` reads without end, a link loop
raises ELOOP deep inside a library, and a 200 MB annotation takes gigabytes to parse. Every place
vocdet reads a user's file goes through `read_bytes` (or `check_file`, where a library opens the path
itself), so each of these becomes one line naming the file, within milliseconds, before anything
large is read: PIL's decompression-bomb guard and expat's amplification limits, applied to the file
itself.

`UnsafeFileError` is a `ValueError` whose message is `"<path>: <problem>"`; `.problem` is the part
after the path, for reports that name the file in a column of their own.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from typing import Any

# What a path that is not a regular file is, for the message.
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
_CHUNK = 1 << 20


class UnsafeFileError(ValueError):
    """A path vocdet will not read, or a file above its size limit; `str()` is one line naming the file."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def describe_size(size: int) -> str:
    """Bytes as a person reads them: `512 B`, `3.2 MB`, `1.1 GB` (decimal units)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _os_problem(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "a symbolic link loop (the link points back at itself); fix or remove the link"
    if error.errno == errno.ENOENT:
        return "no such file (or a link to a missing file)"
    return error.strerror or str(error)


def _check_stat(path: str, status: os.stat_result, max_bytes: int | None, setting: str) -> int:
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _KINDS if test(status.st_mode)), "not a regular file")
        raise UnsafeFileError(path, f"is {kind}, not a regular file; only regular files are read")
    if max_bytes is not None and status.st_size > max_bytes:
        raise UnsafeFileError(path, _too_large(status.st_size, max_bytes, setting))
    return status.st_size


def _too_large(size: int, max_bytes: int, setting: str) -> str:
    return f"{describe_size(size)}, above the limit of {describe_size(max_bytes)}" + (f" ({setting})" if setting else "")


def check_file(path: str, max_bytes: int | None = None, setting: str = "") -> int:
    """The size of `path` if it is a regular file (links followed) within `max_bytes`; else UnsafeFileError.

    For a library that opens the path itself (TensorFlow, PIL by name). Prefer `read_bytes`, which
    checks the descriptor it reads, so a file swapped after the check is still caught.
    `setting` names what sets the limit, for the message (e.g. `data.max_annotation_bytes`).
    """
    if "://" in path:  # an object store (gs://, ram://): no FIFOs or devices there
        import tensorflow as tf

        try:
            size = tf.io.gfile.stat(path).length
        except tf.errors.NotFoundError:
            raise UnsafeFileError(path, "no such file") from None
        if max_bytes is not None and size > max_bytes:
            raise UnsafeFileError(path, _too_large(size, max_bytes, setting))
        return size
    try:
        status = os.stat(path)
    except OSError as error:
        raise UnsafeFileError(path, _os_problem(error)) from None
    return _check_stat(path, status, max_bytes, setting)


def read_bytes(path: str, max_bytes: int | None = None, setting: str = "") -> bytes:
    """The whole of a regular file, at most `max_bytes` long; never blocks on a FIFO or reads a device.

    Opened with O_NONBLOCK (a FIFO opens at once instead of waiting for a writer) and checked on the
    open descriptor, so the file that is read is the file that was checked.
    """
    if "://" in path:
        import tensorflow as tf

        check_file(path, max_bytes, setting)
        with tf.io.gfile.GFile(path, "rb") as handle:
            return handle.read()
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise UnsafeFileError(path, _os_problem(error)) from None
    try:
        _check_stat(path, os.fstat(descriptor), max_bytes, setting)
    except UnsafeFileError:
        os.close(descriptor)
        raise
    with os.fdopen(descriptor, "rb", buffering=0) as handle:
        chunks, read = [], 0
        while True:  # the size may have grown since the check: never read past the limit
            chunk = handle.read(_CHUNK if max_bytes is None else min(_CHUNK, max_bytes + 1 - read))
            if not chunk:
                break
            chunks.append(chunk)
            read += len(chunk)
            if max_bytes is not None and read > max_bytes:
                raise UnsafeFileError(path, _too_large(read, max_bytes, setting) + " (it grew while read)")
    return b"".join(chunks)


def read_json(path: str, max_bytes: int | None = None, setting: str = "") -> Any:
    """A JSON file read with `read_bytes`; bad JSON, or JSON nested too deeply to parse, is one line."""
    content = read_bytes(path, max_bytes, setting)
    try:
        return json.loads(content)
    except RecursionError:  # json's C scanner counts its depth against Python's recursion limit
        raise UnsafeFileError(path, "JSON nested too deeply to read (over about 1,000 levels)") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise UnsafeFileError(path, f"not valid JSON ({str(error).splitlines()[0][:200]})") from None


def shorten(value: Any, limit: int = 120) -> str:
    """`repr(value)` cut to `limit` characters, rendered without expanding what a message will not show.

    A YAML alias bomb's value is small in memory (aliases share objects) but astronomically large
    as text: `reprlib` renders only the first few items of each level.
    """
    import reprlib

    renderer = reprlib.Repr()
    renderer.maxlevel, renderer.maxlist, renderer.maxdict, renderer.maxstring, renderer.maxother = 3, 6, 6, limit, limit
    text = renderer.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
