"""The best validated epoch: Keras' ModelCheckpoint, whose best survives a killed Trainer, and which training ends on.

`BestCheckpoint` is `keras.callbacks.ModelCheckpoint(save_best_only=True, mode="max")` on the
blessing metric's validation log (`validation.monitor`), writing `checkpoints/best.weights.h5`
in the `model_run` artefact, with two additions:

- at the end of training the model takes the best epoch's weights (as EarlyStopping's
  `restore_best_weights`), so the serving export, the decoder tuning and the warm-start
  weights are all the best epoch's;
- each new best is also kept in the Trainer's resume folder (`resume.backup_dir`, beside Keras'
  BackupAndRestore backup): the weights as `best-epoch-<N>.weights.h5` and, after them,
  `best.json` naming that file, both written to a temporary name and renamed, so a kill at any
  point leaves a record and the weights it names. A retried Trainer that resumes from Keras'
  backup starts from that best, not from -inf, and still ends on the true best epoch. A
  Trainer that starts at epoch 0 (no backup: a new training) drops what an earlier one left.
"""

from __future__ import annotations

import json
import logging
import os

import keras
import tensorflow as tf

_logger = logging.getLogger(__name__)

STATE_FILE = "best.json"


class BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint of the best `monitor` (higher is better), resumable, restored at the end of training."""

    def __init__(self, filepath: str, monitor: str, state_dir: str):
        super().__init__(filepath, monitor=monitor, mode="max", save_best_only=True, save_weights_only=True)
        self.state_dir = state_dir
        self.best_epoch: int | None = None  # 1-based
        self.best_logs: dict[str, float] = {}
        self._started = False

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        state = read_state(self.state_dir)
        if state:
            self.best, self.best_epoch, self.best_logs = state["value"], state["epoch"], state["logs"]
            tf.io.gfile.makedirs(os.path.dirname(self.filepath))
            tf.io.gfile.copy(os.path.join(self.state_dir, state["weights"]), self.filepath, overwrite=True)
            _logger.info("resumed with the best epoch so far: %d (%s %.4f)", self.best_epoch, self.monitor, self.best)

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        if not self._started and epoch == 0 and self.best_epoch is not None:
            # Training starts afresh (Keras had no backup): an earlier attempt's best is not this one's.
            self.best, self.best_epoch, self.best_logs = float("-inf"), None, {}
            clear_state(self.state_dir)
        self._started = True

    def on_epoch_end(self, epoch, logs=None):
        before = self.best
        super().on_epoch_end(epoch, logs)
        if self.best != before:
            self.best_epoch = epoch + 1
            self.best_logs = {name: float(value) for name, value in (logs or {}).items()}
            self._keep(epoch + 1)

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        if self.best_epoch is not None and tf.io.gfile.exists(self.filepath):
            self.model.load_weights(self.filepath)
            _logger.info("training ends on the best epoch, %d (%s %.4f)", self.best_epoch, self.monitor, self.best)

    def _keep(self, epoch: int) -> None:
        """The new best's weights, then the record naming them, each renamed into place; older weights removed."""
        tf.io.gfile.makedirs(self.state_dir)
        name = f"best-epoch-{epoch}.weights.h5"
        partial = os.path.join(self.state_dir, name + ".partial.weights.h5")
        tf.io.gfile.copy(self.filepath, partial, overwrite=True)
        tf.io.gfile.rename(partial, os.path.join(self.state_dir, name), overwrite=True)
        state = {"epoch": epoch, "monitor": self.monitor, "value": float(self.best), "logs": self.best_logs, "weights": name}
        _write_json(os.path.join(self.state_dir, STATE_FILE), state)
        for stale in tf.io.gfile.glob(os.path.join(self.state_dir, "best-epoch-*.weights.h5")):
            if os.path.basename(stale) != name:
                tf.io.gfile.remove(stale)


def read_state(state_dir: str) -> dict | None:
    path = os.path.join(state_dir, STATE_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        state = json.loads(handle.read())
    return state if tf.io.gfile.exists(os.path.join(state_dir, state["weights"])) else None


def clear_state(state_dir: str) -> None:
    """Removes what `BestCheckpoint` kept in `state_dir` (its own files only)."""
    for path in tf.io.gfile.glob(os.path.join(state_dir, "best-epoch-*")) + [os.path.join(state_dir, STATE_FILE)]:
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)


def _write_json(path: str, value) -> None:
    partial = path + ".partial"
    with tf.io.gfile.GFile(partial, "w") as handle:
        handle.write(json.dumps(value, indent=1, sort_keys=True))
    tf.io.gfile.rename(partial, path, overwrite=True)
