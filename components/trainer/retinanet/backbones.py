"""The backbones the Trainer builds: KerasCV's ResNet and CSPDarkNet architectures, by name.

Built from their architecture arguments, never from a preset: presets download from the internet,
and nothing here may. Pretrained weights come from a local Keras weights file
(`model.backbone_weights`). A light module: KerasCV (and so TensorFlow) is imported only when a
backbone is built, so that configuration code can list the names.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

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
    import keras_cv

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
