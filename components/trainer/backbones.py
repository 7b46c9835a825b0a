"""The backbones the Trainer builds: KerasCV's ResNet and CSPDarkNet architectures, by name.

Built from their architecture arguments, never from a preset (presets download). A light module,
with no TensorFlow import, so that configuration code can list the names.
"""

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
