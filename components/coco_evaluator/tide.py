"""Where the errors come from, in TIDE's terms (Bolya et al., "TIDE: A General Toolbox for Identifying
Object Detection Errors", ECCV 2020), and the AP@0.5 each costs.

Every false positive at IoU 0.5 (foreground threshold t_f = 0.5, background t_b = 0.1; IoUs with
objects that are not ignored) is given one error, tested in the order of TIDE's code
(`tidecv/quantify.py`):

- **Loc** (localisation): its best IoU with an object of its class is in [t_b, t_f];
- **Cls** (classification): its best IoU with an object of another class is >= t_f;
- **Dupe** (duplicate): IoU >= t_f with an object of its class that a higher-scored detection found;
- **Bkg** (background): IoU <= t_b with every object (or the image has none);
- **Both** (classification and localisation): anything else, e.g. IoU in (t_b, t_f) with another class;

and every object no detection found, and that no Loc or Cls error points at, is **Miss**ed.

The cost of an error kind is how much AP@0.5 (COCO's 101-point, over the classes with objects)
rises when every error of that kind alone is fixed, as TIDE fixes them: a Loc or Cls error becomes
a true positive for its object, if no detection found that object (the highest-scored such error
wins; the others, and those whose object was found, are removed); a Dupe, Bkg or Both detection is
removed; a Missed object is removed from the count of objects. TIDE's two special errors: removing
every false positive (`false_positives`), and every object not found (`false_negatives`).

TIDE's own toolbox (tidecv 1.0.1) was last released in 2020 and computes its own matching; this
module starts from COCOeval's matching (`matching`), so its base AP is exactly `coco/AP50`. TIDE's
AP gives 0 to a class with detections and no objects; COCO leaves such a class out, and so does this.
"""

from __future__ import annotations

import numpy as np

from vocdet.components.coco_evaluator import matching

FOREGROUND_IOU = 0.5
BACKGROUND_IOU = 0.1

CLS, LOC, BOTH, DUPE, BKG, MISS = "cls", "loc", "both", "dupe", "bkg", "miss"
ERRORS = (CLS, LOC, BOTH, DUPE, BKG, MISS)
LABELS = {CLS: "Cls", LOC: "Loc", BOTH: "Both", DUPE: "Dupe", BKG: "Bkg", MISS: "Miss"}
_NONE = -1


def classify(matches: matching.Matches) -> tuple[np.ndarray, np.ndarray]:
    """(error index into ERRORS per detection, -1 for a true positive or ignored one; missed flag per object)."""
    if matches.iou_threshold != FOREGROUND_IOU:
        raise ValueError(f"TIDE's errors are defined on matches at IoU {FOREGROUND_IOU}, got {matches.iou_threshold}")
    kinds = np.full(len(matches.score), _NONE, dtype=np.int64)
    open_ = matches.false_positive.copy()
    has_objects = np.bincount(matches.object_image[~matches.object_ignored], minlength=len(matches.object_slices)) > 0

    def assign(condition, kind):
        chosen = open_ & condition
        kinds[chosen] = ERRORS.index(kind)
        open_[chosen] = False

    same, other = matches.same_class_iou, matches.other_class_iou
    assign(~has_objects[matches.image], BKG)
    assign((same >= BACKGROUND_IOU) & (same <= FOREGROUND_IOU), LOC)
    assign(other >= FOREGROUND_IOU, CLS)
    assign(matches.matched_same_class_iou >= FOREGROUND_IOU, DUPE)
    assign(np.maximum(same, other) <= BACKGROUND_IOU, BKG)
    assign(np.ones_like(open_), BOTH)

    targets = _targets(matches, kinds)
    usable = np.zeros(len(matches.object_image), dtype=bool)
    has_target = targets >= 0
    usable[targets[has_target]] = True
    missed = ~matches.object_matched & ~matches.object_ignored & ~usable
    return kinds, missed


def breakdown(matches: matching.Matches) -> dict:
    """Counts and dAP@0.5 of each error kind, the special errors, and the base AP@0.5 they start from."""
    kinds, missed = classify(matches)
    positives = matches.positives()
    fp = matches.false_positive
    base = _map(matches, matches.category, matches.true_positive, fp, np.ones(len(kinds), bool), positives)
    targets = _targets(matches, kinds)
    winners = _winners(matches, kinds, targets)
    result = {"base_AP50": base, "errors": {}, "special": {}}
    for kind in ERRORS:
        index = ERRORS.index(kind)
        chosen = kinds == index
        category, tp, keep, count = matches.category, matches.true_positive, np.ones(len(kinds), bool), positives
        if kind in (CLS, LOC):
            promoted = chosen & winners
            keep = ~chosen | promoted
            tp = tp | promoted
            if kind == CLS:
                category = np.where(promoted, matches.object_category[np.maximum(targets, 0)], category)
        elif kind == MISS:
            count = positives - np.bincount(matches.object_category[missed], minlength=matches.num_classes)
        else:
            keep = ~chosen
        fixed = _map(matches, category, tp, fp & ~tp, keep, count)
        result["errors"][kind] = {
            "count": int(missed.sum()) if kind == MISS else int(chosen.sum()),
            "dAP50": round(max(fixed - base, 0.0), 6),
        }
    not_found = ~matches.object_matched & ~matches.object_ignored
    result["special"]["false_positives"] = round(
        max(_map(matches, matches.category, matches.true_positive, fp, ~fp, positives) - base, 0.0), 6
    )
    result["special"]["false_negatives"] = round(
        max(
            _map(matches, matches.category, matches.true_positive, fp, np.ones(len(kinds), bool),
                 positives - np.bincount(matches.object_category[not_found], minlength=matches.num_classes)) - base,
            0.0,
        ),
        6,
    )  # fmt: skip
    result["base_AP50"] = round(base, 6)
    return result


def _targets(matches: matching.Matches, kinds: np.ndarray) -> np.ndarray:
    """The object a Loc or Cls error points at (-1 for other detections)."""
    targets = np.full(len(kinds), -1, dtype=np.int64)
    loc, cls = kinds == ERRORS.index(LOC), kinds == ERRORS.index(CLS)
    targets[loc] = matches.same_class_object[loc]
    targets[cls] = matches.other_class_object[cls]
    return targets


def _winners(matches: matching.Matches, kinds: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Loc and Cls errors that a fix turns into a true positive: the highest-scored one of each object nobody found."""
    winners = np.zeros(len(kinds), dtype=bool)
    candidates = np.flatnonzero((targets >= 0) & ~matches.object_matched[np.maximum(targets, 0)])
    if len(candidates):
        order = candidates[np.lexsort((candidates, -matches.score[candidates]))]
        _, first = np.unique(targets[order], return_index=True)
        winners[order[first]] = True
    return winners


def _map(matches, category, tp, fp, keep, positives) -> float:
    aps = matching.average_precision(
        matches.score[keep], category[keep], tp[keep], fp[keep], positives, image=matches.image[keep]
    )
    return max(matching.mean_ap(aps), 0.0)
