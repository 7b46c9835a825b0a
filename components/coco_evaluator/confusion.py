"""Which classes the model confuses: the confusion matrix at the operating point, as ultralytics builds it.

At one score threshold, per image, detections and objects are matched whatever their classes:
pairs with IoU >= `IOU_THRESHOLD` (0.5 here, the operating point's IoU; ultralytics uses 0.45),
the highest IoU first, each detection and each object at most once. Then, with C classes and
index C for "background":

- a matched pair adds 1 to `matrix[predicted class, true class]` (the diagonal when right);
- an object no detection matched adds 1 to `matrix[C, true class]` (missed);
- a detection that matched no object adds 1 to `matrix[predicted class, C]` (a false alarm).

Rows are predicted, columns true, as in ultralytics' `confusion_matrix.png`. A detection matched
to an ignored object (VOC's difficult) counts nowhere, and an ignored object is never missed.
`normalized` divides each column by its sum: the diagonal is each class's recall at this cut.
"""

from __future__ import annotations

import numpy as np

from vocdet.components.coco_evaluator.matching import Matches

IOU_THRESHOLD = 0.5


def confusion_matrix(matches: Matches, threshold: float, iou_threshold: float = IOU_THRESHOLD) -> np.ndarray:
    """[C + 1, C + 1] counts (rows predicted, columns true; index C is background)."""
    background = matches.num_classes
    matrix = np.zeros((background + 1, background + 1), dtype=np.int64)
    for d_slice, g_slice, overlap in zip(matches.detection_slices, matches.object_slices, matches.ious):
        kept = np.flatnonzero(matches.score[d_slice] >= threshold)
        predicted = matches.category[d_slice][kept]
        truth = matches.object_category[g_slice]
        ignored = matches.object_ignored[g_slice]
        detection_matched = np.zeros(len(kept), dtype=bool)
        object_matched = np.zeros(len(truth), dtype=bool)
        if len(kept) and len(truth):
            ious = overlap[kept]
            rows, columns = np.nonzero(ious >= iou_threshold)
            order = np.argsort(-ious[rows, columns], kind="stable")
            for row, column in zip(rows[order], columns[order]):
                if detection_matched[row] or object_matched[column]:
                    continue
                detection_matched[row] = object_matched[column] = True
                if not ignored[column]:
                    matrix[predicted[row], truth[column]] += 1
        np.add.at(matrix, (background, truth[~object_matched & ~ignored]), 1)
        np.add.at(matrix, (predicted[~detection_matched], background), 1)
    return matrix


def normalized(matrix: np.ndarray) -> np.ndarray:
    """Each column divided by its sum (0 for an empty column)."""
    sums = matrix.sum(axis=0, keepdims=True)
    return np.where(sums > 0, matrix / np.maximum(sums, 1), 0.0)


def top_confusions(matrix: np.ndarray, class_names: list[str], count: int = 5) -> list[dict]:
    """The largest off-diagonal cells between two classes: (true, predicted, objects, share of the true class)."""
    size = len(class_names)
    share = normalized(matrix)
    cells = [
        (int(matrix[p, t]), float(share[p, t]), class_names[t], class_names[p])
        for t in range(size)
        for p in range(size)
        if p != t and matrix[p, t] > 0
    ]
    cells.sort(key=lambda cell: (-cell[0], cell[2], cell[3]))
    return [{"true": t, "predicted": p, "objects": n, "share_of_true": round(s, 4)} for n, s, t, p in cells[:count]]
