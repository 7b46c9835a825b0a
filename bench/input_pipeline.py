"""Training input speed: the Trainer's tf.data pipeline against the KerasCV guide's, same data.

Both read the same sample images and produce augmented, batched 640x640
examples with dense boxes:
  - guide: the guide's style on tfds-layout TFRecords (ExampleGen's output):
    parse -> decode -> boxes rel_yxyx->xywh with KerasCV -> ragged batch ->
    Augmenter(RandomFlip, JitteredResize) -> to_dense;
  - vocdet: `components.trainer.input_pipeline.make_dataset` on Transform's
    output (boxes already in the model's format): the same KerasCV layers on
    one example at a time, colours before the resize, then a plain batch.
The guide's RandAugment cannot run inside its Augmenter (see input_pipeline),
so both get the same colour-only RandAugment on images, then both none. Also
reports the training step time of the demo (CPU) configuration.
"""

from __future__ import annotations

import glob
import os
import shutil
import statistics
import tempfile
import time

import keras_cv
import tensorflow as tf
import tensorflow_transform as tft

from vocdet.components import features
from vocdet.components.trainer import input_pipeline, optimization
from vocdet.components.trainer.retinanet import detector
from vocdet.pipeline.data.root import prepare_data_root
from vocdet.pipeline.local import runner as local_runner
from vocdet.pipeline import config as config_lib

BATCH = 8
BATCHES = int(os.environ.get("BENCH_INPUT_BATCHES", "40"))
ROUNDS = 3


def guide_dataset(files: list[str], train_config) -> tf.data.Dataset:
    """The guide's pipeline (tfds.load replaced by reading tfds-layout TFRecords)."""
    spec = {
        features.IMAGE: tf.io.FixedLenFeature([], tf.string),
        features.BBOX: tf.io.VarLenFeature(tf.float32),
        features.LABEL: tf.io.VarLenFeature(tf.int64),
    }

    def unpackage(serialized):
        parsed = tf.io.parse_single_example(serialized, spec)
        image = tf.cast(tf.io.decode_jpeg(parsed[features.IMAGE], channels=3), tf.float32)
        boxes = tf.reshape(tf.sparse.to_dense(parsed[features.BBOX]), [-1, 4])
        boxes = keras_cv.bounding_box.convert_format(boxes, images=image, source="rel_yxyx", target="xywh")
        classes = tf.cast(tf.sparse.to_dense(parsed[features.LABEL]), tf.float32)
        return {"images": image, "bounding_boxes": {"classes": classes, "boxes": boxes}}

    augment = keras_cv.layers.Augmenter(
        [
            keras_cv.layers.RandomFlip(mode="horizontal", bounding_box_format="xywh"),
            keras_cv.layers.JitteredResize(target_size=(640, 640), scale_factor=(0.75, 1.3), bounding_box_format="xywh"),
        ]
    )
    colour = input_pipeline.colour_stage(train_config.rand_augment_magnitude)
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").repeat().shuffle(BATCH * 4)
    dataset = dataset.map(unpackage, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.apply(tf.data.experimental.dense_to_ragged_batch(BATCH))
    dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE)  # the guide passes training=True; Keras 3 layers take no such argument here
    dataset = dataset.map(colour, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.map(
        lambda x: (x["images"], keras_cv.bounding_box.to_dense(x["bounding_boxes"], max_boxes=32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def images_per_second(dataset: tf.data.Dataset) -> float:
    iterator = iter(dataset)
    for _ in range(3):  # warm-up: tracing, first files
        next(iterator)
    started = time.perf_counter()
    for _ in range(BATCHES):
        next(iterator)
    return BATCHES * BATCH / (time.perf_counter() - started)


def main() -> None:
    work = tempfile.mkdtemp(prefix="bench-input-")
    try:
        output = os.path.join(work, "run")
        # The pipeline up to Transform, one training step: the examples both sides read.
        overrides = {"output_dir": output, "train": {"epochs": 1, "steps_per_epoch": 1}, "eval": {"blessing_threshold": 0.0}}
        local_runner.run(*prepare_data_root(config_lib.load(config_lib.LOCAL_PRESET, None, overrides)))
        root = os.path.join(output, "pipeline_root")
        raw = sorted(glob.glob(os.path.join(root, "FileBasedExampleGen", "examples", "*", "Split-train", "*")))
        transformed = sorted(glob.glob(os.path.join(root, "Transform", "transformed_examples", "*", "Split-train", "*")))
        transform_output = tft.TFTransformOutput(max(glob.glob(os.path.join(root, "Transform", "transform_graph", "*"))))
        guide_recipe = config_lib.voc_guide()  # 640 px, jitter (0.75, 1.3), RandAugment magnitude 0.25
        colour_settings = {
            "the guide's colour RandAugment": guide_recipe.train.rand_augment_magnitude,
            "no colour": 0.0,
        }
        for colour, magnitude in colour_settings.items():
            config = guide_recipe.with_overrides({"train": {"rand_augment_magnitude": magnitude}})
            datasets = {
                "guide": guide_dataset(raw, config.train),
                "vocdet": input_pipeline.make_dataset(
                    transformed, transform_output, config.model, config.train, BATCH, training=True
                ),
            }
            # Alternating rounds, median of each: a slow spell of a shared machine hits both sides.
            rounds = {name: [] for name in datasets}
            for _ in range(ROUNDS):
                for name, dataset in datasets.items():
                    rounds[name].append(images_per_second(dataset))
            guide, ours = (statistics.median(rounds[name]) for name in ("guide", "vocdet"))
            print(
                f"input_pipeline ({colour} on both): guide {guide:.1f} images/s, vocdet {ours:.1f} images/s, "
                f"ratio {ours / guide:.2f}x (640x640, batch {BATCH}, "
                f"median of {ROUNDS} alternating rounds of {BATCHES} batches)"
            )

        demo = config_lib.demo()
        dataset = input_pipeline.make_dataset(transformed, transform_output, demo.model, demo.train, BATCH, training=True)
        model = detector.build_retinanet(demo.model, len(demo.data.class_names))
        optimization.compile_retinanet(model, demo.train, BATCH, 100)
        batches = dataset.take(13).cache()
        for _ in batches:  # fill the cache: the step time below leaves out the input pipeline
            pass
        model.fit(batches.take(3), verbose=0)  # tracing
        started = time.perf_counter()
        model.fit(batches.skip(3), verbose=0)
        step = (time.perf_counter() - started) / 10
        print(f"input_pipeline: demo train step {step:.2f}s (batch {BATCH}, {demo.model.image_size}px, {demo.model.backbone})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
