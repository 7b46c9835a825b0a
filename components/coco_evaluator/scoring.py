"""All the numbers for one set of detections: COCO (pycocotools) and VOC, overall and per class.

Input is COCO format (ground-truth dataset dict, list of result dicts), so
the pipeline's Evaluator and `vocdet evaluate` score exactly the same way.
`iscrowd` ground truth is VOC's `difficult`: ignored by both metrics.
"""

from __future__ import annotations

import collections

import numpy as np

from vocdet.components.coco_evaluator import coco_metrics, voc_metrics


def score(ground_truth: dict, detections: list[dict], class_names: list[str]) -> tuple[dict, dict]:
    """Returns ({"metrics", "per_class"}, VOC precision-recall curves by class name)."""
    evaluator = coco_metrics.run_cocoeval(ground_truth, detections)
    coco_per_class = coco_metrics.per_class(evaluator, class_names)
    voc, curves = voc_metrics.evaluate(*_voc_inputs(ground_truth, detections), class_names)
    metrics = {f"coco/{name}": value for name, value in coco_metrics.summary(evaluator).items()}
    metrics["voc/mAP50_11point"] = voc["mAP50_11point"]
    metrics["voc/mAP50_area"] = voc["mAP50_area"]
    objects = collections.Counter(a["category_id"] for a in ground_truth["annotations"] if not a.get("iscrowd"))
    per_class = {}
    for class_id, name in enumerate(class_names):
        voc_class = voc["per_class"].get(name, {})
        per_class[name] = {
            "objects": objects.get(class_id + 1, 0),
            "coco_AP": coco_per_class.get(name, {}).get("AP", -1.0),
            "coco_AP50": coco_per_class.get(name, {}).get("AP50", -1.0),
            "voc_AP50_11point": voc_class.get("AP50_11point", -1.0),
            "voc_AP50_area": voc_class.get("AP50_area", -1.0),
        }
    return {"metrics": metrics, "per_class": per_class}, curves


def _voc_inputs(ground_truth: dict, detections: list[dict]):
    boxes = collections.defaultdict(lambda: collections.defaultdict(list))
    for annotation in ground_truth["annotations"]:
        x, y, width, height = annotation["bbox"]
        boxes[annotation["category_id"] - 1][annotation["image_id"]].append(
            ([x, y, x + width, y + height], bool(annotation.get("iscrowd", 0)))
        )
    voc_ground_truth = {
        class_id: {
            image_id: (np.array([b for b, _ in objects], dtype=float).reshape(-1, 4), np.array([d for _, d in objects]))
            for image_id, objects in images.items()
        }
        for class_id, images in boxes.items()
    }
    voc_detections = collections.defaultdict(list)
    for detection in detections:
        x, y, width, height = detection["bbox"]
        voc_detections[detection["category_id"] - 1].append(
            (detection["image_id"], detection["score"], [x, y, x + width, y + height])
        )
    return voc_ground_truth, voc_detections
