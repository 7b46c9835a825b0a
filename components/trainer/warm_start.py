"""Warm start: a new Trainer run starting from the latest blessed model.

Scheduled retraining should not start from the backbone weights every week.
With `train.warm_start`, the pipeline feeds the latest blessed Model artifact
that `vocdet rollback` has not withdrawn (`coco_evaluator.baseline.LatestBlessedBaselineStrategy`
without a candidate; TFX's LatestBlessedModelStrategy knows no withdrawn mark) to the
Trainer's `base_model`, and `run_fn` loads its Keras weights before training.

The weights travel inside the Model artifact, beside the serving SavedModel:
`<model uri>/Format-Serving/` (what TFX's Pusher pushes) and
`<model uri>/Format-Keras/model.weights.h5` (what the next run starts from).
TFX's `fn_args.base_model` points at the base model's `Format-Serving`.
"""

from __future__ import annotations

import logging
import os

_logger = logging.getLogger(__name__)

KERAS_DIR = "Format-Keras"
WEIGHTS_FILE = "model.weights.h5"


def weights_path(serving_model_dir: str) -> str:
    """Where the Keras weights of the model exported to `serving_model_dir` live."""
    return os.path.join(os.path.dirname(os.path.normpath(serving_model_dir)), KERAS_DIR, WEIGHTS_FILE)


def save(model, serving_model_dir: str) -> str:
    path = weights_path(serving_model_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model.save_weights(path)
    return path


def restore(model, base_model: str | None) -> bool:
    """Loads the base model's weights into `model`; False (and a log line) when there is no base model.

    Raises ValueError, naming the file, when the base model's weights do not fit
    (another backbone, class list or head depth).
    """
    if not base_model:
        _logger.info("Warm start: no blessed model yet; starting from the configured backbone weights")
        return False
    path = weights_path(base_model)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: the blessed base model has no Keras weights to warm-start from")
    try:
        model.load_weights(path)
    except ValueError as error:
        raise ValueError(f"{path}: cannot warm-start from this model, its architecture differs ({str(error).splitlines()[0]})") from error
    _logger.info("Warm start: weights from the latest blessed model %s", path)
    return True
