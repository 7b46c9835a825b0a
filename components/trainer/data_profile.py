"""The dataset profile: tf.Transform's full-pass histograms, made readable.

Transform's `preprocessing_fn` counts objects per class and buckets box
width, height, scale (sqrt of area) and aspect ratio at the model's input
size, and objects per image, with `tft.vocabulary(store_frequency=True)`.
This module reads those assets back into `data_profile.json` and a small
`data_profile.png`, and checks the box scales against the RetinaNet anchors:
a box much smaller than the smallest anchor cannot reach the label encoder's
IoU 0.5 with any anchor and never trains.
"""

from __future__ import annotations

import json
import math
import os

from vocdet.components import transform

PROFILE_JSON = "data_profile.json"
PROFILE_PNG = "data_profile.png"


def read_histograms(tf_transform_output) -> dict[str, dict[str, int]]:
    """Vocabulary name -> {bucket token: count} as Transform wrote them."""
    histograms = {}
    for name in transform.PROFILE_VOCABULARIES:
        counts = {}
        with open(tf_transform_output.vocabulary_file_by_name(name), "rb") as handle:
            for line in handle:
                count, _, token = line.decode().rstrip("\n").partition(" ")
                if token:
                    counts[token] = int(count)
        histograms[name] = dict(sorted(counts.items()))
    return histograms


def readable(histograms: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The same histograms with bucket tokens replaced by their ranges ("32-64px")."""
    labelled = {}
    for name, counts in histograms.items():
        edges = _EDGES.get(name)
        if name == "objects_per_image":
            labelled[name] = {str(int(token)): count for token, count in counts.items()}
        elif edges is None:
            labelled[name] = dict(counts)
        else:
            unit = "px" if name != "box_aspect" else ""
            labelled[name] = {f"{edges[int(t)]:.3g}-{edges[int(t) + 1]:.3g}{unit}": c for t, c in counts.items()}
    return labelled


def anchor_report(histograms: dict[str, dict[str, int]], anchor_size: float) -> dict:
    """How many boxes are too small for the smallest anchor (IoU 0.5 out of reach)."""
    smallest_anchor = anchor_size * 8  # P3's stride is 8
    reachable = smallest_anchor / math.sqrt(2)  # a square box this small has IoU 0.5 with the anchor
    edges = _EDGES["box_scale"]
    scales = histograms["box_scale"]
    total = sum(scales.values())
    too_small = sum(count for token, count in scales.items() if edges[int(token) + 1] <= reachable)
    return {
        "smallest_anchor_px": smallest_anchor,
        "boxes": total,
        "boxes_below_smallest_anchor": too_small,
        "fraction_below_smallest_anchor": too_small / total if total else 0.0,
    }


def boxes_beyond(histograms: dict[str, dict[str, int]], max_boxes: int) -> tuple[int, int]:
    """(objects cut, images cut) when every image keeps at most `max_boxes` objects."""
    per_image = {int(token): count for token, count in histograms["objects_per_image"].items()}
    objects = sum((objects - max_boxes) * images for objects, images in per_image.items() if objects > max_boxes)
    images = sum(images for objects, images in per_image.items() if objects > max_boxes)
    return objects, images


def anchor_match_rate(model, dataset, batches: int = 16) -> float:
    """Fraction of ground-truth boxes some anchor matches at the label encoder's positive IoU.

    KerasCV's former `percent_boxes_matched_with_anchor`, measured on augmented
    training batches: a box no anchor matches contributes no positive anchor
    and is never learnt.
    """
    import keras_cv
    from keras import ops

    matched = total = 0
    for images, targets in dataset.take(batches):
        anchors = model.anchor_generator(image_shape=tuple(images.shape[1:]))
        anchors = ops.concatenate(list(anchors.values()), axis=0)
        boxes = keras_cv.bounding_box.convert_format(
            targets["boxes"], source=model.bounding_box_format, target="xyxy", images=images
        )
        anchors = keras_cv.bounding_box.convert_format(
            anchors, source=model.anchor_generator.bounding_box_format, target="xyxy", images=images[0]
        )
        iou = keras_cv.bounding_box.compute_iou(boxes, anchors, bounding_box_format="xyxy")  # [B, boxes, anchors]
        real = ops.convert_to_numpy(targets["classes"]) >= 0
        best = ops.convert_to_numpy(ops.max(iou, axis=-1))
        matched += int((best[real] >= model.label_encoder.positive_threshold).sum())
        total += int(real.sum())
    return matched / total if total else 1.0


def write_profile(histograms: dict[str, dict[str, int]], anchor: dict, directory: str) -> str:
    """Writes data_profile.json and data_profile.png; returns the JSON path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labelled = readable(histograms)
    os.makedirs(directory, exist_ok=True)
    json_path = os.path.join(directory, PROFILE_JSON)
    quantiles = {name: bucket_quantiles(labelled[name]) for name in ("box_width", "box_height", "box_scale", "box_aspect")}
    with open(json_path, "w") as handle:
        json.dump({"histograms": labelled, "quantiles": quantiles, "anchors": anchor}, handle, indent=2)
    figure, axes = plt.subplots(2, 2, figsize=(11, 7))
    panels = [
        ("class_objects", "objects per class"),
        ("box_scale", f"box scale sqrt(w*h) at model input; smallest anchor {anchor['smallest_anchor_px']:.0f}px"),
        ("box_aspect", "box aspect ratio w/h"),
        ("objects_per_image", "objects per image"),
    ]
    for axis, (name, title) in zip(axes.flat, panels):
        labels, counts = list(labelled[name]), list(labelled[name].values())
        axis.bar(range(len(counts)), counts, color="#4477aa")
        axis.set_xticks(range(len(labels)), labels, rotation=60 if name == "class_objects" else 30, fontsize=7)
        axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(os.path.join(directory, PROFILE_PNG), dpi=90)
    plt.close(figure)
    return json_path


def bucket_quantiles(histogram: dict[str, int], levels=(0.1, 0.25, 0.5, 0.75, 0.9)) -> dict[str, str]:
    """The bucket each quantile falls in ({"p50": "16-32px", ...}), at the histogram's resolution."""
    total = sum(histogram.values())
    result, cumulative = {}, 0
    buckets = iter(histogram.items())
    label = None
    for level in levels:
        while cumulative < level * total:
            label, count = next(buckets)
            cumulative += count
        result[f"p{round(level * 100)}"] = label
    return result


_SIZE_EDGES = (0.0,) + transform.SIZE_BUCKET_EDGES + (math.inf,)
_EDGES = {
    "box_width": _SIZE_EDGES,
    "box_height": _SIZE_EDGES,
    "box_scale": _SIZE_EDGES,
    "box_aspect": (0.0,) + transform.ASPECT_BUCKET_EDGES + (math.inf,),
}
