"""One vocdet run at a time in an output folder.

Runs into one output folder share its ML Metadata store, its data root of
links and its serving folder. Run together, they race on the links, both push
as "the first blessed model", and each summary reads the other's evaluation.
So `run` and `ingest` hold an exclusive lock on `<output>/.vocdet.lock` while
they work, and write there who holds it; a second run stops at once and says
who, in one line. The lock is `flock`'s: the kernel releases it when the
holder dies, so a killed run leaves nothing to clean up.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time

LOCK_FILE = ".vocdet.lock"


class OutputInUse(Exception):
    """The output folder is held by another vocdet process; the message names it."""


@contextlib.contextmanager
def hold(output_dir: str, command: str):
    """Holds `output_dir` for `command` (e.g. "run") until the block ends; raises OutputInUse if taken."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise OutputInUse(
                f"{os.path.abspath(output_dir)}: in use by {holder}; wait for it to finish, or give another --output"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"vocdet {command} (pid {os.getpid()} on {socket.gethostname()}, since {started})\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
