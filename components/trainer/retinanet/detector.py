"""The RetinaNet the KerasCV guide trains, put together from this package's parts.

KerasCV's RetinaNet with our backbone, anchors and label encoder, narrower pyramid and heads, and
its NMS decoder set from the model settings. Trained on N replicas (MirroredStrategy, or
MultiWorkerMirroredStrategy) it takes the step one device would take on the same global batch:
its loss is normalised by the global batch's positive anchors
(`compat.keras_cv.GloballyNormalisedLoss`) and its train step fixed for multi-worker training
(`compat.keras.MultiReplicaTraining`); the optimizer clips the global gradient
(`optimization`). Those corrections depend on Keras and KerasCV internals, so building the model on
more than one replica checks the Keras release (`compat.keras.check_distributed`).
"""

from __future__ import annotations

import keras
import keras_cv
import tensorflow as tf

from vocdet.components.compat import keras as keras_compat
from vocdet.components.compat import keras_cv as keras_cv_compat
from vocdet.components.trainer.retinanet import backbones, feature_pyramid, label_encoder, prediction_head


@keras.saving.register_keras_serializable(package="vocdet")
class RetinaNet(keras_compat.MultiReplicaTraining, keras_cv_compat.GloballyNormalisedLoss, keras_cv.models.RetinaNet):
    """KerasCV's RetinaNet, its losses normalised by the global batch's positive anchors."""


def build_prediction_decoder(model_config) -> keras_cv.layers.MultiClassNonMaxSuppression:
    """Per-class non-max suppression of the decoded boxes, with the model settings' thresholds."""
    return keras_cv.layers.MultiClassNonMaxSuppression(
        bounding_box_format=model_config.bounding_box_format,
        from_logits=True,
        iou_threshold=model_config.nms_iou_threshold,
        confidence_threshold=model_config.eval_confidence_threshold,
        max_detections=model_config.max_detections,
        max_detections_per_class=model_config.max_detections,
    )


def build_retinanet(model_config, num_classes: int) -> RetinaNet:
    """The RetinaNet for `model_config` (a `components.settings.ModelConfig`)."""
    keras_compat.check_distributed(tf.distribute.get_strategy().num_replicas_in_sync)
    backbone = backbones.build_backbone(model_config.backbone, model_config.backbone_weights)
    if model_config.freeze_backbone:
        backbone.trainable = False
    return RetinaNet(
        num_classes=num_classes,
        bounding_box_format=model_config.bounding_box_format,
        backbone=backbone,
        label_encoder=label_encoder.build_label_encoder(model_config),
        # KerasCV's pyramid and heads, optionally narrower and shallower: most of a small
        # RetinaNet's compute is here.
        feature_pyramid=feature_pyramid.build_feature_pyramid(model_config),
        classification_head=prediction_head.build_classification_head(model_config, num_classes),
        box_head=prediction_head.build_box_head(model_config),
        prediction_decoder=build_prediction_decoder(model_config),
    )
