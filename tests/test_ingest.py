"""`vocdet ingest`: both input paths through the pipeline's own ExampleGen."""

import glob
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from vocdet.components import features, voc_format
from vocdet.pipeline import cli

pytestmark = pytest.mark.e2e


def _read_examples(examples_uri):
    """filename -> (boxes [n, 4], labels, difficult) for every split."""
    spec = {
        features.FILENAME: tf.io.FixedLenFeature([], tf.string),
        features.BBOX: tf.io.VarLenFeature(tf.float32),
        features.LABEL: tf.io.VarLenFeature(tf.int64),
        features.IS_DIFFICULT: tf.io.VarLenFeature(tf.int64),
    }
    result = {}
    for split_dir in glob.glob(os.path.join(examples_uri, "Split-*")):
        split = os.path.basename(split_dir).removeprefix("Split-")
        for record in tf.data.TFRecordDataset(glob.glob(os.path.join(split_dir, "*")), compression_type="GZIP"):
            parsed = tf.io.parse_single_example(record, spec)
            result[parsed[features.FILENAME].numpy().decode()] = (
                split,
                tf.sparse.to_dense(parsed[features.BBOX]).numpy().reshape(-1, 4),
                tf.sparse.to_dense(parsed[features.LABEL]).numpy().tolist(),
                tf.sparse.to_dense(parsed[features.IS_DIFFICULT]).numpy().tolist(),
            )
    return result


def _ingest(capsys, *args):
    assert cli.main(["ingest", *args]) == 0
    out = capsys.readouterr().out
    examples_uri = next(line.split(": ", 1)[1] for line in out.splitlines() if line.strip().startswith("examples:"))
    return examples_uri, out


def test_tfds_builder_output_and_voc_folder_agree_box_for_box(small_voc_root, tfds_data_dir, tmp_path, capsys):
    tfds_dir = tfds_data_dir  # built by tfds's own `voc` builder (conftest)
    assert glob.glob(os.path.join(tfds_dir, "voc", "2007", "*", "voc-train.tfrecord*"))

    tfds_uri, tfds_out = _ingest(capsys, "--data", tfds_dir, "--output", str(tmp_path / "from-tfds"))
    voc_uri, _ = _ingest(capsys, "--data", small_voc_root, "--output", str(tmp_path / "from-voc"))
    assert "tfds data" in tfds_out

    from_tfds, from_voc = _read_examples(tfds_uri), _read_examples(voc_uri)
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

    examples_uri, out = _ingest(capsys, "--data", str(data), "--output", str(tmp_path / "out"))
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
    _, out = _ingest(capsys, "--data", str(root), "--spans", "--output", str(tmp_path / "newest"))
    assert "test: 4 examples" in out  # span 2

    first = tmp_path / "span1.yaml"
    first.write_text(yaml.safe_dump({"data": {"span": 1}}))
    _, out = _ingest(capsys, "--data", str(root), "--spans", "--config", str(first), "--output", str(tmp_path / "one"))
    assert "test: 6 examples" in out
