"""`vocdet backbone-weights PRESET --out FILE`: a KerasCV ImageNet backbone as a local weights file.

vocdet never downloads while it runs: `--backbone-weights FILE` (config `model.backbone_weights`)
takes a local Keras weights file. This command makes one, on a machine with network access: it
loads KerasCV's preset (from Kaggle, through KerasCV's own `from_preset`), copies its weights into
the backbone vocdet builds for that architecture, checking every shape, and saves that backbone's
weights, so the file loads exactly where the Trainer loads it.
"""

from __future__ import annotations

# KerasCV's ImageNet presets -> (their KerasCV backbone class, the vocdet backbone of that architecture).
IMAGENET_PRESETS = {
    "resnet50_imagenet": ("ResNetBackbone", "resnet50"),
    "csp_darknet_tiny_imagenet": ("CSPDarkNetBackbone", "csp_darknet_tiny"),
}


class DownloadError(Exception):
    """The preset could not be fetched (no network, or the hub refused)."""


def write_backbone_weights(preset: str, out: str) -> str:
    """Writes `preset`'s weights for vocdet's backbone to `out` (.weights.h5); returns the backbone name."""
    if preset not in IMAGENET_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(IMAGENET_PRESETS)}")
    if not out.endswith(".weights.h5"):
        raise ValueError(f"{out}: Keras weights files end in .weights.h5")
    import keras_cv

    from vocdet.components.trainer.retinanet import backbones

    keras_cv_class, name = IMAGENET_PRESETS[preset]
    try:
        pretrained = getattr(keras_cv.models, keras_cv_class).from_preset(preset)
    except Exception as error:  # the hub client raises its own, urllib's and socket's errors
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DownloadError(f"cannot download KerasCV preset {preset!r}; this command needs the network ({reason})") from None
    backbone = backbones.build_backbone(name)
    if len(pretrained.weights) != len(backbone.weights):
        raise ValueError(f"preset {preset!r} has {len(pretrained.weights)} weights, vocdet's {name} {len(backbone.weights)}")
    for source, target in zip(pretrained.weights, backbone.weights):
        if tuple(source.shape) != tuple(target.shape):
            raise ValueError(f"preset {preset!r}: {source.path} {tuple(source.shape)} does not fit {target.path} {tuple(target.shape)}")
        target.assign(source)
    backbone.save_weights(out)
    return name
