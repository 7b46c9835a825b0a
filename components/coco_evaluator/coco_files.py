"""Reads COCO-format ground-truth and detection files for `vocdet evaluate`, checking them.

Every problem is a `CocoFileError` whose message names the file and the
problem in one line: not JSON, a missing key, a detection for an image or a
category the ground truth does not have, a negative width or height.
"""

from __future__ import annotations

import json
import math


class CocoFileError(ValueError):
    """A ground-truth or detection file that cannot be scored."""


def load(gt_path: str, dt_path: str) -> tuple[dict, list[dict], list[str]]:
    """(ground truth dataset, detections, class names in category-id order)."""
    ground_truth = _read_json(gt_path)
    if not isinstance(ground_truth, dict):
        raise CocoFileError(f"{gt_path}: expected a COCO dataset object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(ground_truth.get(key), list):
            raise CocoFileError(f"{gt_path}: missing key {key!r} (a list)")
    image_ids = set()
    for index, image in enumerate(ground_truth["images"]):
        _require(image, ("id",), gt_path, f"images[{index}]")
        image_ids.add(image["id"])
    categories = {}
    for index, category in enumerate(ground_truth["categories"]):
        _require(category, ("id", "name"), gt_path, f"categories[{index}]")
        categories[category["id"]] = category["name"]
    for index, annotation in enumerate(ground_truth["annotations"]):
        where = f"annotations[{index}]"
        _require(annotation, ("id", "image_id", "category_id", "bbox"), gt_path, where)
        _check_box(annotation["bbox"], gt_path, where)
        if annotation["image_id"] not in image_ids:
            raise CocoFileError(f"{gt_path}: {where} refers to unknown image_id {annotation['image_id']!r}")
        if annotation["category_id"] not in categories:
            raise CocoFileError(f"{gt_path}: {where} refers to unknown category_id {annotation['category_id']!r}")
        annotation.setdefault("area", annotation["bbox"][2] * annotation["bbox"][3])
        annotation.setdefault("iscrowd", 0)

    detections = _read_json(dt_path)
    if not isinstance(detections, list):
        raise CocoFileError(f"{dt_path}: expected a list of detections (COCO results format)")
    for index, detection in enumerate(detections):
        where = f"detection {index}"
        _require(detection, ("image_id", "category_id", "bbox", "score"), dt_path, where)
        _check_box(detection["bbox"], dt_path, where)
        if detection["image_id"] not in image_ids:
            raise CocoFileError(f"{dt_path}: {where} is for image_id {detection['image_id']!r}, which {gt_path} does not have")
        if detection["category_id"] not in categories:
            raise CocoFileError(f"{dt_path}: {where} has category_id {detection['category_id']!r}, which {gt_path} does not have")
        if not isinstance(detection["score"], (int, float)) or not math.isfinite(detection["score"]):
            raise CocoFileError(f"{dt_path}: {where} has a score that is not a number: {detection['score']!r}")

    # Our metrics index classes from category id 1 upwards; renumber if the file does not.
    ordered = sorted(categories)
    if ordered != list(range(1, len(ordered) + 1)):
        remap = {category_id: index + 1 for index, category_id in enumerate(ordered)}
        ground_truth["categories"] = [{"id": remap[c], "name": categories[c]} for c in ordered]
        for item in ground_truth["annotations"] + detections:
            item["category_id"] = remap[item["category_id"]]
    return ground_truth, detections, [categories[c] for c in ordered]


def _read_json(path: str):
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise CocoFileError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CocoFileError(f"{path}: not JSON ({error})") from None


def _require(item, keys, path: str, where: str) -> None:
    if not isinstance(item, dict):
        raise CocoFileError(f"{path}: {where} is not an object")
    for key in keys:
        if key not in item:
            raise CocoFileError(f"{path}: {where} is missing key {key!r}")


def _check_box(box, path: str, where: str) -> None:
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        raise CocoFileError(f"{path}: {where} bbox must be [x, y, width, height] numbers, got {box!r}")
    if box[2] < 0 or box[3] < 0:
        raise CocoFileError(f"{path}: {where} bbox has a negative width or height: {box!r}")
