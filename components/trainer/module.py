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
    best_epoch,
    callbacks as callbacks_lib,
    checkpoint,
    data_profile,
    decoder_tuning,
    distribution,
    input_pipeline,
    optimization,
    results,
    resume,
    serving,
    validation,
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

    # What validates: the held-out eval files, else a slice of the training records (validation_percent).
    held_out_files = _held_out_files(fn_args.train_files, fn_args.eval_files)
    slice_percent = _slice_percent(fn_args.train_files, held_out_files, config.train)
    num_train_examples = input_pipeline.count_records(fn_args.train_files, slice_percent)
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
        fn_args.train_files, tf_transform_output, config.model, config.train, global_batch_size, training=True,
        held_out_percent=slice_percent,
    )  # fmt: skip
    validation_callback, monitor, validation_note = _validation(
        fn_args, held_out_files, slice_percent, tf_transform_output, config
    )
    backup_dir = resume.backup_dir(fn_args, fn_args.custom_config)
    callbacks = callbacks_lib.make_callbacks(
        config.train, fn_args.model_run_dir, backup_dir, global_batch_size, validation_callback, monitor
    )
    model.fit(
        train_dataset,
        epochs=config.train.epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        # A progress bar for a person at a terminal, one line per epoch in logs.
        verbose=1 if sys.stdout.isatty() else 2,
    )
    # Every epoch, this attempt's and a resumed one's before it (the History callback has this attempt's only).
    rows = next(callback for callback in callbacks if isinstance(callback, results.ResultsLog)).rows
    best = next((callback for callback in callbacks if isinstance(callback, best_epoch.BestCheckpoint)), None)

    if distribution.is_chief():
        run_dir = fn_args.model_run_dir
        best_record = _best_record(best, rows, config, validation_note)
        _write_training_record(
            run_dir, rows, config, steps_per_epoch, global_batch_size, strategy.num_replicas_in_sync,
            _starting_weights(warm_started, fn_args.base_model, config.model), best_record, validation_note,
        )  # fmt: skip
        results.plot(rows, os.path.join(run_dir, results.PLOT_FILE), best_record["epoch"] if best_record else None,
                     results.column_of(monitor) if monitor else None)  # fmt: skip
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
    # Exported: what this task kept for a retry of it is no longer needed.
    callbacks_lib.clear_record(backup_dir)


def _held_out_files(train_files, eval_files) -> list[str]:
    """The Trainer's eval files when none of them is a training file (data.tuning_split held out), else none."""
    train, held_out = set(train_files or []), list(eval_files or [])
    return held_out if held_out and not train.intersection(held_out) else []


def _slice_percent(train_files, held_out_files: list[str], train_config) -> int:
    """The percent of training records held out to validate on: 0 with held-out files, without validation,
    or where the slice would leave nothing to train on or hold nothing."""
    if held_out_files or not train_config.validation_freq or not train_config.validation_percent:
        return 0
    outside, inside = input_pipeline.count_slice(train_files, train_config.validation_percent)
    return train_config.validation_percent if outside and inside else 0


def _validation(fn_args, held_out_files: list[str], slice_percent: int, tf_transform_output, config) -> tuple:
    """(the Validation callback or None, the monitored log or None, what validates, for the training record)."""
    train = config.train
    if not train.validation_freq:
        return _without_validation("train.validation_freq: 0", warn=False)
    if not held_out_files and not slice_percent:
        return _without_validation(
            "no data to spare: no held-out split (data.tuning_split) and no slice of the training records "
            f"(train.validation_percent: {train.validation_percent}; too few records?)"
        )
    files = held_out_files or fn_args.train_files
    validation_set = validation.load(files, tf_transform_output, config, train.batch_size_per_replica, slice_percent)
    if not validation_set.images:
        return _without_validation(f"the held-out split {'+'.join(config.tuning_splits) or '?'} has no images")
    source = (
        f"{train.validation_percent}% slice of the training records" if slice_percent
        else "held-out split " + ("+".join(config.tuning_splits) or "(the eval files)")
    )  # fmt: skip
    monitor = validation.monitor(config.tuning_metric)
    _logger.info(
        "validating every %d epoch(s) on %d images (%d objects), the %s; the exported epoch is the best by %s",
        train.validation_freq, validation_set.images, validation_set.objects, source, monitor,
    )  # fmt: skip
    callback = validation.Validation(validation_set, config.model, train.validation_freq, train.epochs)
    note = {"images": validation_set.images, "objects": validation_set.objects, "source": source,
            "every_epochs": train.validation_freq, "monitor": monitor}  # fmt: skip
    return callback, monitor, note


def _without_validation(reason: str, warn: bool = True) -> tuple:
    (_logger.warning if warn else _logger.info)("training without validation: %s", reason)
    return None, None, {"images": 0, "reason": reason}


def _best_record(best, rows: list[dict], config, validation_note: dict) -> dict | None:
    """The exported epoch when validation chose it: its number, its validation numbers, and why."""
    if best is None or best.best_epoch is None:
        return None
    validated = [row for row in rows if best.monitor in row]
    logs = best.best_logs
    return {
        "epoch": best.best_epoch,
        "epochs": len(rows),
        "monitor": best.monitor,
        "value": float(best.best),
        "validation": {name: value for name, value in logs.items() if name.startswith(validation.PREFIX)},
        "why": f"highest {best.monitor} (eval.blessing_metric {config.tuning_metric}) of {len(validated)} validated "
        f"epochs on {validation_note['images']} held-out images; its weights are exported",
    }


def _starting_weights(warm_started: bool, base_model: str | None, model_config) -> str:
    """What training started from, in words: the warm start's model, a checkpoint, backbone weights, or nothing."""
    if warm_started:
        return f"warm start from the latest blessed model {base_model}"
    if model_config.init_checkpoint:
        return f"the checkpoint {model_config.init_checkpoint}"
    if model_config.backbone_weights:
        return f"the {model_config.backbone} backbone's weights {model_config.backbone_weights}, the rest initialised"
    return "random initialisation"


def _write_training_record(model_run_dir: str, rows: list[dict], config, steps_per_epoch: int, global_batch_size: int,
                           replicas: int, starting_weights: str, best: dict | None, validation_note: dict) -> None:
    """`training.json` in the model_run artefact: every epoch's logs, the best epoch, the schedule, the start.

    What Kubeflow's UI and `vocdet runs` show for the Trainer (pipeline/kubeflow/outputs.py); after a
    resume, the history holds the earlier attempt's epochs too. `final` is the last epoch's logs;
    `best` (None without validation) the exported epoch's.
    """
    record = {
        "final": {name: value for name, value in rows[-1].items() if name != "epoch"} if rows else {},
        "history": rows,
        "best": best,
        "validation": validation_note,
        "exported_epoch": best["epoch"] if best else (rows[-1]["epoch"] if rows else None),
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
