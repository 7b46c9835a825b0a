"""Starting weights for a whole RetinaNet: vocdet's shipped sample checkpoint, or another checkpoint.

Training a detector from random weights on two CPU cores takes half an hour before it detects
anything. Like mmdetection's `load_from` and ultralytics' shipped `yolov8n.pt`, training can start
from a detector that already detects (`model.init_checkpoint`). vocdet ships one, `sample`: the
demo preset's architecture trained on the generated sample (`make sample-weights`, docs/training.md).

A checkpoint is a compressed `.npz`: the model's weights in Keras's order, stored as float16 (it
only starts training), and a `metadata` entry (JSON) with the architecture and class names it was
trained with. Restoring checks the architecture and copies every weight whose shape matches; the
rest (the classification head, for another number of classes) keeps its initialisation.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

_logger = logging.getLogger(__name__)

SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints")
# Checkpoints that ship with vocdet, by name.
SHIPPED = {"sample": "sample_csp_darknet_tiny_256.npz"}
# ModelConfig fields a checkpoint's weights depend on.
ARCHITECTURE_FIELDS = ("backbone", "pyramid_filters", "head_conv_layers", "anchor_size", "bounding_box_format")
METADATA_KEY = "metadata"


def resolve(name_or_path: str) -> str:
    """The file of a shipped checkpoint's name, or the path itself."""
    if name_or_path in SHIPPED:
        return os.path.join(SHIPPED_DIR, SHIPPED[name_or_path])
    return name_or_path


def architecture(model_config) -> dict:
    return {field: getattr(model_config, field) for field in ARCHITECTURE_FIELDS}


def save(model, path: str, model_config, class_names: list[str], provenance: str) -> None:
    """Writes `model`'s weights as a checkpoint (float16, compressed)."""
    metadata = {"architecture": architecture(model_config), "class_names": list(class_names), "provenance": provenance}
    arrays = {f"w{index:04d}": np.asarray(weight.numpy(), np.float16) for index, weight in enumerate(model.weights)}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez_compressed(path, **arrays, **{METADATA_KEY: np.array(json.dumps(metadata))})


def restore(model, name_or_path: str, model_config) -> tuple[int, int]:
    """Copies the checkpoint's weights into `model` where shapes match; returns (copied, kept)."""
    path = resolve(name_or_path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: model.init_checkpoint not found (shipped: {sorted(SHIPPED)})")
    with np.load(path) as checkpoint:
        metadata = json.loads(str(checkpoint[METADATA_KEY]))
        arrays = [checkpoint[f"w{index:04d}"] for index in range(len(checkpoint.files) - 1)]
    expected = architecture(model_config)
    differs = {key: (metadata["architecture"].get(key), value) for key, value in expected.items()
               if metadata["architecture"].get(key) != value}
    if differs or len(arrays) != len(model.weights):
        key, (theirs, ours) = next(iter(differs.items())) if differs else ("weights", (len(arrays), len(model.weights)))
        raise ValueError(f"{path}: checkpoint of another architecture (model.{key}: {theirs!r}, this model: {ours!r})")
    copied = kept = 0
    for weight, value in zip(model.weights, arrays):
        if tuple(weight.shape) == value.shape:
            weight.assign(value.astype(weight.dtype))
            copied += 1
        else:
            kept += 1
    _logger.info(
        "Initial weights from %s (%s): %d tensors copied, %d kept their initialisation%s",
        path,
        metadata.get("provenance", ""),
        copied,
        kept,
        " (another class list)" if kept else "",
    )
    return copied, kept
