"""An exclusive `flock` on a file that says who holds it: the output folder's lock and the serving folder's.

The holder writes one line into the file ("vocdet run (pid 42 on host, since ...)"); a process that
finds the lock taken reads that line back to say who holds it. The kernel releases the lock when its
holder dies, so a killed process leaves nothing to clean up. `pipeline.local.output_lock` and
`atomic_pusher.serving_lock` give the refusal its own words.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time


class Held(Exception):
    """The lock is taken; `holder` is the line its holder wrote."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


@contextlib.contextmanager
def hold(path: str, holder: str, wait_seconds: float = 0.0):
    """Holds the lock on `path` for `holder` until the block ends; waits up to `wait_seconds`, then raises Held."""
    deadline = time.monotonic() + wait_seconds
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    raise Held(handle.read().strip() or "another process") from None
                time.sleep(1.0)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{holder} (pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
