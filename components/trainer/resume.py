"""Where a killed, preempted or retried Trainer finds the epochs it already trained.

TFX gives every Trainer execution a new `model_run` folder, so a backup kept
there is never seen by the next attempt: a rerun of `vocdet run` after a kill,
or Kubeflow's retry of the Trainer task. The backup lives instead beside those
folders, under the Trainer's node folder of the pipeline root, keyed by a hash
of everything that decides the training: the input files, the transform graph,
the base model and the Trainer's settings. The next attempt with the same
inputs and settings resumes from the last finished epoch; any change starts
afresh. Keras deletes the backup when training ends.

The backup must survive a kill during its own write: Keras 3.6's
BackupAndRestore writes in place (keras-team/keras#20463), so `backup_callback`
takes `compat.keras.backup_and_restore`, which works around that on the Keras
releases it was tested on.
"""

from __future__ import annotations

import hashlib
import json
import os

import keras

from vocdet.components.compat import keras as keras_compat


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
    return keras_compat.backup_and_restore(directory)
