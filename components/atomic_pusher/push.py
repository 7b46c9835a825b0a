"""Atomic, versioned pushes into TF Serving's `<base>/<version>/` layout.

TF Serving polls `<base>` and loads the highest integer-named folder. A push
copies the model into a hidden `<base>/.incoming-<version>` folder (which TF
Serving ignores: not an integer), then renames it to `<base>/<version>` in
one step, so a reader sees either no new version or a whole one. A push
killed part-way leaves only an `.incoming-*` folder, which the next push
removes. Versions are integers that only grow (at least the Unix time, and
always above the newest present). After a push, all but the newest
`keep_versions` versions are deleted; the newest is never deleted.

Only what vocdet pushed is ever deleted. Each push records its version in
`<base>/.vocdet-pushed` (one version a line; a hidden file, which TF Serving
ignores), and `prune` removes only recorded versions: a version an operator
copied in by hand, or one pushed before this record existed, counts towards
`keep_versions` but is kept, and the log says so.

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
# The versions vocdet pushed into a serving folder, one a line: the only ones `prune` deletes.
PUSHED_RECORD = ".vocdet-pushed"
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
    _record_pushed(base_directory, version)  # before the rename: a version vocdet published is always recorded
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


def pushed_versions(base_directory: str) -> set[int]:
    """The versions vocdet's pushes recorded in `base_directory` (present or not)."""
    path = os.path.join(base_directory, PUSHED_RECORD)
    if not fileio.exists(path):
        return set()
    with fileio.open(path, "r") as handle:
        return {int(line) for line in handle.read().split() if line.isdigit()}


def _record_pushed(base_directory: str, version: int) -> None:
    """Adds `version` to the record, rewritten whole through a rename (pushes hold the serving lock)."""
    recorded = sorted(pushed_versions(base_directory) | {version})
    path = os.path.join(base_directory, PUSHED_RECORD)
    with fileio.open(f"{path}.tmp", "w") as handle:
        handle.write("".join(f"{number}\n" for number in recorded))
    fileio.rename(f"{path}.tmp", path, overwrite=True)


def prune(base_directory: str, keep_versions: int) -> list[int]:
    """Deletes the versions vocdet pushed among all but the newest `keep_versions`; returns the deleted ones.

    A version vocdet did not push (not in `PUSHED_RECORD`) is never deleted.
    """
    present = versions(base_directory)
    older = present[: max(0, len(present) - keep_versions)]
    ours = pushed_versions(base_directory)
    doomed = [version for version in older if version in ours]
    for version in doomed:
        fileio.rmtree(os.path.join(base_directory, str(version)))
    kept = [version for version in older if version not in ours]
    if kept:
        _logger.warning(
            "Kept versions %s in %s beyond keep_versions=%d: vocdet did not push them (not in %s); remove them by hand",
            ", ".join(map(str, kept)), base_directory, keep_versions, PUSHED_RECORD,
        )
    return doomed
