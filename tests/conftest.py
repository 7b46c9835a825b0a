"""Shared fixtures: small generated VOC datasets, built once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from vocdet.pipeline.data import sample as sample_data  # noqa: E402


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


@pytest.fixture(scope="session")
def pipeline_run(small_voc_root, tmp_path_factory):
    """One `vocdet run` (LocalDagRunner) on the small sample, shared by the e2e tests: (config, summary)."""
    import yaml

    from vocdet.pipeline import cli
    from vocdet.pipeline import config as config_lib
    from vocdet.pipeline.local import summary as run_summary

    output = tmp_path_factory.mktemp("run")
    overrides = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    # Two training steps cannot beat the default confidence threshold; keep every
    # candidate so the evaluation and the serving check have detections to score.
    overrides.write_text(yaml.safe_dump({"model": {"eval_confidence_threshold": 0.0}}))
    argv = [
        "run",
        "--data", small_voc_root,
        "--output", str(output),
        "--config", str(overrides),
        "--epochs", "1",
        "--steps-per-epoch", "2",
        "--batch-size", "4",
        "--blessing-threshold", "0",
    ]
    assert cli.main(argv) == 0
    config = config_lib.load("demo", str(overrides), {"output_dir": str(output)})
    return config, run_summary.summarize(config)


@pytest.fixture(scope="session")
def mysql():
    """A real MySQL-protocol server (MariaDB), with password authentication, for the session (tests/mysql.py)."""
    from tests.mysql import mysql_server

    with mysql_server() as server:
        yield server
