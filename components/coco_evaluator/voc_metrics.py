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
    """
    positives = sum(int((~difficult).sum()) for _, difficult in ground_truth.values())
    matched = {image_id: np.zeros(len(boxes), dtype=bool) for image_id, (boxes, _) in ground_truth.items()}
    order = sorted(range(len(detections)), key=lambda index: -detections[index][1])
    true_positive, false_positive = [], []
    for index in order:
        image_id, _, box = detections[index]
        boxes, difficult = ground_truth.get(image_id, (np.zeros((0, 4)), np.zeros(0, dtype=bool)))
        overlaps = iou(np.asarray(box, dtype=np.float64), boxes)
        best = int(np.argmax(overlaps)) if len(overlaps) else -1
        if best >= 0 and overlaps[best] >= iou_threshold:
            if difficult[best]:
                continue  # neither a true nor a false positive
            if not matched[image_id][best]:
                matched[image_id][best] = True
                true_positive.append(1)
                false_positive.append(0)
                continue
        true_positive.append(0)
        false_positive.append(1)
    true_positive = np.cumsum(true_positive, dtype=np.float64)
    false_positive = np.cumsum(false_positive, dtype=np.float64)
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
    if len(boxes) == 0:
        return np.zeros(0)
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    intersection = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return intersection / np.maximum(area + areas - intersection, np.finfo(np.float64).eps)
