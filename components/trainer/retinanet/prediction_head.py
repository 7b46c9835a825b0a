"""RetinaNet's two heads, run on every pyramid level: class logits and box offsets for each anchor.

KerasCV's prediction head, `model.head_conv_layers` deep and `model.pyramid_filters` wide
(`compat.keras_cv.NarrowPredictionHead`: KerasCV fixes 256). The classification head's bias
starts at the focal-loss prior (the RetinaNet paper's initialisation, arXiv:1708.02002: every
anchor is foreground with probability 0.01), so the many background anchors do not swamp the first steps.
"""

from __future__ import annotations

import math

import keras

from vocdet.components.compat import keras_cv as keras_cv_compat
from vocdet.components.trainer.retinanet.anchors import ANCHORS_PER_LOCATION

# The foreground probability the classification head starts from.
PRIOR_PROBABILITY = 0.01


def build_classification_head(model_config, num_classes: int) -> keras_cv_compat.NarrowPredictionHead:
    """One logit per class for each anchor, starting at `PRIOR_PROBABILITY`."""
    return keras_cv_compat.NarrowPredictionHead(
        output_filters=ANCHORS_PER_LOCATION * num_classes,
        bias_initializer=keras.initializers.Constant(-math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)),
        num_conv_layers=model_config.head_conv_layers,
        filters=model_config.pyramid_filters,
    )


def build_box_head(model_config) -> keras_cv_compat.NarrowPredictionHead:
    """Four box offsets for each anchor, starting at zero."""
    return keras_cv_compat.NarrowPredictionHead(
        output_filters=ANCHORS_PER_LOCATION * 4,
        bias_initializer=keras.initializers.Zeros(),
        num_conv_layers=model_config.head_conv_layers,
        filters=model_config.pyramid_filters,
    )
