"""COCO cases drawn at random, and pycocotools scoring them: the reference the metric tests compare with."""

import contextlib
import io
import json

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vocdet.components.coco_evaluator import coco_metrics



def reference_scores(ground_truth, detections, tmp_path):
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(ground_truth))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        coco_dt = coco_gt.loadRes(detections)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return dict(zip(coco_metrics.METRIC_NAMES, evaluator.stats))


def random_case(seed, num_images=12, num_classes=5):
    rng = np.random.default_rng(seed)
    images, annotations, detections = [], [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "height": 300, "width": 400})
        for _ in range(int(rng.integers(0, 6))):
            x0, y0 = rng.uniform(0, 300), rng.uniform(0, 200)
            box = [x0, y0, x0 + rng.uniform(5, 100), y0 + rng.uniform(5, 100)]
            class_id = int(rng.integers(num_classes))
            annotations.append(coco_metrics.annotation(image_id, len(annotations) + 1, class_id, box, rng.random() < 0.1))
            if rng.random() < 0.8:  # a jittered, sometimes misclassified detection
                jitter = np.array(box) + rng.normal(0, 6, 4)
                jitter = np.concatenate([np.minimum(jitter[:2], jitter[2:]), np.maximum(jitter[:2], jitter[2:])])
                predicted = class_id if rng.random() < 0.8 else int(rng.integers(num_classes))
                detections += coco_metrics.detections_for_image(image_id, [jitter], [predicted], [rng.random()])
        for _ in range(int(rng.integers(0, 3))):  # false positives
            x0, y0 = rng.uniform(0, 300), rng.uniform(0, 200)
            detections += coco_metrics.detections_for_image(
                image_id, [[x0, y0, x0 + 30, y0 + 30]], [int(rng.integers(num_classes))], [rng.random()]
            )
    return coco_metrics.coco_ground_truth(images, annotations, [f"c{i}" for i in range(num_classes)]), detections
