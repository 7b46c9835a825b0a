"""Builds and compiles the KerasCV RetinaNet the KerasCV guide trains.

Backbones are KerasCV ResNet (v1) backbones built from their architecture
arguments, never from a preset: presets download from the internet, and
nothing here may. Pretrained weights come from a local Keras weights file
(`model.backbone_weights`).
"""

from __future__ import annotations

import math
import os

import keras
import keras_cv
from keras_cv.src.models.object_detection.retinanet.prediction_head import PredictionHead

# 3 scales x 3 aspect ratios, as KerasCV's RetinaNet.
ANCHORS_PER_LOCATION = 9

# Architecture arguments of KerasCV's ResNetV1 presets (keras_cv.models.ResNetBackbone).
BACKBONE_ARCHITECTURES = {
    "resnet18": dict(stackwise_blocks=[2, 2, 2, 2], block_type="basic_block"),
    "resnet34": dict(stackwise_blocks=[3, 4, 6, 3], block_type="basic_block"),
    "resnet50": dict(stackwise_blocks=[3, 4, 6, 3], block_type="block"),
    "resnet101": dict(stackwise_blocks=[3, 4, 23, 3], block_type="block"),
}


# Architecture arguments of KerasCV's CSPDarkNet presets (keras_cv.models.CSPDarkNetBackbone).
CSP_DARKNET_ARCHITECTURES = {
    "csp_darknet_tiny": dict(stackwise_channels=[48, 96, 192, 384], stackwise_depth=[1, 3, 3, 1]),
    "csp_darknet_s": dict(stackwise_channels=[64, 128, 256, 512], stackwise_depth=[1, 3, 3, 1]),
}
BACKBONES = tuple(BACKBONE_ARCHITECTURES) + tuple(CSP_DARKNET_ARCHITECTURES)


def build_backbone(name: str, weights_path: str | None = None) -> keras.Model:
    """A randomly initialised backbone, or one loaded from a local weights file."""
    if name in BACKBONE_ARCHITECTURES:
        backbone = keras_cv.models.ResNetBackbone(
            stackwise_filters=[64, 128, 256, 512],
            stackwise_strides=[1, 2, 2, 2],
            include_rescaling=True,
            **BACKBONE_ARCHITECTURES[name],
        )
    elif name in CSP_DARKNET_ARCHITECTURES:
        backbone = keras_cv.models.CSPDarkNetBackbone(include_rescaling=True, **CSP_DARKNET_ARCHITECTURES[name])
    else:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    if weights_path:
        if not os.path.exists(weights_path):
            raise FileNotFoundError(f"{weights_path}: backbone weights file not found (nothing is downloaded)")
        backbone.load_weights(weights_path)
    return backbone


def anchor_generator(bounding_box_format: str, anchor_size: float) -> keras_cv.layers.AnchorGenerator:
    """RetinaNet's anchors (3 scales x 3 aspect ratios on P3-P7), `anchor_size` x stride big.

    KerasCV's default is anchor_size=4 (32 px at stride 8); smaller inputs
    want smaller anchors, or small objects match no anchor and never train.
    """
    strides = [2**level for level in range(3, 8)]
    return keras_cv.layers.AnchorGenerator(
        bounding_box_format=bounding_box_format,
        sizes=[anchor_size * stride for stride in strides],
        aspect_ratios=[0.5, 1.0, 2.0],
        scales=[2**exponent for exponent in (0, 1 / 3, 2 / 3)],
        strides=strides,
        clip_boxes=True,
    )


def build_retinanet(model_config, num_classes: int) -> keras_cv.models.RetinaNet:
    """The RetinaNet for `model_config` (a `pipeline.config.ModelConfig`)."""
    backbone = build_backbone(model_config.backbone, model_config.backbone_weights)
    if model_config.freeze_backbone:
        backbone.trainable = False
    return keras_cv.models.RetinaNet(
        num_classes=num_classes,
        bounding_box_format=model_config.bounding_box_format,
        backbone=backbone,
        anchor_generator=anchor_generator(model_config.bounding_box_format, model_config.anchor_size),
        # KerasCV's heads, optionally shallower: most of a small RetinaNet's compute is here.
        classification_head=PredictionHead(
            output_filters=ANCHORS_PER_LOCATION * num_classes,
            bias_initializer=keras.initializers.Constant(-math.log((1 - 0.01) / 0.01)),
            num_conv_layers=model_config.head_conv_layers,
        ),
        box_head=PredictionHead(
            output_filters=ANCHORS_PER_LOCATION * 4,
            bias_initializer=keras.initializers.Zeros(),
            num_conv_layers=model_config.head_conv_layers,
        ),
        prediction_decoder=keras_cv.layers.MultiClassNonMaxSuppression(
            bounding_box_format=model_config.bounding_box_format,
            from_logits=True,
            iou_threshold=model_config.nms_iou_threshold,
            confidence_threshold=model_config.eval_confidence_threshold,
            max_detections=model_config.max_detections,
            max_detections_per_class=model_config.max_detections,
        ),
    )


def learning_rate_schedule(train_config, global_batch_size: int, total_steps: int):
    """The guide's shape: a stepped warm-up, then 10x drops at `decay_at` of training."""
    peak = train_config.learning_rate(global_batch_size)
    warmup = max(1, train_config.warmup_steps)
    boundaries = [warmup // 4, warmup // 2, warmup] + [max(warmup + 1, int(f * total_steps)) for f in train_config.decay_at]
    values = [peak * 0.001, peak * 0.25, peak * 0.5, peak] + [peak * 0.1**(i + 1) for i in range(len(train_config.decay_at))]
    # PiecewiseConstantDecay needs strictly increasing boundaries.
    for index in range(1, len(boundaries)):
        boundaries[index] = max(boundaries[index], boundaries[index - 1] + 1)
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries=boundaries, values=values)


def compile_retinanet(model, train_config, global_batch_size: int, total_steps: int) -> None:
    """Focal + smooth-L1 losses, and the guide's SGD with momentum and global_clipnorm.

    `train.optimizer="adam"` trades the guide's SGD for Adam, which trains a
    randomly initialised backbone much faster in the few hundred steps a CPU
    demo can afford.
    """
    learning_rate = learning_rate_schedule(train_config, global_batch_size, total_steps)
    if train_config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate, global_clipnorm=train_config.global_clipnorm)
    else:
        optimizer = keras.optimizers.SGD(
            learning_rate=learning_rate, momentum=train_config.momentum, global_clipnorm=train_config.global_clipnorm
        )
    model.compile(optimizer=optimizer, classification_loss="focal", box_loss="smoothl1")
