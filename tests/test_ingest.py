"""`vocdet ingest`: both input paths through the pipeline's own ExampleGen."""

import glob
import json
import os
import shutil

import numpy as np
import pytest

from vocdet.components import voc_format
from vocdet.pipeline import cli
from tests.examples_io import ingest, read_examples

pytestmark = pytest.mark.e2e


def test_tfds_builder_output_and_voc_folder_agree_box_for_box(small_voc_root, tfds_data_dir, tmp_path, capsys):
    tfds_dir = tfds_data_dir  # built by tfds's own `voc` builder (conftest)
    assert glob.glob(os.path.join(tfds_dir, "voc", "2007", "*", "voc-train.tfrecord*"))

    tfds_uri, tfds_out = ingest(capsys, "--data", tfds_dir, "--output", str(tmp_path / "from-tfds"))
    voc_uri, _ = ingest(capsys, "--data", small_voc_root, "--output", str(tmp_path / "from-voc"))
    assert "tfds data" in tfds_out

    from_tfds, from_voc = read_examples(tfds_uri), read_examples(voc_uri)
    assert set(from_tfds) == set(from_voc) and len(from_voc) == 40
    for filename, (split, boxes, labels, difficult) in from_voc.items():
        tfds_split, tfds_boxes, tfds_labels, tfds_difficult = from_tfds[filename]
        assert split == tfds_split, filename
        np.testing.assert_allclose(boxes, tfds_boxes, rtol=1e-6, err_msg=filename)
        assert labels == tfds_labels and difficult == tfds_difficult, filename


def test_bad_records_are_counted_reported_and_strict_fails(small_voc_root, tmp_path, capsys):
    data = tmp_path / "messy"
    shutil.copytree(os.path.join(small_voc_root, "VOC2007"), data / "VOC2007")
    voc = data / "VOC2007"
    train_ids = (voc / "ImageSets" / "Main" / "train.txt").read_text().split()
    (voc / "Annotations" / f"{train_ids[0]}.xml").write_text("<annotation><size>")  # does not parse
    (voc / "JPEGImages" / f"{train_ids[1]}.jpg").write_bytes(b"not a jpeg")  # unreadable
    os.remove(voc / "Annotations" / f"{train_ids[2]}.xml")  # listed without annotation

    examples_uri, out = ingest(capsys, "--data", str(data), "--output", str(tmp_path / "out"))
    assert f"train: {len(train_ids) - 3} examples (0 repaired, 3 rejected)" in out
    with open(os.path.join(examples_uri, "objects-label.labels.txt")) as handle:  # the class list travels with the data
        assert handle.read().split() == list(voc_format.VOC_CLASSES)
    with open(os.path.join(examples_uri, "ingest_report", "records-train.jsonl")) as handle:
        rows = [json.loads(line) for line in handle]
    rejected = {os.path.basename(row["file"]): row["reasons"] for row in rows if row["status"] == "rejected"}
    assert rejected == {
        f"{train_ids[0]}.xml": [rejected[f"{train_ids[0]}.xml"][0]],
        f"{train_ids[1]}.jpg": [rejected[f"{train_ids[1]}.jpg"][0]],
        f"{train_ids[2]}.xml": ["no annotation file"],
    }
    # The user's own files, not the links of the data root vocdet builds.
    assert all(row["file"].startswith(os.path.realpath(voc) + os.sep) for row in rows)
    assert rejected[f"{train_ids[0]}.xml"][0].startswith("XML does not parse")
    assert rejected[f"{train_ids[1]}.jpg"][0].startswith("unreadable image")

    assert cli.main(["ingest", "--data", str(data), "--output", str(tmp_path / "strict"), "--strict"]) == 2
    assert "error: strict mode: 3 records rejected" in capsys.readouterr().err


def test_spans_take_the_newest_unless_one_is_named(small_voc_root, tmp_path, capsys):
    import yaml

    root = tmp_path / "drops"
    for span, count in ((1, 4), (2, 6)):  # span 2 lists fewer test images, so the spans are told apart
        voc = root / f"span-{span}" / "VOC2007"
        shutil.copytree(os.path.join(small_voc_root, "VOC2007"), voc)
        test_list = voc / "ImageSets" / "Main" / "test.txt"
        test_list.write_text("\n".join(test_list.read_text().split()[: 10 - count]) + "\n")
    _, out = ingest(capsys, "--data", str(root), "--spans", "--output", str(tmp_path / "newest"))
    assert "test: 4 examples" in out  # span 2

    first = tmp_path / "span1.yaml"
    first.write_text(yaml.safe_dump({"data": {"span": 1}}))
    _, out = ingest(capsys, "--data", str(root), "--spans", "--config", str(first), "--output", str(tmp_path / "one"))
    assert "test: 6 examples" in out


def _copy_sample(small_voc_root, tmp_path):
    voc = tmp_path / "data" / "VOC2007"
    shutil.copytree(os.path.join(small_voc_root, "VOC2007"), voc)
    return tmp_path / "data", voc / "ImageSets" / "Main"


def test_leakage_and_repeats_are_reported_and_strict_fails_on_leakage(small_voc_root, tmp_path, capsys):
    data, lists = _copy_sample(small_voc_root, tmp_path)
    train_ids = (lists / "train.txt").read_text().split()
    test_ids = (lists / "test.txt").read_text().split()
    # One id listed twice in train; one train image also in test.
    (lists / "train.txt").write_text("\n".join(train_ids + [train_ids[0]]) + "\n")
    (lists / "test.txt").write_text("\n".join(test_ids + [train_ids[1]]) + "\n")

    examples_uri, out = ingest(capsys, "--data", str(data), "--output", str(tmp_path / "out"))
    report = os.path.join(examples_uri, "ingest_report", "duplicates.json")
    assert f"leakage: 1 images are in more than one split; see {report}" in out
    assert f"repeats: 1 images are listed twice in one split; see {report}" in out
    with open(report) as handle:
        duplicates = json.load(handle)
    voc = os.path.realpath(data / "VOC2007" / "JPEGImages")
    assert duplicates["repeated_within_split"] == [
        {"split": "train", "files": [os.path.join(voc, f"{train_ids[0]}.jpg")] * 2}
    ]
    assert duplicates["in_several_splits"] == [
        {"test": [os.path.join(voc, f"{train_ids[1]}.jpg")], "train": [os.path.join(voc, f"{train_ids[1]}.jpg")]}
    ]

    assert cli.main(["ingest", "--data", str(data), "--output", str(tmp_path / "strict"), "--strict"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("vocdet ingest: error: strict mode: 1 images are in more than one split (e.g. test: ")
    assert error.endswith("duplicates.json")


@pytest.mark.parametrize("case", ["empty list", "every record rejected"])
def test_a_split_with_no_example_stops_at_example_gen_naming_it(small_voc_root, tmp_path, capsys, case):
    data, lists = _copy_sample(small_voc_root, tmp_path)
    test_ids = (lists / "test.txt").read_text().split()
    if case == "empty list":
        (lists / "test.txt").write_text("")
    else:
        for image_id in test_ids:
            os.remove(data / "VOC2007" / "JPEGImages" / f"{image_id}.jpg")
    assert cli.main(["ingest", "--data", str(data), "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    listed = 0 if case == "empty list" else len(test_ids)
    assert error.startswith(f"vocdet ingest: error: split 'test' has no examples ({listed} listed, {listed} rejected); see ")
    assert error.endswith("records-test.jsonl")
