"""The Trainer's Keras callbacks, from `TrainConfig`.

In the order Keras calls them at each epoch's end (each sees what those before it logged):

- `Throughput`: images/s and the epoch's training time (`epoch_seconds`) in the logs;
- `validation.Validation`, when the Trainer has held-out data: `val_*` losses and COCO metrics
  every `train.validation_freq` epochs;
- the checkpoint: with validation, `best_epoch.BestCheckpoint` on the blessing metric's
  validation log (mode max), which survives a resume and ends training on the best epoch;
  without, Keras' ModelCheckpoint of the lowest training loss (the last epoch is exported);
- `results.ResultsLog`: `results.csv`, one row per epoch;
- TensorBoard into the Trainer's `model_run` artefact (TFX and Kubeflow link it; `val_*` logs
  go to its validation scalars);
- BackupAndRestore: a preempted, killed or retried Trainer resumes from its
  last epoch instead of from zero (where the backup lives, and how it is
  written safely: `resume`). After the checkpoint and the results: a kill between them
  leaves those a step ahead of the backup, never behind it;
- for `lr_schedule="plateau"`: the warm-up (`StepWarmup`) then
  ReduceLROnPlateau. A LearningRateSchedule and ReduceLROnPlateau cannot
  share an optimizer (the callback assigns the rate), so the step schedule
  lives in the optimizer and the plateau one here;
- EarlyStopping when `early_stopping_patience` is set.

ReduceLROnPlateau and EarlyStopping watch what the checkpoint watches: the validation metric
(higher is better) when validation runs, else the training loss.
"""

from __future__ import annotations

import os
import time

import keras
import tensorflow as tf

from vocdet.components.trainer import best_epoch, distribution, optimization, results, resume

MONITOR = "loss"
# Beside Keras' backup in the Trainer's resume folder: the best epoch and the results rows so far.
RECORD_DIR = "record"
BEST_WEIGHTS = os.path.join("checkpoints", "best.weights.h5")


def record_dir(backup_dir: str) -> str:
    """Where this task keeps the best epoch and the rows across attempts (`resume.backup_dir`)."""
    return os.path.join(distribution.task_dir(backup_dir), RECORD_DIR)


def clear_record(backup_dir: str) -> None:
    """Removes what the checkpoint and the results log kept for a retry (their own files only)."""
    state_dir = record_dir(backup_dir)
    best_epoch.clear_state(state_dir)
    results.clear_state(state_dir)
    # The folder too, once empty: it is ours (and the resume folder is left as Keras leaves it).
    if tf.io.gfile.isdir(state_dir) and not tf.io.gfile.listdir(state_dir):
        tf.io.gfile.rmtree(state_dir)


def make_callbacks(
    train_config,
    model_run_dir: str,
    backup_dir: str,
    global_batch_size: int,
    validation: keras.callbacks.Callback | None = None,
    monitor: str | None = None,
) -> list[keras.callbacks.Callback]:
    """The callbacks; with `validation`, the checkpoint, the plateau and the early stop watch `monitor` (max)."""
    # Under MultiWorkerMirroredStrategy the workers other than the chief write to private folders.
    run_dir = distribution.task_dir(model_run_dir)
    state_dir = record_dir(backup_dir)
    callbacks: list[keras.callbacks.Callback] = [Throughput(global_batch_size)]
    if validation is not None:
        watched, mode = monitor, "max"
        callbacks += [validation, best_epoch.BestCheckpoint(os.path.join(run_dir, BEST_WEIGHTS), monitor, state_dir)]
    else:
        watched, mode = MONITOR, "min"
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                os.path.join(run_dir, BEST_WEIGHTS), monitor=MONITOR, save_best_only=True, save_weights_only=True
            )
        )
    callbacks += [
        results.ResultsLog(run_dir, state_dir),
        keras.callbacks.TensorBoard(log_dir=run_dir, update_freq="epoch"),
        # `backup/` below the task's folder: a worker's folder is inside the chief's, which Keras
        # deletes when the chief ends, maybe while a worker still writes.
        resume.backup_callback(os.path.join(distribution.task_dir(backup_dir), "backup")),
    ]
    if train_config.lr_schedule == "plateau":
        callbacks += [
            StepWarmup(train_config.learning_rate(global_batch_size), train_config.warmup_steps),
            keras.callbacks.ReduceLROnPlateau(
                monitor=watched, mode=mode, factor=0.1, patience=train_config.plateau_patience, min_lr=1e-6, verbose=1
            ),
        ]
    if train_config.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=watched, mode=mode, patience=train_config.early_stopping_patience,
                # With validation the checkpoint restores the best epoch, one a resume does not lose.
                restore_best_weights=validation is None, verbose=1,
            )  # fmt: skip
        )
    return callbacks


class StepWarmup(keras.callbacks.Callback):
    """The step schedule's warm-up for a plain-float learning rate; leaves it alone afterwards."""

    def __init__(self, peak: float, warmup_steps: int):
        super().__init__()
        self.peak, self.warmup_steps = peak, warmup_steps

    def on_train_batch_begin(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step <= self.warmup_steps:
            self.model.optimizer.learning_rate = optimization.warmup_learning_rate(self.peak, self.warmup_steps, step)


class Throughput(keras.callbacks.Callback):
    """Adds `images_per_s` (global batch / step time) and, at the epoch's end, its `epoch_seconds` to the logs."""

    def __init__(self, global_batch_size: int):
        super().__init__()
        self.global_batch_size = global_batch_size
        self._epoch_start = self._step_start = 0.0
        self._steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start, self._steps = time.perf_counter(), 0

    def on_train_batch_begin(self, batch, logs=None):
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        if logs is not None:
            logs["images_per_s"] = self.global_batch_size / max(time.perf_counter() - self._step_start, 1e-9)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            elapsed = max(time.perf_counter() - self._epoch_start, 1e-9)
            logs["images_per_s"] = self._steps * self.global_batch_size / elapsed
            logs["epoch_seconds"] = elapsed
