"""Evaluator speed at VOC2007-test size, against plain pycocotools in the same run.

4,952 images, about 12,000 ground-truth boxes over 20 classes, 100 detections
per image (jittered true boxes and background). Times:
  - reference: pycocotools' COCOeval (evaluate + accumulate + summarize);
  - vocdet: `scoring.score` (COCO's 12 numbers via faster-coco-eval, per-class
    AP, and VOC mAP both ways), then output by output what `deployment.analyse`
    adds: the matching at IoU 0.5, the curves and thresholds, the confusion
    matrix, and TIDE's error breakdown.
Targets (issue #26): scoring + curves + threshold + confusion matrix at least
2.5x faster than pycocotools' COCOeval alone; TIDE within one more COCOeval.
It also checks that the COCO numbers are equal, and TIDE's base AP50 to COCO's.
"""

from __future__ import annotations

import contextlib
import gc
import io
import time

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vocdet.components.coco_evaluator import coco_metrics, confusion, matching, operating_point, scoring, tide

NUM_IMAGES, NUM_CLASSES, DETECTIONS_PER_IMAGE = 4952, 20, 100


def make_case(seed: int = 0):
    rng = np.random.default_rng(seed)
    images, annotations, detections = [], [], []
    for image_id in range(1, NUM_IMAGES + 1):
        images.append({"id": image_id, "height": 375, "width": 500})
        truth = []
        for _ in range(rng.poisson(2.4)):
            x, y = rng.uniform(0, 400), rng.uniform(0, 280)
            box = [x, y, x + rng.uniform(10, 100), y + rng.uniform(10, 95)]
            class_id = int(rng.integers(NUM_CLASSES))
            truth.append((box, class_id))
            annotations.append(coco_metrics.annotation(image_id, len(annotations) + 1, class_id, box, rng.random() < 0.05))
        boxes, classes, scores = [], [], []
        for box, class_id in truth:
            jitter = np.array(box) + rng.normal(0, 5, 4)
            boxes.append(np.concatenate([np.minimum(jitter[:2], jitter[2:]), np.maximum(jitter[:2], jitter[2:])]))
            classes.append(class_id if rng.random() < 0.85 else int(rng.integers(NUM_CLASSES)))
            scores.append(rng.uniform(0.3, 1.0))
        while len(boxes) < DETECTIONS_PER_IMAGE:
            x, y = rng.uniform(0, 450), rng.uniform(0, 330)
            boxes.append([x, y, x + rng.uniform(5, 50), y + rng.uniform(5, 45)])
            classes.append(int(rng.integers(NUM_CLASSES)))
            scores.append(rng.uniform(0.0, 0.5))
        detections += coco_metrics.detections_for_image(image_id, np.array(boxes), np.array(classes), np.array(scores))
    names = [f"class{i}" for i in range(NUM_CLASSES)]
    return coco_metrics.coco_ground_truth(images, annotations, names), detections, names


def main() -> None:
    ground_truth, detections, names = make_case()
    print(f"coco: {len(ground_truth['images'])} images, {len(ground_truth['annotations'])} boxes, {len(detections)} detections")

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = ground_truth
        coco_gt.createIndex()
        reference = COCOeval(coco_gt, coco_gt.loadRes(detections), "bbox")
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    reference_seconds = time.perf_counter() - started
    # Keep its numbers and free the rest: millions of live objects (its evalImgs) would slow every
    # collection of Python's garbage collector during the timings below.
    reference_stats = np.array(reference.stats)
    del reference, coco_gt
    gc.collect()

    started = time.perf_counter()
    scores, _ = scoring.score(ground_truth, detections, names)
    vocdet_seconds = time.perf_counter() - started

    started = time.perf_counter()
    coco_metrics.evaluate(ground_truth, detections)
    coco_only_seconds = time.perf_counter() - started

    timings = {}
    started = time.perf_counter()
    matches = matching.match(ground_truth, detections, len(names))
    timings["matching at IoU 0.5"] = time.perf_counter() - started
    started = time.perf_counter()
    point = operating_point.operating_point(matches, names)
    timings["curves + F1-optimal thresholds"] = time.perf_counter() - started
    started = time.perf_counter()
    confusion.confusion_matrix(matches, point.best.threshold)
    timings["confusion matrix"] = time.perf_counter() - started
    started = time.perf_counter()
    errors = tide.breakdown(matches)
    tide_seconds = time.perf_counter() - started

    difference = max(abs(scores["metrics"][f"coco/{n}"] - v) for n, v in zip(coco_metrics.METRIC_NAMES, reference_stats))
    deployment_seconds = vocdet_seconds + sum(timings.values())
    print(f"coco: reference pycocotools COCOeval:                 {reference_seconds:6.1f} s")
    print(f"coco: vocdet COCO metrics only (faster-coco-eval):    {coco_only_seconds:6.1f} s")
    print(f"coco: vocdet Evaluator scoring (COCO + per class + VOC): {vocdet_seconds:6.1f} s")
    print(f"coco: ratio pycocotools / vocdet = {reference_seconds / vocdet_seconds:.2f}x; max |difference| {difference:.1e}")
    for name, seconds in timings.items():
        print(f"coco:   + {name + ':':40s} {seconds:6.2f} s")
    print(f"coco: scoring + curves + thresholds + confusion matrix: {deployment_seconds:6.1f} s, "
          f"ratio pycocotools / vocdet = {reference_seconds / deployment_seconds:.2f}x (target >= 2.5x)")  # fmt: skip
    print(f"coco:   + TIDE error breakdown: {tide_seconds:6.2f} s = {tide_seconds / reference_seconds:.2f} of one "
          f"pycocotools COCOeval (target <= 1); its base AP50 - COCO's AP50 = "
          f"{errors['base_AP50'] - reference_stats[1]:.1e}")  # fmt: skip
