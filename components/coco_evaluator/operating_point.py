"""Where to cut: precision, recall and F1 as functions of the score threshold, and the best cut.

mAP averages over every threshold; a deployment applies one. From detections matched at IoU 0.5
as COCOeval matches them (`matching`: VOC's difficult objects ignored, a duplicate is a false
positive), a detection kept at threshold `t` is one with score >= t, and

- precision(t) = true positives / (true + false positives) among those kept,
- recall(t) = true positives / objects (not ignored),
- F1(t) = 2 P R / (P + R),

overall (every detection and object pooled: what a client that applies one threshold to every
class sees) and per class. The F1-optimal threshold is exact: F1 is evaluated at every distinct
score, and the cut is that score. Ultralytics picks the maximum of the class-mean F1 curve on a
1,000-point grid (`F1_curve.png`); the pooled curve weighs classes by their objects, as a
deployment does. The curves for the pictures are sampled on a fixed grid (`GRID`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from vocdet.components.coco_evaluator.matching import Matches

GRID = np.linspace(0.0, 1.0, 101)


@dataclasses.dataclass
class Cut:
    """Precision, recall and F1 at one threshold."""

    threshold: float
    precision: float
    recall: float
    f1: float

    def to_dict(self) -> dict[str, float]:
        values = {key: round(float(value), 6) for key, value in dataclasses.asdict(self).items()}
        return {**values, "threshold": rounded_down(self.threshold)}


def rounded_down(threshold: float) -> float:
    """A threshold to 6 decimals, never above the score it came from (a cut keeps score >= threshold)."""
    return math.floor(float(threshold) * 1e6) / 1e6


def best_cut(score: np.ndarray, true_positive: np.ndarray, false_positive: np.ndarray, positives: int) -> Cut:
    """The F1-optimal threshold over these detections (the lowest among equals); 0 F1 with no objects."""
    if positives == 0 or not len(score):
        return Cut(threshold=1.0, precision=0.0, recall=0.0, f1=0.0)
    order = np.argsort(-score, kind="stable")
    score = score[order]
    tp = np.cumsum(true_positive[order], dtype=np.float64)
    fp = np.cumsum(false_positive[order], dtype=np.float64)
    last_of_score = np.r_[np.flatnonzero(np.diff(score) != 0), len(score) - 1]  # a cut keeps all equal scores
    tp, fp, score = tp[last_of_score], fp[last_of_score], score[last_of_score]
    precision = tp / np.maximum(tp + fp, 1.0)
    recall = tp / positives
    f1 = 2 * precision * recall / np.maximum(precision + recall, np.finfo(np.float64).eps)
    best = int(np.argmax(f1))  # the first maximum: the highest threshold with the best F1
    return Cut(threshold=float(score[best]), precision=float(precision[best]), recall=float(recall[best]), f1=float(f1[best]))


def cut_at(threshold: float, score, true_positive, false_positive, positives: int) -> Cut:
    """Precision, recall and F1 keeping the detections with score >= threshold."""
    kept = score >= threshold
    tp, fp = float(true_positive[kept].sum()), float(false_positive[kept].sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Cut(threshold=float(threshold), precision=precision, recall=recall, f1=f1)


def curves(score, true_positive, false_positive, positives: int) -> dict[str, list[float]]:
    """Precision, recall and F1 at each threshold of GRID (precision 1 where nothing is kept, as ultralytics draws it)."""
    order = np.argsort(-score, kind="stable")
    sorted_scores = score[order]
    tp = np.r_[0.0, np.cumsum(true_positive[order], dtype=np.float64)]
    fp = np.r_[0.0, np.cumsum(false_positive[order], dtype=np.float64)]
    kept = np.searchsorted(-sorted_scores, -GRID, side="right")  # detections with score >= each threshold
    tp, fp = tp[kept], fp[kept]
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1.0), 1.0)
    recall = tp / positives if positives else np.zeros_like(tp)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return {"precision": _rounded(precision), "recall": _rounded(recall), "f1": _rounded(f1)}


@dataclasses.dataclass
class OperatingPoint:
    """The F1-optimal cut overall and per class, the cut at the model's threshold, and the curves."""

    best: Cut
    per_class_best: dict[str, Cut]
    at_model_threshold: Cut | None
    overall_curves: dict[str, list[float]]
    per_class_curves: dict[str, dict[str, list[float]]]
    per_class_objects: dict[str, int]
    # Each class at the cut applied: the model's threshold, else the overall F1-optimal one.
    per_class_at_cut: dict[str, Cut]

    def to_dict(self) -> dict:
        return {
            "iou_threshold": 0.5,
            "best": self.best.to_dict(),
            "per_class_best": {name: cut.to_dict() for name, cut in self.per_class_best.items()},
            "at_model_threshold": self.at_model_threshold.to_dict() if self.at_model_threshold else None,
            "objects": dict(self.per_class_objects),
            "per_class_at_cut": {name: cut.to_dict() for name, cut in self.per_class_at_cut.items()},
            "grid": _rounded(GRID),
            "curves": {"all": self.overall_curves, **self.per_class_curves},
        }


def operating_point(matches: Matches, class_names: list[str], model_threshold: float | None = None) -> OperatingPoint:
    """The operating point of `matches` (at IoU 0.5); `model_threshold` is the model's recommended cut, if it has one."""
    positives = matches.positives()
    fp = matches.false_positive
    per_class_best, per_class_curves, objects = {}, {}, {}
    for index, name in enumerate(class_names):
        rows = matches.category == index
        objects[name] = int(positives[index])
        per_class_best[name] = best_cut(matches.score[rows], matches.true_positive[rows], fp[rows], int(positives[index]))
        per_class_curves[name] = curves(matches.score[rows], matches.true_positive[rows], fp[rows], int(positives[index]))
    total = int(positives.sum())
    best = best_cut(matches.score, matches.true_positive, fp, total)
    cut = model_threshold if model_threshold is not None else best.threshold
    per_class_at_cut = {
        name: cut_at(cut, matches.score[matches.category == index], matches.true_positive[matches.category == index],
                     fp[matches.category == index], int(positives[index]))
        for index, name in enumerate(class_names)
    }  # fmt: skip
    return OperatingPoint(
        best=best,
        per_class_best=per_class_best,
        at_model_threshold=cut_at(model_threshold, matches.score, matches.true_positive, fp, total)
        if model_threshold is not None
        else None,
        overall_curves=curves(matches.score, matches.true_positive, fp, total),
        per_class_curves=per_class_curves,
        per_class_objects=objects,
        per_class_at_cut=per_class_at_cut,
    )


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(value), 5) for value in values]
