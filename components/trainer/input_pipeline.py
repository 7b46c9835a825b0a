"""tf.data input for the RetinaNet from Transform's output.

Reads the transformed examples (encoded JPEG + boxes already in the model's
`bounding_box_format`), decodes on the fly and applies the KerasCV guide's
augmentation, every layer told the `bounding_box_format`:

- train: RandomFlip(horizontal) -> JitteredResize(image_size, jitter_scale),
  then a colour-only RandAugment on the images alone (see below);
- eval: Resizing(image_size, pad_to_aspect_ratio=True), the same resize the
  serving signature applies.

Then boxes are padded to `max_boxes` (KerasCV's dense format, class -1 for
padding) and the batch is `(images, {"boxes", "classes"})`. Objects beyond
`max_boxes` in one image are cut; the Trainer counts them from Transform's
objects-per-image histogram and warns (see module.py).

The parsing spec is Transform's own (`TFTransformOutput.transformed_feature_spec`).
Under a distribution strategy the dataset is batched by the global batch and
Keras distributes it: split over the replicas, and over several workers
sharded by record (tf.data's DATA auto-shard policy: FILE sharding fails when a
split has fewer files than there are workers).

RandAugment: keras_cv.layers.RandAugment fails inside tf.data on
`{images, bounding_boxes}` dicts under Keras 3 (its RandomChoice accesses a
tensor across cond branches). The guide uses `geometric=False`, whose
operations only change colours and never move boxes, so applying it to the
image tensor alone is the same augmentation and works.
"""

from __future__ import annotations

import keras_cv
import tensorflow as tf

from components import features


def decode_example(serialized: tf.Tensor, feature_spec: dict) -> dict:
    """One serialized transformed example -> KerasCV's `{images, bounding_boxes}`."""
    parsed = tf.io.parse_single_example(serialized, feature_spec)
    image = tf.io.decode_jpeg(parsed[features.IMAGE], channels=3)
    boxes = tf.reshape(tf.sparse.to_dense(parsed[features.BOXES]), [-1, 4])
    classes = tf.cast(tf.sparse.to_dense(parsed[features.CLASSES]), tf.float32)
    return {"images": tf.cast(image, tf.float32), "bounding_boxes": {"boxes": boxes, "classes": classes}}


def make_dataset(
    file_pattern: str | list[str],
    tf_transform_output,
    model_config,
    train_config,
    batch_size: int,
    training: bool,
) -> tf.data.Dataset:
    """Batches of `(images [B, S, S, 3] float 0-255, {"boxes": [B, max_boxes, 4], "classes": [B, max_boxes]})`."""
    bounding_box_format = model_config.bounding_box_format
    size = model_config.image_size
    paths = sorted(_glob(file_pattern))
    files = tf.data.Dataset.from_tensor_slices(paths)
    if training:
        files = files.shuffle(len(paths), seed=train_config.seed)
    dataset = files.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not training,
    )
    if training:
        dataset = dataset.shuffle(512, seed=train_config.seed).repeat()
    feature_spec = {
        key: spec
        for key, spec in tf_transform_output.transformed_feature_spec().items()
        if key in (features.IMAGE, features.BOXES, features.CLASSES)
    }
    dataset = dataset.map(lambda record: decode_example(record, feature_spec), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.ragged_batch(batch_size, drop_remainder=training)

    if training:
        geometric = keras_cv.layers.Augmenter(
            [
                keras_cv.layers.RandomFlip(mode="horizontal", bounding_box_format=bounding_box_format),
                keras_cv.layers.JitteredResize(
                    target_size=(size, size),
                    scale_factor=tuple(train_config.jitter_scale),
                    bounding_box_format=bounding_box_format,
                ),
            ]
        )
        dataset = dataset.map(geometric, num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.map(colour_stage(train_config.rand_augment_magnitude), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        resizing = keras_cv.layers.Resizing(
            size, size, bounding_box_format=bounding_box_format, pad_to_aspect_ratio=True
        )
        dataset = dataset.map(resizing, num_parallel_calls=tf.data.AUTOTUNE)

    max_boxes = model_config.max_boxes
    dataset = dataset.map(
        lambda batch: (batch["images"], keras_cv.bounding_box.to_dense(batch["bounding_boxes"], max_boxes=max_boxes)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def colour_stage(magnitude: float):
    """The guide's RandAugment (colour operations only) as a batch map that changes the images alone."""
    rand_augment = keras_cv.layers.RandAugment(
        value_range=(0, 255), rate=0.5, magnitude=magnitude, augmentations_per_image=2, geometric=False
    )
    return lambda batch: {**batch, "images": rand_augment(batch["images"])}


def _glob(file_pattern: str | list[str]) -> list[str]:
    patterns = [file_pattern] if isinstance(file_pattern, str) else file_pattern
    return [path for pattern in patterns for path in tf.io.gfile.glob(pattern)]


def count_records(file_pattern: str | list[str]) -> int:
    """Number of records in gzipped TFRecord files (no parsing)."""
    dataset = tf.data.TFRecordDataset(_glob(file_pattern), compression_type="GZIP")
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))
