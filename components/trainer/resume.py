"""Where a killed, preempted or retried Trainer finds the epochs it already trained.

TFX gives every Trainer execution a new `model_run` folder, so a backup kept
there is never seen by the next attempt: a rerun of `vocdet run` after a kill,
or Kubeflow's retry of the Trainer task. The backup lives instead beside those
folders, under the Trainer's node folder of the pipeline root, keyed by a hash
of everything that decides the training: the input files, the transform graph,
the base model and the Trainer's settings. The next attempt with the same
inputs and settings resumes from the last finished epoch; any change starts
afresh. Keras deletes the backup when training ends.

Keras 3.6's BackupAndRestore writes its weights file in place, so a kill
during the write leaves a file that cannot be read, and the resume fails
(keras-team/keras#20463; Keras 3.7 adds `double_checkpoint`,
keras-team/keras#20465). `backup_callback` uses that option where Keras has it
and, before, a subclass that writes each file beside its target and renames
it over the target when complete.
"""

from __future__ import annotations

import hashlib
import json
import os

import keras
import tensorflow as tf

# The Keras versions whose BackupAndRestore writes in place and has no double_checkpoint.
_IN_PLACE_BACKUP_VERSIONS = ("3.6.",)


def backup_dir(fn_args, settings: dict) -> str:
    """`<pipeline root>/<Trainer node>/resume/<key>`: the same for every attempt with these inputs and settings.

    `model_run_dir` is TFX's `<pipeline root>/<node>/model_run/<execution id>`.
    """
    key = hashlib.sha256(
        json.dumps(
            {
                "train_files": sorted(fn_args.train_files),
                "eval_files": sorted(fn_args.eval_files or []),
                "transform_output": fn_args.transform_output,
                "base_model": fn_args.base_model or "",
                "settings": settings,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    node_dir = os.path.dirname(os.path.dirname(fn_args.model_run_dir.rstrip("/")))
    return os.path.join(node_dir, "resume", key)


def backup_callback(directory: str) -> keras.callbacks.BackupAndRestore:
    """Keras' BackupAndRestore, whose backup a kill during the write cannot make unreadable."""
    if keras.__version__.startswith(_IN_PLACE_BACKUP_VERSIONS):
        return AtomicBackupAndRestore(backup_dir=directory)
    try:
        return keras.callbacks.BackupAndRestore(backup_dir=directory, double_checkpoint=True)
    except TypeError:  # fail loudly: a Keras this module does not know
        raise RuntimeError(
            f"Keras {keras.__version__}: BackupAndRestore has no double_checkpoint; "
            "review components/trainer/resume.py (keras-team/keras#20463)"
        ) from None


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras 3.6's BackupAndRestore, writing each file to a temporary name and renaming it into place.

    Overrides Keras' private `_save_model` (3.6: weights to `_weights_path`, then the epoch to
    `_training_metadata_path`); `backup_callback` uses it for 3.6 only.
    """

    def _save_model(self):
        tf.io.gfile.makedirs(self.backup_dir)
        partial_weights = self._weights_path + ".partial.weights.h5"
        self.model.save_weights(filepath=partial_weights, overwrite=True)
        tf.io.gfile.rename(partial_weights, self._weights_path, overwrite=True)
        partial_metadata = self._training_metadata_path + ".partial"
        with tf.io.gfile.GFile(partial_metadata, "w") as handle:
            handle.write(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))
        tf.io.gfile.rename(partial_metadata, self._training_metadata_path, overwrite=True)
