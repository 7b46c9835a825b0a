"""Chooses the tf.distribute strategy from the machine the Trainer runs on.

- several workers in TF_CONFIG (several GPU nodes): MultiWorkerMirroredStrategy;
- several visible GPUs (one GPU node): MirroredStrategy over all of them;
- otherwise (one GPU, or CPU): the default one-device strategy.

Mixed precision (mixed_float16) is turned on only when GPUs are visible.

Under MultiWorkerMirroredStrategy every worker runs `run_fn` and must take
part in every step and in the export, but only the chief's files count: the
other workers write theirs to a private folder (`task_dir`), TensorFlow's
documented pattern, so no two processes write one file.
"""

from __future__ import annotations

import json
import logging
import os

import keras
import tensorflow as tf

_logger = logging.getLogger(__name__)


def _tf_config() -> dict:
    return json.loads(os.environ.get("TF_CONFIG") or "{}")


def worker_count() -> int:
    cluster = _tf_config().get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def is_chief() -> bool:
    """The chief writes the real outputs: task `chief`, or worker 0 when there is no chief."""
    config = _tf_config()
    task = config.get("task", {})
    if not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def task_dir(path: str) -> str:
    """`path` on the chief; a private `path/.worker-<index>` on the other workers."""
    if is_chief():
        return path
    return os.path.join(path, f".worker-{_tf_config()['task'].get('index', 0)}")


def choose_strategy() -> tf.distribute.Strategy:
    """Call before anything else runs TensorFlow ops: MultiWorkerMirroredStrategy must come first."""
    # MultiWorkerMirroredStrategy configures collective ops, which must happen before
    # TensorFlow's context starts; listing devices would start it.
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if worker_count() > 1 else None
    gpus = tf.config.list_logical_devices("GPU")
    if strategy is None:
        strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    _logger.info(
        "Training with %s over %d replica(s)%s",
        "MultiWorkerMirroredStrategy" if worker_count() > 1 else type(strategy).__name__,
        strategy.num_replicas_in_sync,
        ", mixed_float16" if gpus else "",
    )
    return strategy
