"""Which ML Metadata store an operation reads: a local output folder's, or the cluster's by URL.

Locally the store is the output folder's SQLite file (`PipelineConfig.metadata_path`); on a cluster it
is the store the Kubeflow tasks use (`kubeflow.metadata`, e.g. reached through `kubectl port-forward`),
with the password from the same environment variable the tasks read (`store.PASSWORD_ENV`).
"""

from __future__ import annotations

import os

from vocdet.pipeline import config as config_lib
from vocdet.pipeline.metadata import store as metadata_store


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
    if not os.path.isfile(path):
        raise ValueError(f"{output_dir}: no ML Metadata store ({path} does not exist); give the --output a vocdet run wrote")
    url = metadata_store.StoreUrl(scheme="sqlite", path=os.path.abspath(path))
    return metadata_store.connect(url, wait_seconds=0), path
