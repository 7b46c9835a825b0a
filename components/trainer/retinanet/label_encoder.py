"""The label encoder: ground-truth boxes to RetinaNet's per-anchor training targets.

KerasCV's encoder on our anchors (`anchors.anchor_generator`); with
`model.allow_low_quality_matches`, one that also gives every box its best anchor
(`compat.keras_cv.LowQualityMatchingLabelEncoder`: it replaces a KerasCV internal).
"""

from __future__ import annotations

import keras_cv

from vocdet.components.compat import keras_cv as keras_cv_compat
from vocdet.components.trainer.retinanet import anchors


def build_label_encoder(model_config) -> keras_cv.models.retinanet.LabelEncoder:
    """KerasCV's RetinaNet label encoder on our anchors, with low-quality matches when configured."""
    anchor_generator = anchors.anchor_generator(model_config.bounding_box_format, model_config.anchor_size)
    if model_config.allow_low_quality_matches:
        return keras_cv_compat.LowQualityMatchingLabelEncoder(
            bounding_box_format=model_config.bounding_box_format, anchor_generator=anchor_generator
        )
    return keras_cv.models.retinanet.LabelEncoder(
        bounding_box_format=model_config.bounding_box_format, anchor_generator=anchor_generator
    )
