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
import os

from vocdet.components import file_lock

LOCK_FILE = ".vocdet.lock"


class OutputInUse(Exception):
    """The output folder is held by another vocdet process; the message names it."""


@contextlib.contextmanager
def hold(output_dir: str, command: str):
    """Holds `output_dir` for `command` (e.g. "run") until the block ends; raises OutputInUse if taken."""
    os.makedirs(output_dir, exist_ok=True)
    try:
        with file_lock.hold(os.path.join(output_dir, LOCK_FILE), f"vocdet {command}"):
            yield
    except file_lock.Held as held:
        raise OutputInUse(
            f"{os.path.abspath(output_dir)}: in use by {held.holder}; wait for it to finish, or give another --output"
        ) from None
