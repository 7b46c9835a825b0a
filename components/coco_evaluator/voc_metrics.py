"""The Pascal VOC detection metric: AP at IoU 0.5, per class, and its mean.

Matching follows the VOC devkit (`VOCevaldet`, and py-faster-rcnn's
`voc_eval.py`): per class, detections are taken in descending score; each
is matched to the ground truth of its image with the highest IoU; with
IoU >= 0.5 it is a true positive if that object is not yet matched, a false
positive if it is (a duplicate), and neither if the object is `difficult`.
Below 0.5 it is a false positive. Difficult objects do not count towards
recall.

Two ways to average precision:
- `11point`: VOC2007's, the mean of the best precision at recall >= 0, 0.1, ..., 1;
- `area`: VOC2010 onwards, the area under the precision envelope.

Boxes are continuous pixel `[x0, y0, x1, y1]`; IoU has no "+1 pixel" term
(the devkit's, for integer pixel indices), the same convention as COCO.
"""

from __future__ import annotations

import numpy as np

from vocdet.components.coco_evaluator import matching

IOU_THRESHOLD = 0.5


def average_precision(recall: np.ndarray, precision: np.ndarray, method: str) -> float:
    """AP from a precision/recall curve (detections in descending score)."""
    if method == "11point":
        return float(
            np.mean([precision[recall >= level].max() if (recall >= level).any() else 0.0 for level in np.arange(0, 1.1, 0.1)])
        )
    if method == "area":
        recall = np.concatenate([[0.0], recall, [1.0]])
        precision = np.concatenate([[0.0], precision, [0.0]])
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        steps = np.where(recall[1:] != recall[:-1])[0]
        return float(np.sum((recall[steps + 1] - recall[steps]) * envelope[steps + 1]))
    raise ValueError(f"method must be '11point' or 'area', got {method!r}")


def class_curve(ground_truth: dict, detections: list[tuple], iou_threshold: float = IOU_THRESHOLD):
    """Precision/recall for one class.

    Args:
      ground_truth: image id -> (boxes [n, 4] xyxy, difficult [n] bool).
      detections: (image id, score, box xyxy) tuples.

    Returns:
      (recall, precision, number of non-difficult objects); empty arrays when
      there are no detections.

    A detection's outcome depends only on the higher-scored detections of its own image, so the
    devkit's sequential pass runs image by image, over the images that have objects of the class;
    every detection elsewhere is a false positive (the same outcome, without the loop).
    """
    positives = sum(int((~difficult).sum()) for _, difficult in ground_truth.values())
    order = sorted(range(len(detections)), key=lambda index: -detections[index][1])  # stable, as the devkit sorts
    outcome = np.zeros(len(order), dtype=np.int8)  # 0: false positive, 1: true positive, -1: neither (difficult)
    positions_by_image: dict = {}
    for position, index in enumerate(order):
        image_id = detections[index][0]
        if image_id in ground_truth:
            positions_by_image.setdefault(image_id, []).append(position)
    for image_id, positions in positions_by_image.items():
        boxes, difficult = ground_truth[image_id]
        if len(boxes) == 0:
            continue
        overlaps = matching.pairwise_iou(np.array([detections[order[p]][2] for p in positions], dtype=np.float64), boxes)
        best = overlaps.argmax(axis=1)
        best_iou = overlaps[np.arange(len(positions)), best]
        matched = np.zeros(len(boxes), dtype=bool)
        for position, target, value in zip(positions, best, best_iou):
            if value < iou_threshold:
                continue
            if difficult[target]:
                outcome[position] = -1
            elif not matched[target]:
                matched[target] = True
                outcome[position] = 1
    outcome = outcome[outcome >= 0]
    true_positive = np.cumsum(outcome == 1, dtype=np.float64)
    false_positive = np.cumsum(outcome == 0, dtype=np.float64)
    recall = true_positive / max(positives, 1)
    precision = true_positive / np.maximum(true_positive + false_positive, np.finfo(np.float64).eps)
    return recall, precision, positives


def evaluate(ground_truth: dict, detections: dict, class_names: list[str]) -> tuple[dict, dict]:
    """VOC AP50 per class with both averaging methods, and their means over classes with objects.

    Args:
      ground_truth: class id -> image id -> (boxes [n, 4] xyxy, difficult [n] bool).
      detections: class id -> list of (image id, score, box xyxy).

    Returns:
      (results, curves): the numbers, and class name -> (recall, precision) arrays.
    """
    per_class, curves = {}, {}
    for class_id, name in enumerate(class_names):
        recall, precision, positives = class_curve(ground_truth.get(class_id, {}), detections.get(class_id, []))
        if positives == 0:
            continue  # VOC ignores classes with no (non-difficult) objects
        curves[name] = (recall, precision)
        per_class[name] = {
            "objects": positives,
            "AP50_11point": average_precision(recall, precision, "11point") if len(recall) else 0.0,
            "AP50_area": average_precision(recall, precision, "area") if len(recall) else 0.0,
        }
    results = {
        "mAP50_11point": float(np.mean([c["AP50_11point"] for c in per_class.values()])) if per_class else 0.0,
        "mAP50_area": float(np.mean([c["AP50_area"] for c in per_class.values()])) if per_class else 0.0,
        "per_class": per_class,
    }
    return results, curves


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of `boxes` [n, 4]."""
    return matching.pairwise_iou(np.asarray(box, dtype=np.float64).reshape(1, 4), boxes)[0] if len(boxes) else np.zeros(0)
