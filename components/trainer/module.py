"""The Trainer's `run_fn`: thin, as in TFX's templates.

It reads the pipeline configuration from `custom_config`, picks the
distribution strategy and the global batch, and hands off to the input
pipeline, the model builder, the callbacks and the serving export.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile

import tensorflow as tf
import tensorflow_transform as tft

from vocdet.components.trainer import (
    callbacks as callbacks_lib,
    checkpoint,
    data_profile,
    decoder_tuning,
    distribution,
    input_pipeline,
    optimization,
    resume,
    serving,
    warm_start,
)
from vocdet.components.settings import TrainerSettings
from vocdet.components.trainer import TRAINING_RECORD_FILE
from vocdet.components.trainer.retinanet import detector

_logger = logging.getLogger(__name__)

# Below this share of ground-truth boxes matched by an anchor, the Trainer warns.
MIN_ANCHOR_MATCH_RATE = 0.9


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (`tfx.components.Trainer(run_fn=...)`)."""
    # First: MultiWorkerMirroredStrategy configures collective ops, which must happen
    # before TensorFlow's context starts (loading the Transform output starts it).
    strategy = distribution.choose_strategy()
    config = TrainerSettings.from_custom_config(fn_args.custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    _profile_data(tf_transform_output, config, distribution.task_dir(fn_args.model_run_dir))
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

    with strategy.scope():
        model = detector.build_retinanet(config.model, num_classes=len(config.class_names))
        warm_started = config.train.warm_start and warm_start.restore(model, fn_args.base_model)
        if not warm_started and config.model.init_checkpoint:
            checkpoint.restore(model, config.model.init_checkpoint, config.model)
        optimization.compile_retinanet(model, config.train, global_batch_size, total_steps)

    _check_anchor_fit(model, fn_args.train_files, tf_transform_output, config)
    # Batched by the global batch; Keras splits it over the replicas and, with several
    # workers, shards it by record (see input_pipeline).
    train_dataset = input_pipeline.make_dataset(
        fn_args.train_files, tf_transform_output, config.model, config.train, global_batch_size, training=True
    )
    history = model.fit(
        train_dataset,
        epochs=config.train.epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks_lib.make_callbacks(
            config.train, fn_args.model_run_dir, resume.backup_dir(fn_args, fn_args.custom_config), global_batch_size
        ),
        # A progress bar for a person at a terminal, one line per epoch in logs.
        verbose=1 if sys.stdout.isatty() else 2,
    )

    if distribution.is_chief():
        _write_training_record(
            fn_args.model_run_dir, history.history, config, steps_per_epoch, global_batch_size,
            strategy.num_replicas_in_sync, _starting_weights(warm_started, fn_args.base_model, config.model),
        )  # fmt: skip
        # The decoder's NMS IoU and the recommended score threshold, on the tuning splits (the eval files).
        tuning = decoder_tuning.tune(
            model, fn_args.eval_files, tf_transform_output, config, config.train.batch_size_per_replica
        )
        serving.export_serving_model(
            model, tf_transform_output, config.model, config.class_names, fn_args.serving_model_dir,
            min_score=tuning.min_score if tuning else config.model.display_confidence_threshold,
        )  # fmt: skip
        if tuning:
            decoder_tuning.write_record(tuning, fn_args.serving_model_dir)
        warm_start.save(model, fn_args.serving_model_dir)
        _logger.info("Serving model written to %s", fn_args.serving_model_dir)
    else:
        # MultiWorkerMirroredStrategy: every worker takes part in the export; only the chief's copy is kept.
        with tempfile.TemporaryDirectory(prefix="vocdet-worker-export-") as scratch:
            serving.export_serving_model(
                model, tf_transform_output, config.model, config.class_names, scratch,
                min_score=config.model.display_confidence_threshold,
            )  # fmt: skip


def _starting_weights(warm_started: bool, base_model: str | None, model_config) -> str:
    """What training started from, in words: the warm start's model, a checkpoint, backbone weights, or nothing."""
    if warm_started:
        return f"warm start from the latest blessed model {base_model}"
    if model_config.init_checkpoint:
        return f"the checkpoint {model_config.init_checkpoint}"
    if model_config.backbone_weights:
        return f"the {model_config.backbone} backbone's weights {model_config.backbone_weights}, the rest initialised"
    return "random initialisation"


def _write_training_record(model_run_dir: str, history: dict, config, steps_per_epoch: int, global_batch_size: int,
                           replicas: int, starting_weights: str) -> None:
    """`training.json` in the model_run artefact: the final epoch's losses and throughput, the schedule, the start.

    What Kubeflow's UI shows for the Trainer (pipeline/kubeflow/outputs.py); after a resume, the
    history holds the epochs trained since.
    """
    record = {
        "final": {name: float(values[-1]) for name, values in history.items() if values},
        "epochs": config.train.epochs,
        "steps": steps_per_epoch * config.train.epochs,
        "global_batch_size": global_batch_size,
        "replicas": replicas,
        "starting_weights": starting_weights,
    }
    with tf.io.gfile.GFile(os.path.join(model_run_dir, TRAINING_RECORD_FILE), "w") as handle:
        handle.write(json.dumps(record, indent=1, sort_keys=True))


def _profile_data(tf_transform_output, config, model_run_dir: str) -> None:
    """Writes Transform's dataset histograms beside the TensorBoard logs; warns about what training will lose."""
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
    objects_cut, images_cut = data_profile.boxes_beyond(histograms, config.model.max_boxes)
    if objects_cut:
        _logger.warning(
            "%d objects in %d images are beyond model.max_boxes=%d and are left out of training; raise max_boxes",
            objects_cut,
            images_cut,
            config.model.max_boxes,
        )


def _check_anchor_fit(model, train_files, tf_transform_output, config) -> None:
    """Logs KerasCV's former percent_boxes_matched_with_anchor on augmented training batches."""
    sample = input_pipeline.make_dataset(
        train_files, tf_transform_output, config.model, config.train, config.train.batch_size_per_replica, training=True
    )
    rate = data_profile.anchor_match_rate(model, sample)
    if config.model.allow_low_quality_matches:
        # Every box trains: those below the IoU on their best anchor.
        _logger.info(
            "%.1f%% of training boxes have an anchor at IoU >= %.2f; the others train on their best anchor "
            "(model.allow_low_quality_matches)",
            100 * rate,
            model.label_encoder.positive_threshold,
        )
        return
    log = _logger.warning if rate < MIN_ANCHOR_MATCH_RATE else _logger.info
    log(
        "%.1f%% of training boxes are matched by an anchor at IoU >= %.2f%s",
        100 * rate,
        model.label_encoder.positive_threshold,
        "; the anchors do not fit the data (see the dataset profile; model.anchor_size, "
        "model.allow_low_quality_matches)"
        if rate < MIN_ANCHOR_MATCH_RATE
        else "",
    )
