"""How to deploy: COCO's matching redone (against pycocotools), the F1-optimal cut, the confusion
matrix, TIDE's error kinds and the decoder sweep, on cases whose answers are known by hand."""

import contextlib
import dataclasses
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.coco_cases import random_case
from vocdet.components.coco_evaluator import coco_metrics, confusion, matching, operating_point, tide


def _case(objects, detections, num_classes=2):
    """objects: (image, class, [x0, y0, x1, y1], difficult); detections: (image, class, box, score)."""
    images = sorted({o[0] for o in objects} | {d[0] for d in detections})
    ground_truth = coco_metrics.coco_ground_truth(
        [{"id": i, "height": 200, "width": 200} for i in images],
        [coco_metrics.annotation(i, n + 1, c, box, difficult) for n, (i, c, box, difficult) in enumerate(objects)],
        [f"c{k}" for k in range(num_classes)],
    )
    results = [r for i, c, box, s in detections for r in coco_metrics.detections_for_image(i, [box], [c], [s])]
    return ground_truth, results


def _pycocotools(ground_truth, detections):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = ground_truth
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes([dict(d) for d in detections]), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


@pytest.mark.parametrize("seed", range(12))
def test_matching_and_ap50_equal_pycocotools(seed):
    ground_truth, detections = random_case(seed, num_images=15, num_classes=4)
    rng = np.random.default_rng(seed)
    for detection in detections[:8]:  # near-duplicates, so that some detections find an object already found
        x, y, w, h = detection["bbox"]
        detections.append({**detection, "bbox": [x + rng.normal(0, 2), y, w, h], "score": float(rng.random())})
    reference = _pycocotools(ground_truth, detections)
    matches = matching.match(ground_truth, detections, 4)
    true_positives = ignored = 0
    for image in reference.evalImgs:
        if image is not None and image["aRng"] == [0, 1e10]:
            true_positives += int(((image["dtMatches"][0] > 0) & ~image["dtIgnore"][0]).sum())
            ignored += int(image["dtIgnore"][0].sum())
    assert matches.true_positive.sum() == true_positives and matches.ignored.sum() == ignored
    aps = matching.average_precision(
        matches.score, matches.category, matches.true_positive, matches.false_positive, matches.positives(), matches.image
    )
    assert matching.mean_ap(aps) == pytest.approx(reference.stats[1], abs=1e-12)
    assert tide.breakdown(matches)["base_AP50"] == pytest.approx(reference.stats[1], abs=1e-6)


def _box(i):
    return [20.0 * i, 0.0, 20.0 * i + 10, 10.0]


def test_f1_optimal_threshold():
    # 4 objects; by score: TP, TP, FP, TP, FP, FP. F1 by cut: .4, .667, .571, .75, .667, .6: best at 0.6.
    objects = [(1, 0, _box(i), False) for i in range(4)]
    detections = [(1, 0, _box(0), 0.9), (1, 0, _box(1), 0.8), (1, 0, _box(7), 0.7), (1, 0, _box(2), 0.6),
                  (1, 0, _box(8), 0.3), (1, 0, _box(9), 0.2)]  # fmt: skip
    ground_truth, results = _case(objects, detections)
    point = operating_point.operating_point(matching.match(ground_truth, results, 2), ["c0", "c1"], model_threshold=0.75)
    assert point.best.threshold == pytest.approx(0.6)
    assert (point.best.precision, point.best.recall, point.best.f1) == pytest.approx((0.75, 0.75, 0.75))
    assert point.per_class_best["c0"].threshold == pytest.approx(0.6)
    assert point.per_class_best["c1"].f1 == 0.0  # no objects
    assert (point.at_model_threshold.precision, point.at_model_threshold.recall) == pytest.approx((1.0, 0.5))
    curves = point.overall_curves
    at_065 = int(round(0.65 / 0.01))
    assert (curves["precision"][at_065], curves["recall"][at_065]) == pytest.approx((2 / 3, 0.5), abs=1e-5)


def test_confusion_matrix_cells():
    objects = [
        (1, 0, _box(0), False),  # found as class 1: a confusion
        (1, 0, _box(1), False),  # found right
        (1, 1, _box(2), False),  # missed
        (1, 1, _box(3), True),  # difficult, found: counted nowhere
    ]
    detections = [(1, 1, _box(0), 0.9), (1, 0, _box(1), 0.8), (1, 1, _box(3), 0.7), (1, 0, _box(6), 0.6),
                  (1, 1, _box(2), 0.1)]  # fmt: skip  the last is below the cut
    ground_truth, results = _case(objects, detections)
    matrix = confusion.confusion_matrix(matching.match(ground_truth, results, 2), threshold=0.5)
    # rows predicted (c0, c1, background), columns true
    assert matrix.tolist() == [[1, 0, 1], [1, 0, 0], [0, 1, 0]]
    assert confusion.normalized(matrix)[1, 0] == pytest.approx(0.5)
    assert confusion.top_confusions(matrix, ["c0", "c1"]) == [
        {"true": "c0", "predicted": "c1", "objects": 1, "share_of_true": 0.5}
    ]


def test_each_tide_error_kind():
    big = [0.0, 0.0, 100.0, 100.0]
    objects = [
        (1, 0, big, False),  # image 1: Loc (same class, IoU 0.3)
        (2, 0, big, False),  # image 2: Cls (other class, IoU 1)
        (3, 0, big, False),  # image 3: found, then a Dupe (same class, IoU 0.9, lower score)
        (4, 0, big, False),  # image 4: Both (other class, IoU 0.3)
        (5, 0, big, False),  # image 5: Missed (nothing near); and a Bkg detection far away
    ]
    detections = [
        (1, 0, [0, 0, 100, 30], 0.9),
        (2, 1, big, 0.9),
        (3, 0, big, 0.9), (3, 0, [0, 0, 100, 90], 0.8),
        (4, 1, [0, 0, 100, 30], 0.9),
        (5, 0, [150, 150, 190, 190], 0.9),
    ]  # fmt: skip
    ground_truth, results = _case(objects, detections)
    matches = matching.match(ground_truth, results, 2)
    kinds, missed = tide.classify(matches)
    by_image = {}
    for image, kind in zip(matches.image, kinds):
        by_image.setdefault(int(image) + 1, []).append(tide.ERRORS[kind] if kind >= 0 else "tp")
    assert by_image == {1: ["loc"], 2: ["cls"], 3: ["tp", "dupe"], 4: ["both"], 5: ["bkg"]}
    # Image 5's object is Missed; images 1 and 2's are not: a Loc and a Cls error point at them.
    assert missed.tolist() == [False, False, False, True, True]  # image 4's object: Both points at no object
    counts = {kind: row["count"] for kind, row in tide.breakdown(matches)["errors"].items()}
    assert counts == {"cls": 1, "loc": 1, "both": 1, "dupe": 1, "bkg": 1, "miss": 2}


def test_tide_dap_of_a_localisation_error_by_hand():
    # Image 1: an object found (score .9). Image 2: an object boxed badly (IoU 0.3, score .8).
    # AP@0.5 = precision 1 up to recall .5: 51 of COCO's 101 recall levels = 0.50495. Fixed: 1.
    big = [0.0, 0.0, 100.0, 100.0]
    ground_truth, results = _case([(1, 0, big, False), (2, 0, big, False)], [(1, 0, big, 0.9), (2, 0, [0, 0, 100, 30], 0.8)], 1)
    result = tide.breakdown(matching.match(ground_truth, results, 1))
    assert result["base_AP50"] == pytest.approx(51 / 101, abs=1e-6)
    assert result["errors"]["loc"] == {"count": 1, "dAP50": pytest.approx(1 - 51 / 101, abs=1e-6)}
    assert result["errors"]["miss"]["count"] == 0 and result["errors"]["bkg"]["dAP50"] == 0
    assert result["special"]["false_positives"] == pytest.approx(0.0, abs=1e-6)  # the FP ranks below the TP


def test_decoder_sweep_picks_the_iou_known_by_hand():
    """Two objects of one class overlapping at IoU 0.613, and a duplicate of the first at IoU 0.72 that
    scores above the second: NMS below 0.613 drops the second object (AP50 0.5), at or above 0.72
    keeps the duplicate before it (AP50 below 1): only 0.65 and 0.7 give 1, and 0.65 is nearer 0.5."""
    import tensorflow as tf

    from vocdet.components.settings import ModelConfig
    from vocdet.components.trainer import decoder_tuning

    config = dataclasses.replace(
        ModelConfig(), bounding_box_format="xyxy", image_size=128, nms_iou_grid=[0.4, 0.5, 0.6, 0.65, 0.7, 0.75]
    )
    first, second, duplicate = [10.0, 10.0, 60.0, 60.0], [22.0, 10.0, 72.0, 60.0], [10.0, 10.0, 60.0, 79.4]
    candidates = [decoder_tuning.Candidates(
        boxes=tf.constant([[first, second, duplicate]]),
        logits=tf.constant([[[3.0, -10.0], [2.0, -10.0], [2.5, -10.0]]]),
        shapes=tf.constant([[128.0, 128.0]]),
    )]  # fmt: skip
    ground_truth, _ = _case([(1, 0, first, False), (1, 0, second, False)], [])
    sweep, _ = decoder_tuning.sweep_decoder(candidates, ground_truth, config, "coco/AP50")
    by_iou = {row["nms_iou_threshold"]: row["coco/AP50"] for row in sweep}
    assert by_iou[0.4] == by_iou[0.5] == by_iou[0.6] == pytest.approx(51 / 101, abs=1e-6)
    assert by_iou[0.65] == by_iou[0.7] == pytest.approx(1.0)
    assert by_iou[0.75] < 1.0
    assert decoder_tuning.best_iou(sweep, "coco/AP50", default_iou=0.5) == 0.65
