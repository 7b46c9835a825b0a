"""Writes a small, deterministic, learnable dataset in the VOCdevkit layout.

The sample is what `vocdet run` trains on when no data is given, and what the
tests build real artefacts from. It is honest: every one of the 20 VOC class
names appears, each drawn as its own combination of shape, fill texture and
colour (so a detector can learn it, and a broken box conversion shows up as a
low mAP), on cluttered backgrounds with distractor strokes, with small
objects, overlaps, objects cut by the image border (`truncated`) and a few
tiny ones marked `difficult`, in VOC-like image sizes.

Layout written under DIR (what VOC's tar files unpack to, minus `VOCdevkit/`):
`VOC2007/{Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/{train,val,trainval,test}.txt}`.
"""

from __future__ import annotations

import colorsys
import dataclasses
import io
import json
import os

import numpy as np
from PIL import Image, ImageDraw

from vocdet.components import safe_files, voc_format

class NotASampleFolder(ValueError):
    """A `VOC<year>` folder vocdet did not write: the sample is never written over the person's data."""


SHAPES = ("ellipse", "rectangle", "triangle", "diamond", "cross")
TEXTURES = ("solid", "stripes", "checker", "dots")
MARKER_FILE = ".vocdet-sample.json"


@dataclasses.dataclass(frozen=True)
class SampleSpec:
    """What to generate; equal specs give byte-identical datasets."""

    num_images: int = 240
    seed: int = 0
    year: str = "2007"
    min_size: int = 240
    max_size: int = 500
    max_objects: int = 6
    train_fraction: float = 0.45
    val_fraction: float = 0.15

    def validate(self) -> None:
        if self.num_images < 4:
            raise ValueError(f"num_images must be at least 4, got {self.num_images}")
        if not 0 < self.train_fraction + self.val_fraction < 1:
            raise ValueError("train_fraction + val_fraction must leave a test split")
        if not 32 <= self.min_size <= self.max_size:
            raise ValueError(f"need 32 <= min_size <= max_size, got {self.min_size}, {self.max_size}")


def class_appearance(class_id: int) -> tuple[str, str, tuple[int, int, int]]:
    """(shape, texture, RGB colour) that identifies a class in the sample."""
    hue = (class_id * 7 % 20) / 20.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return (
        SHAPES[class_id % len(SHAPES)],
        TEXTURES[class_id // len(SHAPES) % len(TEXTURES)],
        (int(red * 255), int(green * 255), int(blue * 255)),
    )


def make_sample(directory: str, spec: SampleSpec = SampleSpec(), reuse: bool = True) -> str:
    """Writes the sample under `directory` and returns the `VOC<year>` folder.

    With `reuse`, a folder already holding the same spec is left as it is. The marker (`MARKER_FILE`,
    the spec and whether the sample is complete) is written before the first image and completed after
    the last, so only a folder that is new, empty or marked is written into: a `VOC<year>` of the
    person's own (`vocdet make-sample ~/VOCdevkit`) raises NotASampleFolder, untouched.
    """
    spec.validate()
    voc_dir = os.path.join(directory, f"VOC{spec.year}")
    marker = os.path.join(voc_dir, MARKER_FILE)
    written = _read_marker(marker)
    if reuse and written == {"spec": dataclasses.asdict(spec), "complete": True}:
        return voc_dir
    if written is None and os.path.isdir(voc_dir) and os.listdir(voc_dir):
        raise NotASampleFolder(
            f"{voc_dir}: holds files vocdet's sample did not write (no {MARKER_FILE}); the sample is written only into "
            "a new or empty folder: give another directory"
        )
    if os.path.lexists(voc_dir) and not os.path.isdir(voc_dir):
        raise NotASampleFolder(f"{voc_dir}: is a file, not a folder; give another directory")
    os.makedirs(voc_dir, exist_ok=True)
    _write_marker(marker, spec, complete=False)
    for sub in (voc_format.ANNOTATIONS_DIR, voc_format.IMAGES_DIR, voc_format.IMAGE_SETS_DIR):
        os.makedirs(os.path.join(voc_dir, sub), exist_ok=True)

    image_ids = [f"{index + 1:06d}" for index in range(spec.num_images)]
    for image_id in image_ids:
        jpeg, annotation = render_image(image_id, spec)
        with open(os.path.join(voc_dir, voc_format.IMAGES_DIR, f"{image_id}.jpg"), "wb") as handle:
            handle.write(jpeg)
        with open(os.path.join(voc_dir, voc_format.ANNOTATIONS_DIR, f"{image_id}.xml"), "w") as handle:
            handle.write(voc_format.annotation_to_xml(annotation))

    num_train = int(spec.num_images * spec.train_fraction)
    num_val = max(1, int(spec.num_images * spec.val_fraction))
    splits = {
        "train": image_ids[:num_train],
        "val": image_ids[num_train : num_train + num_val],
        "test": image_ids[num_train + num_val :],
    }
    splits["trainval"] = splits["train"] + splits["val"]
    for split, ids in splits.items():
        with open(os.path.join(voc_dir, voc_format.IMAGE_SETS_DIR, f"{split}.txt"), "w") as handle:
            handle.write("".join(f"{image_id}\n" for image_id in ids))
    _write_marker(marker, spec, complete=True)
    return voc_dir


def _read_marker(marker: str) -> dict | None:
    """{"spec", "complete"} of a folder vocdet's sample wrote (an older vocdet's marker: the spec alone), or None."""
    if not os.path.lexists(marker):
        return None
    content = json.loads(safe_files.read_bytes(marker, 1_000_000))
    return content if "complete" in content else {"spec": content, "complete": True}


def _write_marker(marker: str, spec: SampleSpec, complete: bool) -> None:
    with open(f"{marker}.tmp", "w") as handle:
        json.dump({"spec": dataclasses.asdict(spec), "complete": complete}, handle)
    os.replace(f"{marker}.tmp", marker)


def render_image(image_id: str, spec: SampleSpec) -> tuple[bytes, voc_format.VocAnnotation]:
    """Draws one image and its annotation; depends only on (spec.seed, image_id)."""
    rng = np.random.default_rng([spec.seed, int(image_id)])
    width = int(rng.integers(spec.min_size, spec.max_size + 1))
    height = int(rng.integers(spec.min_size, spec.max_size + 1))
    image = _background(rng, width, height)

    placed: list[tuple[int, tuple[float, float, float, float]]] = []
    num_objects = int(rng.integers(1, spec.max_objects + 1))
    attempts = 0
    while len(placed) < num_objects and attempts < 50:
        attempts += 1
        class_id = int(rng.integers(len(voc_format.VOC_CLASSES)))
        # Log-uniform sizes: many small objects, some large ones, like VOC.
        size = float(np.exp(rng.uniform(np.log(14), np.log(0.6 * min(width, height)))))
        box_w = size * rng.uniform(0.7, 1.4)
        box_h = size * rng.uniform(0.7, 1.4)
        # Allow objects to stick out of the image a little (then `truncated`).
        x0 = rng.uniform(-0.25 * box_w, width - 0.75 * box_w)
        y0 = rng.uniform(-0.25 * box_h, height - 0.75 * box_h)
        full_box = (x0, y0, x0 + box_w, y0 + box_h)
        if all(_iou(full_box, other) <= 0.35 for _, other in placed):
            placed.append((class_id, full_box))

    # Largest first, so an overlapping smaller object is drawn on top and
    # stays visible: every labelled object can be seen.
    placed.sort(key=lambda item: -(item[1][2] - item[1][0]) * (item[1][3] - item[1][1]))
    objects = []
    for class_id, full_box in placed:
        _draw_object(image, class_id, full_box, rng)
        x0, y0, x1, y1 = full_box
        xmin, ymin = max(0.0, x0), max(0.0, y0)
        xmax, ymax = min(float(width), x1), min(float(height), y1)
        visible_short_side = min(xmax - xmin, ymax - ymin)
        objects.append(
            voc_format.VocObject(
                name=voc_format.VOC_CLASSES[class_id],
                # VOC writes 1-based integer pixel coordinates.
                xmin=int(round(xmin)) + 1,
                ymin=int(round(ymin)) + 1,
                xmax=int(round(xmax)),
                ymax=int(round(ymax)),
                difficult=bool(visible_short_side < 16 and rng.random() < 0.5),
                truncated=(xmin, ymin, xmax, ymax) != full_box,
                pose=voc_format.VOC_POSES[int(rng.integers(len(voc_format.VOC_POSES)))],
            )
        )

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    annotation = voc_format.VocAnnotation(
        filename=f"{image_id}.jpg",
        width=width,
        height=height,
        objects=tuple(objects),
        folder=f"VOC{spec.year}",
    )
    return buffer.getvalue(), annotation


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A muted two-colour gradient with noise and grey distractor strokes."""
    top, bottom = rng.uniform(40, 200, size=(2, 3))
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    pixels = top * (1 - ramp) + bottom * ramp
    pixels = np.broadcast_to(pixels, (height, width, 3)) + rng.normal(0, 12, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 12))):
        grey = int(rng.integers(60, 200))
        points = [tuple(rng.uniform(0, (width, height))) for _ in range(2)]
        if rng.random() < 0.5:
            draw.line(points, fill=(grey, grey, grey), width=int(rng.integers(1, 5)))
        else:
            x_values, y_values = sorted((points[0][0], points[1][0])), sorted((points[0][1], points[1][1]))
            draw.rectangle((x_values[0], y_values[0], x_values[1], y_values[1]), outline=(grey,) * 3, width=2)
    return image


def _draw_object(image: Image.Image, class_id: int, box: tuple[float, ...], rng: np.random.Generator) -> None:
    shape, texture, colour = class_appearance(class_id)
    x0, y0, x1, y1 = (int(round(value)) for value in box)
    box_w, box_h = max(2, x1 - x0), max(2, y1 - y0)

    mask = Image.new("L", (box_w, box_h), 0)
    draw = ImageDraw.Draw(mask)
    last_x, last_y = box_w - 1, box_h - 1
    if shape == "ellipse":
        draw.ellipse((0, 0, last_x, last_y), fill=255)
    elif shape == "rectangle":
        draw.rectangle((0, 0, last_x, last_y), fill=255)
    elif shape == "triangle":
        draw.polygon([(last_x / 2, 0), (last_x, last_y), (0, last_y)], fill=255)
    elif shape == "diamond":
        draw.polygon([(last_x / 2, 0), (last_x, last_y / 2), (last_x / 2, last_y), (0, last_y / 2)], fill=255)
    else:  # cross
        draw.rectangle((last_x * 0.33, 0, last_x * 0.67, last_y), fill=255)
        draw.rectangle((0, last_y * 0.33, last_x, last_y * 0.67), fill=255)

    shade = np.array(colour, dtype=np.float64) * rng.uniform(0.85, 1.1)
    dark = shade * 0.35
    rows, cols = np.mgrid[0:box_h, 0:box_w]
    period = max(4, min(box_w, box_h) // 5)
    if texture == "stripes":
        pattern = (rows // max(2, period // 2)) % 2 == 0
    elif texture == "checker":
        pattern = ((rows // period) + (cols // period)) % 2 == 0
    elif texture == "dots":
        pattern = ((rows % period) - period / 2) ** 2 + ((cols % period) - period / 2) ** 2 > (period / 3.5) ** 2
    else:
        pattern = np.ones((box_h, box_w), dtype=bool)
    fill = np.where(pattern[..., None], shade, dark)
    patch = Image.fromarray(np.clip(fill, 0, 255).astype(np.uint8))
    image.paste(patch, (x0, y0), mask)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0
