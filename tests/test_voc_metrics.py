"""The VOC metric against hand-computed cases."""

import numpy as np
import pytest

from vocdet.components.coco_evaluator import voc_metrics

BOX = [10.0, 10.0, 50.0, 50.0]
FAR = [200.0, 200.0, 240.0, 240.0]


def _gt(*images):
    """image id -> (boxes, difficult) from lists of (box, difficult)."""
    return {
        image_id: (np.array([box for box, _ in objects], dtype=float).reshape(-1, 4), np.array([d for _, d in objects], dtype=bool))
        for image_id, objects in enumerate(images, start=1)
    }


def test_difficult_match_is_ignored_and_duplicate_is_false_positive():
    ground_truth = _gt([(BOX, False), ([100.0, 100.0, 140.0, 140.0], True)])
    detections = [
        (1, 0.9, BOX),  # TP
        (1, 0.8, [100.0, 100.0, 140.0, 140.0]),  # on the difficult object: ignored
        (1, 0.7, [11.0, 11.0, 50.0, 50.0]),  # duplicate: FP
        (1, 0.6, FAR),  # FP
    ]
    recall, precision, positives = voc_metrics.class_curve(ground_truth, detections)
    assert positives == 1
    np.testing.assert_allclose(recall, [1, 1, 1])
    np.testing.assert_allclose(precision, [1, 1 / 2, 1 / 3])
    assert voc_metrics.average_precision(recall, precision, "11point") == pytest.approx(1.0)
    assert voc_metrics.average_precision(recall, precision, "area") == pytest.approx(1.0)


def test_eleven_point_and_area_differ_as_computed_by_hand():
    ground_truth = _gt([(BOX, False)], [(BOX, False)])
    detections = [(1, 0.9, BOX), (1, 0.8, FAR), (2, 0.7, BOX)]  # TP, FP, TP
    recall, precision, _ = voc_metrics.class_curve(ground_truth, detections)
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])
    # 11-point: precision 1 at recall levels 0..0.5 (6 levels), 2/3 at 0.6..1.0 (5 levels).
    assert voc_metrics.average_precision(recall, precision, "11point") == pytest.approx((6 + 5 * 2 / 3) / 11)
    # Area: 0.5 * 1 + 0.5 * 2/3.
    assert voc_metrics.average_precision(recall, precision, "area") == pytest.approx(0.5 + 1 / 3)


def test_low_iou_is_false_positive_and_missed_objects_cap_recall():
    ground_truth = _gt([(BOX, False), (FAR, False)])
    shifted = [30.0, 30.0, 70.0, 70.0]  # IoU with BOX = 400 / 2800 < 0.5
    recall, precision, _ = voc_metrics.class_curve(ground_truth, [(1, 0.9, shifted), (1, 0.5, FAR)])
    np.testing.assert_allclose(recall, [0.0, 0.5])
    np.testing.assert_allclose(precision, [0.0, 0.5])
    assert voc_metrics.average_precision(recall, precision, "area") == pytest.approx(0.25)


def test_mean_skips_classes_without_objects_and_scores_missing_detections_zero():
    ground_truth = {0: _gt([(BOX, False)]), 1: _gt([(FAR, False)])}
    result, curves = voc_metrics.evaluate(ground_truth, {0: [(1, 0.9, BOX)]}, ["cat", "dog", "cow"])
    assert set(curves) == {"cat", "dog"}
    assert set(result["per_class"]) == {"cat", "dog"}
    assert result["per_class"]["cat"]["AP50_area"] == pytest.approx(1.0)
    assert result["per_class"]["dog"]["AP50_area"] == 0.0
    assert result["mAP50_area"] == pytest.approx(0.5) and result["mAP50_11point"] == pytest.approx(0.5)
