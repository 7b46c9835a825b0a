"""Reads COCO-format ground-truth and detection files for `vocdet evaluate`, checking them.

Every problem is a `CocoFileError` whose message names the file, the entry and the problem in one
line: not JSON, a missing key, a detection for an image or a category the ground truth does not
have, a box that is not four finite numbers or has a negative width or height, an id given twice,
a boolean where a number is due (JSON's `true` is Python's 1), ground truth with no object to score.
Accepting any of these would score silently wrong: a NaN box matches nothing, a repeated category
id renames a class, a repeated image or annotation id drops ground truth from COCOeval's index.

Both files are read by `safe_files` (regular files only, never blocking), at most `max_bytes` each,
checked from the size before reading; the detections are parsed one at a time and refused at the
first one past `max_detections`, so memory stays within what the limit allows. faster-coco-eval
needs whole-number ids (it casts them to int64), so ids must be JSON integers.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re

from vocdet.components import safe_files

# Detections scored at most (`vocdet evaluate --max-detections`). A COCO evaluation keeps 100
# detections an image: VOC2007 test (4,952 images) and COCO val2017 (5,000) are each about 0.5 M.
# Twice that leaves room, and holds in a few GB of memory (a parsed detection takes about 0.5 kB).
MAX_DETECTIONS = 1_000_000
# Bytes a file may have (`vocdet evaluate --max-json-bytes`), checked before reading: MAX_DETECTIONS
# detections of BYTES_PER_DETECTION each (one written with full float precision and indent=2 is about
# 210 bytes; compact, about 100). COCO's instances_val2017.json, with its polygons, is 25 MB.
BYTES_PER_DETECTION = 256
MAX_JSON_BYTES = MAX_DETECTIONS * BYTES_PER_DETECTION

DETECTIONS_FLAG = "--max-detections"
BYTES_FLAG = "--max-json-bytes"
# faster-coco-eval casts ids to a C++ int64.
_ID_RANGE = 2**63


class CocoFileError(ValueError):
    """A ground-truth or detection file that cannot be scored."""


def load(
    gt_path: str, dt_path: str, max_detections: int = MAX_DETECTIONS, max_bytes: int = MAX_JSON_BYTES
) -> tuple[dict, list[dict], list[str]]:
    """(ground truth dataset, detections, class names in category-id order)."""
    ground_truth = _read_json(gt_path, max_bytes)
    if not isinstance(ground_truth, dict):
        raise CocoFileError(f"{gt_path}: expected a COCO dataset object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(ground_truth.get(key), list):
            raise CocoFileError(f"{gt_path}: missing key {key!r} (a list)")
    image_ids = _unique_ids(ground_truth["images"], ("id",), gt_path, "images", "image")
    _unique_ids(ground_truth["categories"], ("id", "name"), gt_path, "categories", "category")
    categories, names = {}, {}
    for index, category in enumerate(ground_truth["categories"]):
        name = category["name"]
        if not isinstance(name, str) or not name.strip():
            raise CocoFileError(f"{gt_path}: categories[{index}] name must be a non-empty string, got {_show(name)}")
        if name in names:
            raise CocoFileError(
                f"{gt_path}: categories[{index}] has the name {name!r}, as categories[{names[name]}] does; "
                "category names must be unique (the report keys classes by name)"
            )
        names[name] = index
        categories[category["id"]] = name
    annotation_ids: dict[int, int] = {}
    for index, annotation in enumerate(ground_truth["annotations"]):
        where = f"annotations[{index}]"
        _require(annotation, ("id", "image_id", "category_id", "bbox"), gt_path, where)
        _check_id(annotation["id"], gt_path, f"{where} id")
        if annotation["id"] in annotation_ids:
            raise CocoFileError(
                f"{gt_path}: {where} has id {annotation['id']}, as annotations[{annotation_ids[annotation['id']]}] does; "
                "annotation ids must be unique (COCOeval would keep one of them)"
            )
        annotation_ids[annotation["id"]] = index
        _check_box(annotation["bbox"], gt_path, where)
        _check_id(annotation["image_id"], gt_path, f"{where} image_id")
        _check_id(annotation["category_id"], gt_path, f"{where} category_id")
        if annotation["image_id"] not in image_ids:
            raise CocoFileError(f"{gt_path}: {where} refers to unknown image_id {annotation['image_id']!r}")
        if annotation["category_id"] not in categories:
            raise CocoFileError(f"{gt_path}: {where} refers to unknown category_id {annotation['category_id']!r}")
        if "area" in annotation:
            problem = _number_problem(annotation["area"])
            if problem or annotation["area"] < 0:
                raise CocoFileError(f"{gt_path}: {where} area must be a number >= 0, got {_show(annotation['area'])}")
        if "iscrowd" in annotation and (type(annotation["iscrowd"]) is not int or annotation["iscrowd"] not in (0, 1)):
            raise CocoFileError(f"{gt_path}: {where} iscrowd must be 0 or 1, got {_show(annotation['iscrowd'])}")
        annotation.setdefault("area", annotation["bbox"][2] * annotation["bbox"][3])
        annotation.setdefault("iscrowd", 0)
    if not any(annotation["iscrowd"] == 0 for annotation in ground_truth["annotations"]):
        which = "no annotations" if not ground_truth["annotations"] else "only iscrowd annotations (all ignored)"
        raise CocoFileError(
            f"{gt_path}: {which}, so no object to score against: every AP would be undefined (pycocotools and "
            "faster-coco-eval give -1); give ground truth with at least one object"
        )

    detections = _read_detections(dt_path, max_detections, max_bytes)
    for index, detection in enumerate(detections):
        where = f"detection {index}"
        _require(detection, ("image_id", "category_id", "bbox", "score"), dt_path, where)
        _check_box(detection["bbox"], dt_path, where)
        _check_id(detection["image_id"], dt_path, f"{where} image_id")
        _check_id(detection["category_id"], dt_path, f"{where} category_id")
        if detection["image_id"] not in image_ids:
            raise CocoFileError(f"{dt_path}: {where} is for image_id {detection['image_id']!r}, which {gt_path} does not have")
        if detection["category_id"] not in categories:
            raise CocoFileError(f"{dt_path}: {where} has category_id {detection['category_id']!r}, which {gt_path} does not have")
        problem = _number_problem(detection["score"])
        if problem:
            raise CocoFileError(f"{dt_path}: {where} score is {problem}: {_show(detection['score'])}")

    # Our metrics index classes from category id 1 upwards; renumber if the file does not.
    ordered = sorted(categories)
    if ordered != list(range(1, len(ordered) + 1)):
        remap = {category_id: index + 1 for index, category_id in enumerate(ordered)}
        ground_truth["categories"] = [{"id": remap[c], "name": categories[c]} for c in ordered]
        for item in ground_truth["annotations"] + detections:
            item["category_id"] = remap[item["category_id"]]
    return ground_truth, detections, [categories[c] for c in ordered]


def _read_json(path: str, max_bytes: int):
    try:
        return safe_files.read_json(path, max_bytes, f"raise it with {BYTES_FLAG}")
    except safe_files.UnsafeFileError as error:
        raise CocoFileError(str(error)) from None


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SEPARATOR = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*")


def _read_detections(path: str, max_detections: int, max_bytes: int) -> list:
    """The detections list, parsed one detection at a time by json's own scanner: refused at the first
    past `max_detections`, having built no more than the limit allows, however many the file holds."""
    try:
        content = safe_files.read_bytes(path, max_bytes, f"raise it with {BYTES_FLAG}")
    except safe_files.UnsafeFileError as error:
        raise CocoFileError(str(error)) from None
    try:
        text = content.decode(json.detect_encoding(content))
    except UnicodeDecodeError as error:
        raise CocoFileError(f"{path}: not valid JSON ({error})") from None
    del content
    position = _WHITESPACE.match(text).end()
    if not text.startswith("[", position):
        _read_json(path, max_bytes)  # a JSON error, if that is what it is, says more
        raise CocoFileError(f"{path}: expected a list of detections (COCO results format)")
    scan = json.scanner.make_scanner(json.JSONDecoder())
    detections: list = []
    position = _WHITESPACE.match(text, position + 1).end()
    try:
        closed = text.startswith("]", position)
        position += closed
        while not closed:
            if len(detections) == max_detections:
                raise CocoFileError(
                    f"{path}: more than {max_detections:,} detections, the limit; raise it with {DETECTIONS_FLAG}, "
                    "or keep the top 100 detections an image, as COCO scores them"
                )
            try:
                detection, position = scan(text, position)
            except StopIteration as stop:
                raise json.JSONDecodeError("Expecting value", text, stop.value) from None
            detections.append(detection)
            separator = _SEPARATOR.match(text, position)
            if not separator:
                raise json.JSONDecodeError("Expecting ',' delimiter", text, position)
            position, closed = separator.end(), separator.group(1) == "]"
        if _WHITESPACE.match(text, position).end() != len(text):
            raise json.JSONDecodeError("Extra data", text, position)
    except RecursionError:
        raise CocoFileError(f"{path}: JSON nested too deeply to read (over about 1,000 levels)") from None
    except CocoFileError:
        raise
    except ValueError as error:  # JSONDecodeError, and an integer too long to convert
        raise CocoFileError(f"{path}: not valid JSON ({str(error).splitlines()[0][:200]})") from None
    return detections


def _unique_ids(items: list, keys: tuple[str, ...], path: str, section: str, kind: str) -> set[int]:
    """The ids of a ground truth's images or categories, each a whole number, each once."""
    first: dict[int, int] = {}
    for index, item in enumerate(items):
        where = f"{section}[{index}]"
        _require(item, keys, path, where)
        _check_id(item["id"], path, f"{where} id")
        if item["id"] in first:
            raise CocoFileError(
                f"{path}: {where} has id {item['id']}, as {section}[{first[item['id']]}] does; {kind} ids must be unique"
            )
        first[item["id"]] = index
    return set(first)


def _check_id(value, path: str, where: str) -> None:
    # bool is an int in Python, and JSON's true would pass as 1.
    if type(value) is not int or not -_ID_RANGE <= value < _ID_RANGE:
        raise CocoFileError(f"{path}: {where} must be a whole number, got {_show(value)}")


def _number_problem(value) -> str | None:
    """Why `value` is not a finite number (JSON's true and false are not numbers), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "not a number"
    try:
        if math.isfinite(float(value)):
            return None
    except OverflowError:  # an integer past float's range
        pass
    return "not finite"


def _show(value) -> str:
    return safe_files.shorten(value, 80)


def _require(item, keys, path: str, where: str) -> None:
    if not isinstance(item, dict):
        raise CocoFileError(f"{path}: {where} is not an object")
    for key in keys:
        if key not in item:
            raise CocoFileError(f"{path}: {where} is missing key {key!r}")


def _check_box(box, path: str, where: str) -> None:
    if not (isinstance(box, list) and len(box) == 4):
        raise CocoFileError(f"{path}: {where} bbox must be [x, y, width, height] numbers, got {_show(box)}")
    for value in box:
        problem = _number_problem(value)
        if problem == "not a number":
            raise CocoFileError(f"{path}: {where} bbox must be [x, y, width, height] numbers, got {_show(box)}")
        if problem:
            raise CocoFileError(f"{path}: {where} bbox has a non-finite value ({_show(value)}): {_show(box)}")
    if box[2] < 0 or box[3] < 0:
        raise CocoFileError(f"{path}: {where} bbox has a negative width or height: {_show(box)}")
