"""Transform's `preprocessing_fn`: boxes into the model's bounding_box_format.

Runs in TFX's Transform component (tf.Transform), so the same graph converts
boxes for training and evaluation and ships inside the serving model: the
conversion cannot drift between them. Images stay encoded (decoding and
resizing happen on the fly in the Trainer's tf.data pipeline), which keeps the
transformed examples about the size of ExampleGen's.

Boxes arrive in tfds's relative `rel_yxyx`; absolute formats need each image's
size, which `tf.io.extract_jpeg_shape` reads from the JPEG header without
decoding (examples are always JPEG; the serving signature also takes PNG). The conversion itself is KerasCV's `convert_format`.
"""

from __future__ import annotations

from typing import Any

import keras_cv
import tensorflow as tf
import tensorflow_transform as tft

from vocdet.components import features
from vocdet.components.settings import TransformSettings


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict[str, Any]:
    """tf.Transform entry point; `custom_config` is `TransformSettings.to_custom_config()`."""
    settings = TransformSettings.from_custom_config(custom_config)
    bounding_box_format = settings.bounding_box_format
    images = _dense_strings(inputs[features.IMAGE])
    image_shapes = tf.map_fn(_image_shape, images, fn_output_signature=tf.TensorSpec([2], tf.int64))
    relative_boxes = _ragged_boxes(inputs[features.BBOX], num_images=tf.shape(images)[0])
    boxes = convert_boxes(
        relative_boxes,
        image_shapes,
        source=features.RAW_BOUNDING_BOX_FORMAT,
        bounding_box_format=bounding_box_format,
    )
    profile_dataset(
        relative_boxes,
        image_shapes,
        inputs[features.LABEL],
        settings.class_names,
        model_image_size=settings.image_size,
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


# Histograms of the whole dataset, computed by tf.Transform's vocabulary analyzer
# with frequencies: each is an asset file of "count bucket" lines in the transform
# graph (see `components.trainer.data_profile`, which reads them).
PROFILE_VOCABULARIES = ("class_objects", "box_width", "box_height", "box_scale", "box_aspect", "objects_per_image")
SIZE_BUCKET_EDGES = (8, 16, 32, 64, 128, 256, 512)
ASPECT_BUCKET_EDGES = (1 / 4, 1 / 3, 1 / 2, 1 / 1.5, 1.5, 2, 3, 4)


def profile_dataset(
    relative_boxes: tf.RaggedTensor, image_shapes: tf.Tensor, labels, class_names: list[str], model_image_size: int
) -> None:
    """Full-pass statistics that tell whether the anchors suit the data.

    Box sizes are measured at the model's input size (the image's long side
    resized to `model_image_size`, as evaluation and serving resize), the
    scale the anchors live in.
    """
    image_shapes = tf.cast(image_shapes, tf.float32)
    scale = model_image_size / tf.reduce_max(image_shapes, axis=1, keepdims=True)
    heights, widths = image_shapes[:, 0:1] * scale, image_shapes[:, 1:2] * scale
    box_heights = ((relative_boxes[..., 2] - relative_boxes[..., 0]) * heights).flat_values
    box_widths = ((relative_boxes[..., 3] - relative_boxes[..., 1]) * widths).flat_values
    label_values = labels.values if isinstance(labels, tf.SparseTensor) else tf.reshape(labels, [-1])
    tft.vocabulary(tf.gather(tf.constant(class_names), label_values), vocab_filename="class_objects", store_frequency=True)
    tft.vocabulary(_bucket_names(box_widths, SIZE_BUCKET_EDGES), vocab_filename="box_width", store_frequency=True)
    tft.vocabulary(_bucket_names(box_heights, SIZE_BUCKET_EDGES), vocab_filename="box_height", store_frequency=True)
    tft.vocabulary(
        _bucket_names(tf.sqrt(box_widths * box_heights), SIZE_BUCKET_EDGES), vocab_filename="box_scale", store_frequency=True
    )
    tft.vocabulary(
        _bucket_names(box_widths / tf.maximum(box_heights, 1e-6), ASPECT_BUCKET_EDGES),
        vocab_filename="box_aspect",
        store_frequency=True,
    )
    counts = tf.minimum(relative_boxes.row_lengths(), 99)
    tft.vocabulary(tf.strings.as_string(counts, width=2, fill="0"), vocab_filename="objects_per_image", store_frequency=True)


def _bucket_names(values: tf.Tensor, edges: tuple[float, ...]) -> tf.Tensor:
    """Bucket index as a sortable string, "00" for below edges[0] ... "NN" for above the last."""
    index = tf.searchsorted(tf.constant(edges, tf.float32), values, side="right")
    return tf.strings.as_string(index, width=2, fill="0")


def _image_shape(encoded: tf.Tensor) -> tf.Tensor:
    """(height, width): from the JPEG header without decoding, else (PNG, ... at serving) by decoding."""
    shape = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.extract_jpeg_shape(encoded)[:2],
        lambda: tf.shape(tf.io.decode_image(encoded, channels=3, expand_animations=False))[:2],
    )
    return tf.cast(shape, tf.int64)


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
