"""tf.data input for the RetinaNet from Transform's output.

Reads the transformed examples (encoded JPEG + boxes already in the model's
`bounding_box_format`), decodes on the fly and applies the KerasCV guide's
augmentation, every layer told the `bounding_box_format`:

- train: a colour-only RandAugment on the image alone (see below), then
  RandomFlip(horizontal) (`compat.keras_cv.LeanRandomFlip`: KerasCV's, with a
  cheaper image flip) -> JitteredResize(image_size, jitter_scale)
  (`compat.keras_cv.TargetScaledJitteredResize`: its scale relative to the
  model's input, not to the image's own size);
- eval: Resizing(image_size, pad_to_aspect_ratio=True), the same resize the
  serving signature applies.

Each example is augmented on its own and its boxes padded to `max_boxes`
(KerasCV's dense format, class -1 for padding); a plain batch of those
fixed-size tensors is `(images, {"boxes", "classes"})`: faster on 2 cores than
KerasCV's layers on ragged batches (figures: bench/input_pipeline.py, docs/performance.md).
Objects beyond `max_boxes` in one image are cut; the Trainer counts them from
Transform's objects-per-image histogram and warns (see module.py).

The parsing spec is Transform's own (`TFTransformOutput.transformed_feature_spec`).
Under a distribution strategy the dataset is batched by the global batch and
Keras distributes it: split over the replicas, and over several workers
sharded by record (tf.data's DATA auto-shard policy: FILE sharding fails when a
split has fewer files than there are workers).

RandAugment: keras_cv.layers.RandAugment fails inside tf.data on
`{images, bounding_boxes}` dicts under Keras 3 (its RandomChoice accesses a
tensor across cond branches). The guide uses `geometric=False`, whose
operations only change colours and never move boxes, so applying it to the
image tensor alone is the same augmentation and works (tested: boxes unchanged).
"""

from __future__ import annotations

import keras_cv
import tensorflow as tf

from vocdet.components import features
from vocdet.components.compat import keras_cv as keras_cv_compat


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
    held_out_percent: int = 0,
) -> tf.data.Dataset:
    """Batches of `(images [B, S, S, 3] float 0-255, {"boxes": [B, max_boxes, 4], "classes": [B, max_boxes]})`.

    Records in the validation slice of `held_out_percent` (`in_validation_slice`) are left out.
    """
    paths = sorted(_glob(file_pattern))
    files = tf.data.Dataset.from_tensor_slices(paths)
    if training:
        files = files.shuffle(len(paths), seed=train_config.seed)
    dataset = files.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not training,
    )
    if held_out_percent:
        dataset = dataset.filter(lambda record: tf.logical_not(in_validation_slice(record, held_out_percent)))
    if training:
        dataset = dataset.shuffle(512, seed=train_config.seed).repeat()
    feature_spec = {
        key: spec
        for key, spec in tf_transform_output.transformed_feature_spec().items()
        if key in (features.IMAGE, features.BOXES, features.CLASSES)
    }
    augment = training_augmentation(model_config, train_config) if training else eval_resizing(model_config)
    max_boxes = model_config.max_boxes

    def prepare(record):
        example = augment(decode_example(record, feature_spec))
        return example["images"], dense_boxes(example["bounding_boxes"], max_boxes)

    # One image at a time, then a plain batch of fixed-size tensors: KerasCV's layers on
    # ragged batches loop over the images inside one map call, which is slower.
    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def training_augmentation(model_config, train_config):
    """The guide's training augmentation for one `{images, bounding_boxes}` example.

    Colours first, on the image as decoded (fewer pixels than the model's input
    for VOC-sized images, and the padding added later stays black), then
    RandomFlip(horizontal) and JitteredResize (its scale relative to the
    model's input, see `compat.keras_cv.TargetScaledJitteredResize`) on image and boxes
    together: with scale_factor (1, 1) a training example has exactly the
    geometry evaluation and serving give it (tested).
    """
    bounding_box_format = model_config.bounding_box_format
    size = model_config.image_size
    colour = colour_stage(train_config.rand_augment_magnitude)
    flip = keras_cv_compat.LeanRandomFlip(mode="horizontal", bounding_box_format=bounding_box_format)
    jitter = keras_cv_compat.TargetScaledJitteredResize(
        target_size=(size, size),
        scale_factor=tuple(train_config.jitter_scale),
        bounding_box_format=bounding_box_format,
    )

    def geometric(example):
        example = flip(example)
        return jitter({**example, "bounding_boxes": _dense_tensors(example["bounding_boxes"])})

    return lambda example: geometric(colour(example))


def eval_resizing(model_config):
    """Resizing(image_size, pad_to_aspect_ratio=True), for one example or a batch: eval's and serving's resize."""
    return keras_cv.layers.Resizing(
        model_config.image_size,
        model_config.image_size,
        bounding_box_format=model_config.bounding_box_format,
        pad_to_aspect_ratio=True,
    )


def colour_stage(magnitude: float):
    """The guide's RandAugment (colour operations only), changing the images alone; none at magnitude 0."""
    if magnitude == 0:
        return lambda example: example
    rand_augment = keras_cv.layers.RandAugment(
        value_range=(0, 255), rate=0.5, magnitude=magnitude, augmentations_per_image=2, geometric=False
    )
    return lambda example: {**example, "images": rand_augment(example["images"])}


def dense_boxes(bounding_boxes: dict, max_boxes: int) -> dict:
    """One image's boxes in KerasCV's dense format: `max_boxes` rows padded with -1.

    Boxes an augmentation marked invalid (class -1) are dropped before padding;
    objects beyond `max_boxes` are cut (the Trainer warns with a count).
    """
    bounding_boxes = _dense_tensors(bounding_boxes)
    valid = tf.not_equal(bounding_boxes["classes"], -1)
    # A batch of one ragged row: KerasCV's to_dense pads (and cuts) it to max_boxes.
    as_batch = {
        key: tf.RaggedTensor.from_tensor(tf.boolean_mask(value, valid)[tf.newaxis])
        for key, value in bounding_boxes.items()
    }
    dense = keras_cv.bounding_box.to_dense(as_batch, max_boxes=max_boxes)
    return {key: value[0] for key, value in dense.items()}


def _dense_tensors(bounding_boxes: dict) -> dict:
    """One image's boxes as plain tensors (KerasCV's layers may return RaggedTensors in tf.data)."""
    return {
        key: value.to_tensor() if isinstance(value, tf.RaggedTensor) else value for key, value in bounding_boxes.items()
    }


def _glob(file_pattern: str | list[str]) -> list[str]:
    patterns = [file_pattern] if isinstance(file_pattern, str) else file_pattern
    return [path for pattern in patterns for path in tf.io.gfile.glob(pattern)]


def count_records(file_pattern: str | list[str], held_out_percent: int = 0) -> int:
    """Number of records in gzipped TFRecord files (no parsing), but those of the validation slice."""
    return count_slice(file_pattern, held_out_percent)[0]


def count_slice(file_pattern: str | list[str], percent: int) -> tuple[int, int]:
    """(records outside, records inside) the validation slice of `percent` (no parsing)."""
    dataset = tf.data.TFRecordDataset(_glob(file_pattern), compression_type="GZIP")
    inside = dataset.map(lambda record: tf.cast(in_validation_slice(record, percent), tf.int64))
    total, held_out = inside.reduce(
        (tf.constant(0, tf.int64), tf.constant(0, tf.int64)), lambda counts, one: (counts[0] + 1, counts[1] + one)
    )
    return int(total - held_out), int(held_out)


def in_validation_slice(record: tf.Tensor, percent: int) -> tf.Tensor:
    """Whether a serialized example is in the stable validation slice of `percent` of the records.

    A fingerprint of the record itself (FarmHash, `tf.strings.to_hash_bucket_fast`): the same records
    in every run, on every worker, in any order, without an id feature.
    """
    if not percent:
        return tf.constant(False)
    return tf.strings.to_hash_bucket_fast(record, 100) < percent
