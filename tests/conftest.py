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
