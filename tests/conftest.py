"""Shared fixtures: small generated VOC datasets, built once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline import sample_data  # noqa: E402


@pytest.fixture(scope="session")
def small_voc_root(tmp_path_factory) -> str:
    """A 40-image sample in VOCdevkit layout; returns the folder holding VOC2007/."""
    root = tmp_path_factory.mktemp("voc")
    sample_data.make_sample(str(root), sample_data.SampleSpec(num_images=40, seed=7))
    return str(root)


@pytest.fixture(scope="session")
def tfds_data_dir(small_voc_root, tmp_path_factory) -> str:
    """tfds's own `voc/2007` build of the small sample (its download step pointed at the folder)."""
    import tensorflow_datasets as tfds

    work = tmp_path_factory.mktemp("tfds")
    extracted = work / "extracted"
    (extracted / "VOCdevkit").mkdir(parents=True)
    os.symlink(os.path.join(small_voc_root, "VOC2007"), extracted / "VOCdevkit" / "VOC2007")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            tfds.download.DownloadManager, "download_and_extract", lambda self, urls: {key: str(extracted) for key in urls}
        )
        builder = tfds.builder("voc/2007", data_dir=str(work / "tensorflow_datasets"))
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return str(work / "tensorflow_datasets")
