"""The Trainer's Keras callbacks, from `TrainConfig`.

- TensorBoard into the Trainer's `model_run` artefact (TFX and Kubeflow link it);
- BackupAndRestore: a preempted, killed or retried Trainer resumes from its
  last epoch instead of from zero (where the backup lives, and how it is
  written safely: `resume`);
- ModelCheckpoint: the weights of the epoch with the lowest training loss;
- for `lr_schedule="plateau"`: the warm-up (`StepWarmup`) then
  ReduceLROnPlateau. A LearningRateSchedule and ReduceLROnPlateau cannot
  share an optimizer (the callback assigns the rate), so the step schedule
  lives in the optimizer and the plateau one here;
- EarlyStopping when `early_stopping_patience` is set;
- `Throughput`: images/s in the progress bar and the logs.

The Trainer has no validation split during training (the train splits are
all training data and the eval split is the Evaluator's), so the monitored
quantity is the training loss.
"""

from __future__ import annotations

import os
import time

import keras

from vocdet.components.trainer import distribution, optimization, resume

MONITOR = "loss"


def make_callbacks(
    train_config, model_run_dir: str, backup_dir: str, global_batch_size: int
) -> list[keras.callbacks.Callback]:
    # Under MultiWorkerMirroredStrategy the workers other than the chief write to private folders.
    run_dir = distribution.task_dir(model_run_dir)
    callbacks = [
        Throughput(global_batch_size),
        keras.callbacks.TensorBoard(log_dir=run_dir, update_freq="epoch"),
        # `backup/` below the task's folder: a worker's folder is inside the chief's, which Keras
        # deletes when the chief ends, maybe while a worker still writes.
        resume.backup_callback(os.path.join(distribution.task_dir(backup_dir), "backup")),
        keras.callbacks.ModelCheckpoint(
            os.path.join(run_dir, "checkpoints", "best.weights.h5"),
            monitor=MONITOR,
            save_best_only=True,
            save_weights_only=True,
        ),
    ]
    if train_config.lr_schedule == "plateau":
        callbacks += [
            StepWarmup(train_config.learning_rate(global_batch_size), train_config.warmup_steps),
            keras.callbacks.ReduceLROnPlateau(
                monitor=MONITOR, factor=0.1, patience=train_config.plateau_patience, min_lr=1e-6, verbose=1
            ),
        ]
    if train_config.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=MONITOR, patience=train_config.early_stopping_patience, restore_best_weights=True, verbose=1
            )
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
    """Adds `images_per_s` (global batch / step time) to the logs the progress bar shows."""

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
