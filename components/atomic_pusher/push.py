"""Atomic, versioned pushes into TF Serving's `<base>/<version>/` layout.

TF Serving polls `<base>` and loads the highest integer-named folder. A push
copies the model into a hidden `<base>/.incoming-<version>` folder (which TF
Serving ignores: not an integer), then renames it to `<base>/<version>` in
one step, so a reader sees either no new version or a whole one. A push
killed part-way leaves only an `.incoming-*` folder, which the next push
removes. Versions are integers that only grow (at least the Unix time, and
always above the newest present). After a push, all but the newest
`keep_versions` versions are deleted; the newest is never deleted.

The rename is atomic on POSIX filesystems (local disks, NFS, a PVC). Object
stores (gs://, s3://) have no atomic rename: there tf.io.gfile copies then
deletes, and TF Serving may briefly see a partial version.
"""

from __future__ import annotations

import logging
import os
import time

from tfx.dsl.io import fileio
from tfx.utils import io_utils

INCOMING_PREFIX = ".incoming-"
# Written by tf.saved_model.save beside saved_model.pb (TensorFlow >= 2.12).
FINGERPRINT_FILE = "fingerprint.pb"

_logger = logging.getLogger(__name__)


def versions(base_directory: str) -> list[int]:
    """The integer versions present, ascending."""
    if not fileio.exists(base_directory):
        return []
    return sorted(int(name.rstrip("/")) for name in fileio.listdir(base_directory) if name.rstrip("/").isdigit())


def serving_version(model_path: str, base_directory: str) -> int | None:
    """The newest version, if it is the same SavedModel as `model_path`; else None.

    "Same" is TensorFlow's own SavedModel fingerprint (`fingerprint.pb`: hashes of the graph, the
    signatures and the checkpoint), so a model retrained to other weights is never taken for it.
    """
    present = versions(base_directory)
    if not present:
        return None
    newest = os.path.join(base_directory, str(present[-1]), FINGERPRINT_FILE)
    ours = os.path.join(model_path, FINGERPRINT_FILE)
    if not (fileio.exists(newest) and fileio.exists(ours)):
        return None
    with fileio.open(newest, "rb") as theirs_handle, fileio.open(ours, "rb") as ours_handle:
        return present[-1] if theirs_handle.read() == ours_handle.read() else None


def next_version(base_directory: str) -> int:
    present = versions(base_directory)
    return max([int(time.time())] + [version + 1 for version in present])


def push(model_path: str, base_directory: str, keep_versions: int) -> tuple[int, str]:
    """Copies `model_path` to a new version atomically; returns (version, path)."""
    if keep_versions < 1:
        raise ValueError(f"keep_versions must be at least 1, got {keep_versions}")
    fileio.makedirs(base_directory)
    remove_incomplete(base_directory)
    version = next_version(base_directory)
    incoming = os.path.join(base_directory, f"{INCOMING_PREFIX}{version}")
    final = os.path.join(base_directory, str(version))
    io_utils.copy_dir(model_path, incoming)
    fileio.rename(incoming, final)
    _logger.info("Pushed version %d to %s", version, final)
    prune(base_directory, keep_versions)
    return version, final


def remove_incomplete(base_directory: str) -> None:
    """Deletes what interrupted pushes left behind."""
    for name in fileio.listdir(base_directory):
        if name.startswith(INCOMING_PREFIX):
            _logger.warning("Removing %s, left by an interrupted push", name)
            fileio.rmtree(os.path.join(base_directory, name.rstrip("/")))


def prune(base_directory: str, keep_versions: int) -> list[int]:
    """Deletes all but the newest `keep_versions` versions; returns the deleted ones."""
    present = versions(base_directory)
    doomed = present[: max(0, len(present) - keep_versions)]
    for version in doomed:
        fileio.rmtree(os.path.join(base_directory, str(version)))
    return doomed
