"""Transform's box conversion: KerasCV's converter, per image, every format, edge cases."""

import io

import hypothesis.strategies as st
import keras_cv
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from PIL import Image

from vocdet.components import features
from vocdet.components.transform import convert_boxes, preprocessing_fn
from vocdet.pipeline import config as config_lib

FORMATS = [f for f in config_lib.BOUNDING_BOX_FORMATS]


@st.composite
def images_with_boxes(draw):
    """A batch of (height, width) and valid relative yxyx boxes, 0 to 6 per image."""
    batch = []
    for _ in range(draw(st.integers(1, 3))):
        height, width = draw(st.integers(16, 1200)), draw(st.integers(16, 1200))
        boxes = []
        for _ in range(draw(st.integers(0, 6))):
            y0, y1 = sorted(draw(st.tuples(st.floats(0, 1), st.floats(0, 1))))
            x0, x1 = sorted(draw(st.tuples(st.floats(0, 1), st.floats(0, 1))))
            boxes.append([y0, x0, y1, x1])
        batch.append(((height, width), boxes))
    return batch


def _ragged(batch):
    return tf.ragged.constant([boxes for _, boxes in batch], ragged_rank=1, inner_shape=(4,), dtype=tf.float32)


@settings(max_examples=25, deadline=None)
@given(batch=images_with_boxes(), target=st.sampled_from(FORMATS))
def test_matches_kerascv_and_round_trips(batch, target):
    shapes = tf.constant([shape for shape, _ in batch], tf.int64)
    converted = convert_boxes(_ragged(batch), shapes, source="rel_yxyx", bounding_box_format=target)
    back = convert_boxes(converted, shapes, source=target, bounding_box_format="rel_yxyx")
    for index, ((height, width), boxes) in enumerate(batch):
        if not boxes:
            assert converted[index].shape[0] == 0
            continue
        expected = keras_cv.bounding_box.convert_format(
            tf.constant(boxes, tf.float32), source="rel_yxyx", target=target, image_shape=(height, width, 3)
        )
        np.testing.assert_allclose(converted[index].numpy(), expected.numpy(), rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(back[index].numpy(), boxes, atol=1e-4)


def _jpeg(width, height):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _run_preprocessing_fn(examples, bounding_box_format):
    import tempfile

    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    spec = {
        features.IMAGE: tf.io.FixedLenFeature([], tf.string),
        features.FILENAME: tf.io.FixedLenFeature([], tf.string),
        features.BBOX: tf.io.VarLenFeature(tf.float32),
        features.LABEL: tf.io.VarLenFeature(tf.int64),
        features.IS_DIFFICULT: tf.io.VarLenFeature(tf.int64),
    }
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    custom_config = config_lib.demo().with_overrides({"model": {"bounding_box_format": bounding_box_format}}).transform_settings().to_custom_config()
    with tft_beam.Context(temp_dir=tempfile.mkdtemp(), force_tf_compat_v1=False):
        (transformed, _), _ = (examples, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, custom_config)
        )
    return transformed


@pytest.mark.parametrize("bounding_box_format", ["xywh", "xyxy", "rel_yxyx"])
def test_preprocessing_fn_edge_cases(bounding_box_format):
    rng = np.random.default_rng(0)
    many = rng.uniform(0, 1, (130, 4)).astype(np.float32)
    many = np.concatenate([np.minimum(many[:, :2], many[:, 2:]), np.maximum(many[:, :2], many[:, 2:])], axis=1)
    cases = {
        "empty.jpg": (320, 200, np.zeros((0, 4), np.float32)),
        "one.jpg": (320, 200, np.array([[0.1, 0.2, 0.5, 0.6]], np.float32)),
        "border.jpg": (640, 480, np.array([[0.0, 0.0, 1.0, 1.0], [0.5, 0.0, 1.0, 0.25]], np.float32)),
        "many.jpg": (500, 375, many),
    }
    examples = [
        {
            features.IMAGE: _jpeg(width, height),
            features.FILENAME: name.encode(),
            features.BBOX: boxes.reshape(-1),
            features.LABEL: np.arange(len(boxes), dtype=np.int64) % 20,
            features.IS_DIFFICULT: (np.arange(len(boxes)) % 7 == 0).astype(np.int64),
        }
        for name, (width, height, boxes) in cases.items()
    ]
    transformed = {row[features.FILENAME].decode(): row for row in _run_preprocessing_fn(examples, bounding_box_format)}
    for name, (width, height, boxes) in cases.items():
        row = transformed[name]
        assert (row[features.IMAGE_WIDTH], row[features.IMAGE_HEIGHT]) == (width, height)
        expected = keras_cv.bounding_box.convert_format(
            tf.constant(boxes), source="rel_yxyx", target=bounding_box_format, image_shape=(height, width, 3)
        ).numpy()
        np.testing.assert_allclose(np.reshape(row[features.BOXES], (-1, 4)), expected, rtol=1e-5, atol=1e-3)
        assert list(row[features.CLASSES]) == list(np.arange(len(boxes)) % 20)
        assert list(row[features.DIFFICULT]) == list((np.arange(len(boxes)) % 7 == 0).astype(int))


def test_bucket_quantiles():
    from vocdet.components.trainer.data_profile import bucket_quantiles

    histogram = {"0-8px": 10, "8-16px": 40, "16-32px": 40, "32-64px": 10}
    assert bucket_quantiles(histogram) == {"p10": "0-8px", "p25": "8-16px", "p50": "8-16px", "p75": "16-32px", "p90": "16-32px"}
