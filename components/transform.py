"""Transform's `preprocessing_fn`: boxes into the model's bounding_box_format.

Runs in TFX's Transform component (tf.Transform), so the same graph converts
boxes for training and evaluation and ships inside the serving model: the
conversion cannot drift between them. Images stay encoded (decoding and
resizing happen on the fly in the Trainer's tf.data pipeline), which keeps the
transformed examples about the size of ExampleGen's.

Boxes arrive in tfds's relative `rel_yxyx`; absolute formats need each image's
size, which `tf.io.extract_jpeg_shape` reads from the JPEG header without
decoding. The conversion itself is KerasCV's `convert_format`.
"""

from __future__ import annotations

from typing import Any

import keras_cv
import tensorflow as tf

from components import features


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict[str, Any]:
    """tf.Transform entry point; `custom_config` is `PipelineConfig.to_custom_config()`."""
    bounding_box_format = custom_config["model"]["bounding_box_format"]
    images = _dense_strings(inputs[features.IMAGE])
    image_shapes = tf.map_fn(
        lambda jpeg: tf.cast(tf.io.extract_jpeg_shape(jpeg)[:2], tf.int64),
        images,
        fn_output_signature=tf.TensorSpec([2], tf.int64),
    )
    relative_boxes = _ragged_boxes(inputs[features.BBOX], num_images=tf.shape(images)[0])
    boxes = convert_boxes(
        relative_boxes,
        image_shapes,
        source=features.RAW_BOUNDING_BOX_FORMAT,
        bounding_box_format=bounding_box_format,
    )
    return {
        features.IMAGE: images,
        features.FILENAME: _dense_strings(inputs[features.FILENAME]),
        features.IMAGE_HEIGHT: image_shapes[:, 0],
        features.IMAGE_WIDTH: image_shapes[:, 1],
        features.BOXES: boxes.merge_dims(1, 2).to_sparse(),
        features.CLASSES: inputs[features.LABEL],
        features.DIFFICULT: inputs[features.IS_DIFFICULT],
    }


def convert_boxes(
    boxes: tf.RaggedTensor, image_shapes: tf.Tensor, source: str, bounding_box_format: str
) -> tf.RaggedTensor:
    """Converts a ragged batch `[batch, (objects), 4]` image by image with KerasCV.

    `image_shapes` is `[batch, 2]` (height, width): absolute formats depend on
    each image's own size, which one batched call cannot take.
    """

    def convert_one(args):
        image_boxes, shape = args
        image_shape = tf.concat([tf.cast(shape, tf.float32), [3.0]], axis=0)
        return keras_cv.bounding_box.convert_format(
            image_boxes, source=source, target=bounding_box_format, image_shape=image_shape
        )

    return tf.map_fn(
        convert_one,
        (boxes, image_shapes),
        fn_output_signature=tf.RaggedTensorSpec([None, 4], tf.float32, ragged_rank=0),
    )


def _ragged_boxes(flat_boxes: tf.SparseTensor, num_images: tf.Tensor) -> tf.RaggedTensor:
    """`[batch, 4 * objects]` sparse floats -> `[batch, (objects), 4]` ragged.

    `num_images` fixes the batch size: at serving time the box feature is
    absent and tf.Transform feeds an empty tensor with no rows.
    """
    ragged = tf.RaggedTensor.from_value_rowids(
        flat_boxes.values, flat_boxes.indices[:, 0], nrows=tf.cast(num_images, tf.int64), validate=False
    )
    return tf.RaggedTensor.from_row_lengths(
        tf.reshape(ragged.flat_values, [-1, 4]), ragged.row_lengths() // 4, validate=False
    )


def _dense_strings(feature) -> tf.Tensor:
    """A single-valued string feature as a `[batch]` tensor, sparse or dense."""
    if isinstance(feature, tf.SparseTensor):
        feature = tf.sparse.to_dense(feature, default_value=b"")
    return tf.reshape(feature, [-1])
