"""The Trainer's `run_fn`: thin, as in TFX's templates.

It reads the pipeline configuration from `custom_config`, picks the
distribution strategy and the global batch, and hands off to the input
pipeline, the model builder and the serving export.
"""

from __future__ import annotations

import logging
import os
import sys

import keras
import tensorflow_transform as tft

from components.trainer import data_profile, distribution, input_pipeline, model as model_lib, serving
from pipeline.config import PipelineConfig

_logger = logging.getLogger(__name__)


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (`tfx.components.Trainer(run_fn=...)`)."""
    config = PipelineConfig.from_custom_config(fn_args.custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    _profile_data(tf_transform_output, config, fn_args.model_run_dir)
    strategy = distribution.choose_strategy()
    global_batch_size = config.train.batch_size_per_replica * strategy.num_replicas_in_sync

    num_train_examples = input_pipeline.count_records(fn_args.train_files)
    steps_per_epoch = config.train.steps_per_epoch or max(1, num_train_examples // global_batch_size)
    total_steps = steps_per_epoch * config.train.epochs
    _logger.info(
        "%d training images, global batch %d, %d steps per epoch, %d epochs",
        num_train_examples,
        global_batch_size,
        steps_per_epoch,
        config.train.epochs,
    )
    train_dataset = input_pipeline.make_dataset(
        fn_args.train_files, config.model, config.train, global_batch_size, training=True
    )

    with strategy.scope():
        model = model_lib.build_retinanet(config.model, num_classes=len(config.data.class_names))
        model_lib.compile_retinanet(model, config.train, global_batch_size, total_steps)

    callbacks = [
        keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch"),
        # A preempted or killed Trainer resumes from its last epoch instead of from zero.
        keras.callbacks.BackupAndRestore(backup_dir=os.path.join(fn_args.model_run_dir, "backup")),
    ]
    model.fit(
        train_dataset,
        epochs=config.train.epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        # A progress bar for a person at a terminal, one line per epoch in logs.
        verbose=1 if sys.stdout.isatty() else 2,
    )

    serving.export_serving_model(
        model,
        tf_transform_output,
        config.model,
        config.data.class_names,
        fn_args.serving_model_dir,
    )
    _logger.info("Serving model written to %s", fn_args.serving_model_dir)


def _profile_data(tf_transform_output, config, model_run_dir: str) -> None:
    """Writes Transform's dataset histograms beside the TensorBoard logs; warns when anchors do not fit."""
    histograms = data_profile.read_histograms(tf_transform_output)
    anchors = data_profile.anchor_report(histograms, config.model.anchor_size)
    path = data_profile.write_profile(histograms, anchors, model_run_dir)
    _logger.info("Dataset profile (objects per class, box sizes vs anchors): %s", path)
    if anchors["fraction_below_smallest_anchor"] > 0.1:
        _logger.warning(
            "%d of %d boxes (%.0f%%) are smaller than the smallest anchor (%.0f px at the model's input) can match; "
            "consider a smaller model.anchor_size or a larger model.image_size",
            anchors["boxes_below_smallest_anchor"],
            anchors["boxes"],
            100 * anchors["fraction_below_smallest_anchor"],
            anchors["smallest_anchor_px"],
        )
