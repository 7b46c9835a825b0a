"""Every detection of a COCO pair matched to the ground truth at one IoU, as COCOeval matches them.

The operating point (`operating_point`), the confusion matrix (`confusion`) and the error
breakdown (`tide`) all ask, detection by detection, "which object did it find?". COCOeval knows,
but faster-coco-eval keeps its per-image matches in C++ (its `extra_calc` exposes them as a
string-keyed dict, too slow at 500,000 detections) and pycocotools is the slow reference. So this
module redoes COCOeval's `evaluateImg` for one IoU threshold, area range "all", in NumPy:

- per image and class, detections in descending score (stable, input order breaks ties), the
  first `max_detections` kept (COCOeval's maxDets, 100);
- each takes the unmatched object of its class with the highest IoU >= the threshold, objects
  that are not ignored first; an ignored object (COCO's `iscrowd`, VOC's `difficult`) may be
  matched many times and makes its detection neither a true nor a false positive; a crowd
  object's IoU is the intersection over the detection's own area (pycocotools' `iou(..., iscrowd)`).

The tests check the true-positive flags and AP@0.5 against pycocotools itself. Beside the match,
each detection keeps its best IoU with non-ignored objects of its own class, of other classes and
of its class already matched: TIDE's quantities (`tide`). The per-image IoU matrices are kept for
the class-blind matching of the confusion matrix.
"""

from __future__ import annotations

import dataclasses

import numpy as np

IOU_THRESHOLD = 0.5
MAX_DETECTIONS = 100
# COCOeval's recall levels (101 points) for AP.
RECALL_LEVELS = np.linspace(0.0, 1.0, 101)


@dataclasses.dataclass
class Matches:
    """Detections (D, sorted by image, class, descending score) and objects (G, sorted by image)."""

    iou_threshold: float
    num_classes: int
    # Detections.
    image: np.ndarray  # [D] image index (order of the ground truth's sorted image ids)
    category: np.ndarray  # [D] class index (category_id - 1)
    score: np.ndarray  # [D]
    true_positive: np.ndarray  # [D] bool: matched a non-ignored object of its class
    ignored: np.ndarray  # [D] bool: matched an ignored object (neither true nor false positive)
    matched_object: np.ndarray  # [D] object index, -1 if none
    same_class_iou: np.ndarray  # [D] best IoU with a non-ignored object of its class
    same_class_object: np.ndarray  # [D] that object, -1 if none
    other_class_iou: np.ndarray  # [D] best IoU with a non-ignored object of another class
    other_class_object: np.ndarray  # [D]
    matched_same_class_iou: np.ndarray  # [D] best IoU with a non-ignored object of its class that a detection matched
    # Objects.
    object_image: np.ndarray  # [G]
    object_category: np.ndarray  # [G]
    object_ignored: np.ndarray  # [G] bool
    object_matched: np.ndarray  # [G] bool
    # Per image: the slices of detections and objects, and their IoU matrix [d, g] (crowd IoU for ignored crowds).
    detection_slices: list[slice]
    object_slices: list[slice]
    ious: list[np.ndarray]

    @property
    def false_positive(self) -> np.ndarray:
        return ~self.true_positive & ~self.ignored

    def positives(self) -> np.ndarray:
        """[C] non-ignored objects per class."""
        return np.bincount(self.object_category[~self.object_ignored], minlength=self.num_classes)


def match(
    ground_truth: dict,
    detections: list[dict],
    num_classes: int,
    iou_threshold: float = IOU_THRESHOLD,
    max_detections: int = MAX_DETECTIONS,
) -> Matches:
    """Matches COCO-format `detections` to `ground_truth` (category ids 1..num_classes)."""
    image_ids = sorted({image["id"] for image in ground_truth["images"]})
    image_index = {image_id: index for index, image_id in enumerate(image_ids)}

    annotations = ground_truth["annotations"]
    g_image = np.array([image_index[a["image_id"]] for a in annotations], dtype=np.int64)
    g_category = np.array([a["category_id"] - 1 for a in annotations], dtype=np.int64)
    g_boxes = _xyxy([a["bbox"] for a in annotations])
    g_crowd = np.array([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool)
    g_ignored = g_crowd | np.array([bool(a.get("ignore", 0)) for a in annotations], dtype=bool)
    order = np.argsort(g_image, kind="stable")
    g_image, g_category, g_boxes, g_crowd, g_ignored = (x[order] for x in (g_image, g_category, g_boxes, g_crowd, g_ignored))

    d_image = np.array([image_index[d["image_id"]] for d in detections], dtype=np.int64)
    d_category = np.array([d["category_id"] - 1 for d in detections], dtype=np.int64)
    d_score = np.array([d["score"] for d in detections], dtype=np.float64)
    d_boxes = _xyxy([d["bbox"] for d in detections])
    order = np.lexsort((np.arange(len(detections)), -d_score, d_category, d_image))
    d_image, d_category, d_score, d_boxes = (x[order] for x in (d_image, d_category, d_score, d_boxes))
    # COCOeval's maxDets: the first max_detections of each (image, class).
    group_start = np.r_[0, np.flatnonzero((np.diff(d_image) != 0) | (np.diff(d_category) != 0)) + 1] if len(order) else np.zeros(0, int)
    rank = np.arange(len(order)) - np.repeat(group_start, np.diff(np.r_[group_start, len(order)]))
    keep = rank < max_detections
    d_image, d_category, d_score, d_boxes = (x[keep] for x in (d_image, d_category, d_score, d_boxes))

    count = len(d_score)
    true_positive = np.zeros(count, dtype=bool)
    ignored = np.zeros(count, dtype=bool)
    matched_object = np.full(count, -1, dtype=np.int64)
    same_iou, other_iou, used_iou = np.zeros(count), np.zeros(count), np.zeros(count)
    same_object, other_object = np.full(count, -1, dtype=np.int64), np.full(count, -1, dtype=np.int64)
    object_matched = np.zeros(len(g_image), dtype=bool)

    num_images = len(image_ids)
    d_bounds = np.searchsorted(d_image, np.arange(num_images + 1))
    g_bounds = np.searchsorted(g_image, np.arange(num_images + 1))
    detection_slices = [slice(d_bounds[i], d_bounds[i + 1]) for i in range(num_images)]
    object_slices = [slice(g_bounds[i], g_bounds[i + 1]) for i in range(num_images)]
    ious = []
    threshold = min(iou_threshold, 1 - 1e-10)  # COCOeval's
    for d_slice, g_slice in zip(detection_slices, object_slices):
        if d_slice.stop == d_slice.start or g_slice.stop == g_slice.start:
            ious.append(np.zeros((d_slice.stop - d_slice.start, g_slice.stop - g_slice.start)))
            continue
        overlap = pairwise_iou(d_boxes[d_slice], g_boxes[g_slice], g_crowd[g_slice])
        ious.append(overlap)
        categories, gt_categories = d_category[d_slice], g_category[g_slice]
        gt_ignored = g_ignored[g_slice]
        same = categories[:, None] == gt_categories[None, :]
        usable = ~gt_ignored[None, :]
        _best(np.where(same & usable, overlap, -1.0), same_iou, same_object, d_slice.start, g_slice.start)
        _best(np.where(~same & usable, overlap, -1.0), other_iou, other_object, d_slice.start, g_slice.start)
        matched = np.zeros(len(gt_categories), dtype=bool)
        for category in np.intersect1d(categories, gt_categories):
            rows = np.flatnonzero(categories == category)
            columns = np.flatnonzero(gt_categories == category)
            columns = columns[np.argsort(gt_ignored[columns], kind="stable")]  # non-ignored objects first
            crowd = g_crowd[g_slice][columns]
            column_ignored = gt_ignored[columns]
            taken = np.zeros(len(columns), dtype=bool)
            for row in rows:
                best, chosen = threshold, -1
                for position, column in enumerate(columns):
                    if taken[position] and not crowd[position]:
                        continue
                    if chosen > -1 and not column_ignored[chosen] and column_ignored[position]:
                        break
                    if overlap[row, column] < best:
                        continue
                    best, chosen = overlap[row, column], position
                if chosen == -1:
                    continue
                taken[chosen] = True
                detection = d_slice.start + row
                matched_object[detection] = g_slice.start + columns[chosen]
                if column_ignored[chosen]:
                    ignored[detection] = True
                else:
                    true_positive[detection] = True
                    matched[columns[chosen]] = True
        object_matched[g_slice] = matched
        used = same & usable & matched[None, :]
        if used.any():
            used_iou[d_slice] = np.where(used, overlap, 0.0).max(axis=1)
    same_iou, other_iou = np.maximum(same_iou, 0.0), np.maximum(other_iou, 0.0)
    return Matches(
        iou_threshold=iou_threshold,
        num_classes=num_classes,
        image=d_image,
        category=d_category,
        score=d_score,
        true_positive=true_positive,
        ignored=ignored,
        matched_object=matched_object,
        same_class_iou=same_iou,
        same_class_object=same_object,
        other_class_iou=other_iou,
        other_class_object=other_object,
        matched_same_class_iou=used_iou,
        object_image=g_image,
        object_category=g_category,
        object_ignored=g_ignored,
        object_matched=object_matched,
        detection_slices=detection_slices,
        object_slices=object_slices,
        ious=ious,
    )


def average_precision(score, category, true_positive, false_positive, positives, image=None) -> np.ndarray:
    """[C] COCO's 101-point AP per class from flagged detections (-1 for a class with no objects).

    Detections are taken as COCOeval's `accumulate` takes them: by image, then descending score,
    then one stable sort by descending score per class.
    """
    aps = np.full(len(positives), -1.0)
    order = np.lexsort((-score, category if image is None else image))
    order = order[np.argsort(category[order], kind="stable")]
    bounds = np.searchsorted(category[order], np.arange(len(positives) + 1))
    for class_index, count in enumerate(positives):
        if count == 0:
            continue
        rows = order[bounds[class_index] : bounds[class_index + 1]]
        rows = rows[np.argsort(-score[rows], kind="mergesort")]
        tp = np.cumsum(true_positive[rows], dtype=np.float64)
        fp = np.cumsum(false_positive[rows], dtype=np.float64)
        recall = tp / count
        precision = np.maximum.accumulate((tp / (tp + fp + np.spacing(1)))[::-1])[::-1]
        found = np.searchsorted(recall, RECALL_LEVELS, side="left")
        aps[class_index] = np.where(found < len(rows), precision[np.minimum(found, len(rows) - 1)], 0.0).mean() if len(rows) else 0.0
    return aps


def mean_ap(aps: np.ndarray) -> float:
    """COCO's mean: over classes that have objects."""
    present = aps[aps > -1]
    return float(present.mean()) if len(present) else -1.0


def _best(masked: np.ndarray, best_iou: np.ndarray, best_object: np.ndarray, d_start: int, g_start: int) -> None:
    if masked.shape[1] == 0:
        return
    column = masked.argmax(axis=1)
    value = masked[np.arange(len(column)), column]
    rows = slice(d_start, d_start + len(column))
    best_iou[rows] = value
    best_object[rows] = np.where(value >= 0, g_start + column, -1)


def _xyxy(boxes: list) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([array[:, :2], array[:, :2] + array[:, 2:]], axis=1)


def pairwise_iou(detections: np.ndarray, objects: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """[d, g] IoU of xyxy boxes; for a crowd object, the intersection over the detection's area (pycocotools)."""
    if crowd is None:
        crowd = np.zeros(len(objects), dtype=bool)
    x0 = np.maximum(detections[:, None, 0], objects[None, :, 0])
    y0 = np.maximum(detections[:, None, 1], objects[None, :, 1])
    x1 = np.minimum(detections[:, None, 2], objects[None, :, 2])
    y1 = np.minimum(detections[:, None, 3], objects[None, :, 3])
    intersection = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    d_area = ((detections[:, 2] - detections[:, 0]) * (detections[:, 3] - detections[:, 1]))[:, None]
    g_area = ((objects[:, 2] - objects[:, 0]) * (objects[:, 3] - objects[:, 1]))[None, :]
    union = np.where(crowd[None, :], d_area, d_area + g_area - intersection)
    return np.where(union > 0, intersection / np.where(union > 0, union, 1.0), 0.0)
