"""COCO detection metrics exactly as pycocotools' COCOeval computes them.

Ground truth and detections are COCO-format dicts (boxes in pixel
`[x, y, width, height]`). The computation is faster-coco-eval's
`COCOeval_faster`, a C++ reimplementation of pycocotools' COCOeval that
gives the same numbers (the tests compare against pycocotools itself on
hand-built and random cases) several times faster (`make bench`).
VOC's `difficult` objects are marked `iscrowd=1`, COCO's way to make a ground
truth ignored: a detection that matches one is neither a true nor a false
positive.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from faster_coco_eval import COCO
from faster_coco_eval import COCOeval_faster as COCOeval

# COCOeval.stats order.
METRIC_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


def coco_ground_truth(images: list[dict], annotations: list[dict], class_names: list[str]) -> dict:
    """A COCO ground-truth dataset; category ids are class index + 1 (COCO starts at 1)."""
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": index + 1, "name": name} for index, name in enumerate(class_names)],
    }


def evaluate(ground_truth: dict, detections: list[dict]) -> dict[str, float]:
    """COCOeval's 12 summary numbers, keyed by METRIC_NAMES (-1 where undefined, as COCOeval)."""
    return summary(run_cocoeval(ground_truth, detections))


def summary(evaluator: COCOeval) -> dict[str, float]:
    return {name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats)}


def per_class(evaluator: COCOeval, class_names: list[str]) -> dict[str, dict[str, float]]:
    """COCO AP@[.5:.95] and AP50 for each class, from COCOeval's own precision array (-1: no objects)."""
    # precision: [IoU thresholds, recall levels, categories, area ranges (0: all), max dets (2: 100)]
    precision = evaluator.eval["precision"]
    result = {}
    for index, category_id in enumerate(evaluator.params.catIds):
        curve = precision[:, :, index, 0, 2]
        at_50 = curve[0]
        result[class_names[category_id - 1]] = {
            "AP": float(curve[curve > -1].mean()) if (curve > -1).any() else -1.0,
            "AP50": float(at_50[at_50 > -1].mean()) if (at_50 > -1).any() else -1.0,
        }
    return result


def run_cocoeval(ground_truth: dict, detections: list[dict]) -> COCOeval:
    """COCOeval after evaluate, accumulate and summarize (its printing silenced)."""
    coco_gt = _load_coco(ground_truth)
    if detections:
        with contextlib.redirect_stdout(io.StringIO()):
            # Copies (loadRes writes into them), each with a segmentation: without one, loadRes draws a
            # polygon for every box, a third of the time at 500,000 detections, that bbox scoring never reads.
            coco_dt = coco_gt.loadRes([{**detection, "segmentation": None} for detection in detections])
    else:
        # loadRes cannot take an empty list; an empty result set scores as COCOeval would.
        coco_dt = _load_coco({**ground_truth, "annotations": []})
    evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _load_coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = {key: list(value) for key, value in dataset.items()}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def annotation(image_id: int, annotation_id: int, class_id: int, box_xyxy, difficult: bool) -> dict:
    """One COCO ground-truth annotation from a pixel xyxy box."""
    x0, y0, x1, y1 = (float(value) for value in box_xyxy)
    width, height = x1 - x0, y1 - y0
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": int(class_id) + 1,
        "bbox": [x0, y0, width, height],
        "area": width * height,
        "iscrowd": int(bool(difficult)),
    }


def detections_for_image(image_id: int, boxes_xyxy: np.ndarray, classes: np.ndarray, scores: np.ndarray) -> list[dict]:
    """COCO result entries for one image's valid detections (class >= 0)."""
    results = []
    for box, class_id, score in zip(boxes_xyxy, classes, scores):
        if class_id < 0:
            continue
        x0, y0, x1, y1 = (float(value) for value in box)
        results.append(
            {"image_id": image_id, "category_id": int(class_id) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)}
        )
    return results
