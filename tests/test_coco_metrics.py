"""Our COCO numbers are pycocotools' numbers, including the edge cases."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vocdet.components.coco_evaluator import coco_metrics
from tests.coco_cases import random_case, reference_scores


@pytest.mark.parametrize("seed", range(4))
def test_equals_pycocotools_on_random_cases(seed, tmp_path):
    ground_truth, detections = random_case(seed)
    expected = reference_scores(ground_truth, detections, tmp_path)
    actual = coco_metrics.evaluate(ground_truth, detections)
    for name in coco_metrics.METRIC_NAMES:
        assert actual[name] == pytest.approx(expected[name], abs=1e-6), name


def test_perfect_detections_score_one():
    ground_truth, _ = random_case(0)
    detections = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in ground_truth["annotations"]
        if not a["iscrowd"]
    ]
    metrics = coco_metrics.evaluate(ground_truth, detections)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)


def test_no_detections_scores_as_cocoeval_would():
    ground_truth, _ = random_case(1)
    metrics = coco_metrics.evaluate(ground_truth, [])
    assert metrics["AP"] in (0.0, -1.0)
    assert set(metrics) == set(coco_metrics.METRIC_NAMES)


def test_padding_detections_are_skipped():
    entries = coco_metrics.detections_for_image(3, np.array([[1, 2, 11, 22], [0, 0, 0, 0]]), np.array([4, -1]), np.array([0.5, 0.0]))
    assert entries == [{"image_id": 3, "category_id": 5, "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.5}]


def _reference_evaluator(ground_truth, detections):
    coco_gt = COCO()
    coco_gt.dataset = ground_truth
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(detections), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _edge_case(kind):
    images = [{"id": i, "height": 200, "width": 200} for i in range(1, 5)]
    box = [20.0, 20.0, 80.0, 90.0]
    truth = [coco_metrics.annotation(1, 1, 0, box, False), coco_metrics.annotation(2, 2, 1, [5, 5, 50, 40], False)]
    detections = coco_metrics.detections_for_image(1, [box], [0], [0.9])
    if kind == "duplicates":
        detections += coco_metrics.detections_for_image(1, [box, box], [0, 0], [0.8, 0.7])
    elif kind == "wrong classes":
        detections += coco_metrics.detections_for_image(2, [[5, 5, 50, 40]], [0], [0.95])
    elif kind == "images without ground truth":
        detections += coco_metrics.detections_for_image(3, [[0, 0, 30, 30]], [1], [0.99])
    elif kind == "many classes":
        rng = np.random.default_rng(3)
        for index in range(60):
            x, y = rng.uniform(0, 150, 2)
            truth.append(coco_metrics.annotation(4, 10 + index, index % 50, [x, y, x + 30, y + 30], False))
            detections += coco_metrics.detections_for_image(4, [[x + 2, y, x + 31, y + 29]], [(index + index // 7) % 50], [rng.random()])
    names = [f"class{i}" for i in range(50)]
    return coco_metrics.coco_ground_truth(images, truth, names), detections, names


@pytest.mark.parametrize("kind", ["duplicates", "wrong classes", "images without ground truth", "many classes"])
def test_edge_cases_and_per_class_equal_pycocotools(kind):
    ground_truth, detections, names = _edge_case(kind)
    reference = _reference_evaluator(ground_truth, detections)
    evaluator = coco_metrics.run_cocoeval(ground_truth, detections)
    np.testing.assert_allclose(evaluator.stats, reference.stats, atol=1e-6)
    per_class = coco_metrics.per_class(evaluator, names)
    for index, category_id in enumerate(reference.params.catIds):
        curve = reference.eval["precision"][:, :, index, 0, 2]
        expected = curve[curve > -1].mean() if (curve > -1).any() else -1.0
        assert per_class[names[category_id - 1]]["AP"] == pytest.approx(expected, abs=1e-6)
