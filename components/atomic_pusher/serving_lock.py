"""One writer at a time in a serving folder: the Pusher and `vocdet rollback`.

The serving folder may live outside any output folder (`push.serving_dir`, the PVC on Kubeflow), so
the output lock does not cover it. Both writers take an exclusive `flock` on `<base>/.vocdet-serving.lock`
while they decide and publish a version: TF Serving ignores the file (its name is not an integer), and
the kernel releases the lock when its holder dies. Without it, a rollback could publish while a push
removes its `.incoming-*` folder, or both could take the same version number.

The Pusher waits for a rollback in progress (`wait_seconds`); a rollback does not wait for a push and
says who holds the folder. On a PVC the lock holds across pods where the volume supports `flock`
(NFSv4 and CephFS do; Linux's NFS client turns it into a byte-range lock). Object stores (gs://,
s3://) have no locks and no atomic rename: nothing is locked there.
"""

from __future__ import annotations

import contextlib
import os

from vocdet.components import file_lock

LOCK_FILE = ".vocdet-serving.lock"
# How long a Pusher waits for a rollback holding the folder.
PUSH_WAIT_SECONDS = 600.0


class ServingInUse(Exception):
    """The serving folder is held by another writer; the message names it."""


def is_local(base_directory: str) -> bool:
    return "://" not in base_directory


@contextlib.contextmanager
def hold(base_directory: str, holder: str, wait_seconds: float = 0.0):
    """Holds `base_directory` for `holder` (e.g. "vocdet rollback") until the block ends.

    Waits up to `wait_seconds` for another holder, then raises ServingInUse naming it. A no-op on an
    object store.
    """
    if not is_local(base_directory):
        yield
        return
    os.makedirs(base_directory, exist_ok=True)
    try:
        with file_lock.hold(os.path.join(base_directory, LOCK_FILE), holder, wait_seconds):
            yield
    except file_lock.Held as held:
        raise ServingInUse(f"{base_directory}: serving folder in use by {held.holder}; wait for it to finish") from None
