"""Reading what ExampleGen wrote, and running `vocdet ingest`: shared by the ingest and layout tests."""

import glob
import os

import tensorflow as tf

from vocdet.components import features
from vocdet.pipeline import cli


def read_examples(examples_uri):
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


def read_images(examples_uri):
    """filename -> the example's image, decoded as training decodes it (`tf.io.decode_jpeg`, 3 channels)."""
    spec = {features.FILENAME: tf.io.FixedLenFeature([], tf.string), features.IMAGE: tf.io.FixedLenFeature([], tf.string)}
    images = {}
    for split_dir in glob.glob(os.path.join(examples_uri, "Split-*")):
        for record in tf.data.TFRecordDataset(glob.glob(os.path.join(split_dir, "*")), compression_type="GZIP"):
            parsed = tf.io.parse_single_example(record, spec)
            images[parsed[features.FILENAME].numpy().decode()] = tf.io.decode_jpeg(parsed[features.IMAGE], channels=3).numpy()
    return images


def ingest(capsys, *args):
    assert cli.main(["ingest", *args]) == 0
    out = capsys.readouterr().out
    examples_uri = next(line.split(": ", 1)[1] for line in out.splitlines() if line.strip().startswith("examples:"))
    return examples_uri, out
