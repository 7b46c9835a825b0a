"""Chooses the tf.distribute strategy from the machine the Trainer runs on.

- several workers in TF_CONFIG (several GPU nodes): MultiWorkerMirroredStrategy;
- several visible GPUs (one GPU node): MirroredStrategy over all of them;
- otherwise (one GPU, or CPU): the default one-device strategy.

Mixed precision (mixed_float16) is turned on only when GPUs are visible.
"""

from __future__ import annotations

import json
import logging
import os

import keras
import tensorflow as tf

_logger = logging.getLogger(__name__)


def worker_count() -> int:
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def choose_strategy() -> tf.distribute.Strategy:
    gpus = tf.config.list_logical_devices("GPU")
    if worker_count() > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    _logger.info(
        "Training with %s over %d replica(s)%s",
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
        ", mixed_float16" if gpus else "",
    )
    return strategy
