"""Which ML Metadata store an operation reads: a local output folder's, or the cluster's by URL.

Locally the store is the output folder's SQLite file (`PipelineConfig.metadata_path`); on a cluster it
is the store the Kubeflow tasks use (`kubeflow.metadata`, e.g. reached through `kubectl port-forward`),
with the password from the same environment variable the tasks read (`store.PASSWORD_ENV`).
"""

from __future__ import annotations

import os

from vocdet.pipeline import config as config_lib
from vocdet.pipeline.metadata import store as metadata_store

# A table every ML Metadata schema has (its environment: the schema version).
_MLMD_TABLE = "MLMDEnv"


def open_store(output_dir: str | None = None, metadata_url: str | None = None):
    """(ML Metadata store, its name for messages). Exactly one of the two is given.

    A local output folder without a store is a ValueError naming it (nothing has run there), never
    a new empty store.
    """
    if (output_dir is None) == (metadata_url is None):
        raise ValueError("give the local output folder (--output) or the cluster's metadata store (--metadata URL), not both")
    if metadata_url is not None:
        url = metadata_store.StoreUrl.parse(metadata_url, "--metadata")
        return metadata_store.connect(url, metadata_store.password_from_environment(url), wait_seconds=0), str(url)
    path = config_lib.metadata_path(output_dir)
    if os.path.lexists(path) and not os.path.isfile(path):
        raise ValueError(f"{path}: not a regular file, so not an ML Metadata store; give the --output a vocdet run wrote")
    if not os.path.isfile(path):
        raise ValueError(f"{output_dir}: no ML Metadata store ({path} does not exist); give the --output a vocdet run wrote")
    _check_local_store(path)
    url = metadata_store.StoreUrl(scheme="sqlite", path=os.path.abspath(path))
    return metadata_store.connect(url, wait_seconds=0), path


def _check_local_store(path: str) -> None:
    """An SQLite file that holds ML Metadata's tables, checked read-only: ML Metadata, given any other
    (a 0-byte file, someone's database), would write its schema into it and carry on with an empty store.
    A file that is not SQLite at all raises sqlite3's own error, which the CLI words as a corrupt store."""
    import contextlib
    import sqlite3

    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: empty (0 bytes), not an ML Metadata store; vocdet reads the store a vocdet run wrote "
                         "and never makes one: give the --output a vocdet run wrote, or restore the file from a backup")
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if _MLMD_TABLE not in tables:
        raise ValueError(f"{path}: an SQLite database without ML Metadata's tables ({_MLMD_TABLE} and the rest); vocdet "
                         "reads the store a vocdet run wrote and never makes one: give the --output a vocdet run wrote")
