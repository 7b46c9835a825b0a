"""Turns one VOCdevkit record (image + XML) into a tfds-layout tf.Example.

Plain functions with no Beam or TFX in them, so each rule can be tested on
its own. Every record ends in exactly one outcome, never silently dropped:

- written: converted as it is;
- repaired (written, with the repairs listed), by these documented rules:
  * a box partly outside the image is clipped to the image bounds;
  * a box that is empty after clipping (zero or negative area) is dropped from
    the image (it marks no visible object);
  * a `<size>` that disagrees with the real image is ignored: boxes are
    normalised by the real image size;
  * an image that is not a JPEG (PNG, BMP, ...) is re-encoded as JPEG;
  (a 16-bit PNG is scaled to 8 bits, not clipped);
  * an XML `<filename>` that disagrees with the image on disk is ignored: the
    image beside the annotation (same id) is used;
- rejected, with a reason: an image id that is not a plain file name (it would
  read outside the dataset), no annotation file, no image file, XML that does
  not parse, a missing `<bndbox>` or coordinate, a non-numeric or non-finite
  coordinate, an unknown class name, an unreadable or truncated image, an image
  above the pixel limit (checked from its header, before any decoding).

Only images that are not JPEGs are decoded: a valid JPEG is checked from its
header and end-of-image marker and stored byte for byte.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import warnings

from PIL import Image, UnidentifiedImageError

from vocdet.components import features, voc_format
from vocdet.components.voc_example_gen import DEFAULT_MAX_IMAGE_PIXELS

WRITTEN = "written"
REPAIRED = "repaired"
REJECTED = "rejected"
OUTCOMES = (WRITTEN, REPAIRED, REJECTED)

_JPEG_END_OF_IMAGE = b"\xff\xd9"


@dataclasses.dataclass
class Outcome:
    """What became of one listed image."""

    source: str
    status: str
    example: "object | None" = None  # tf.train.Example when written
    reasons: list[str] = dataclasses.field(default_factory=list)
    # SHA-256 of the image file, for written records: the same image twice, or in two splits, is found by it.
    image_sha256: str = ""

    def report_row(self) -> dict:
        return {"file": self.source, "status": self.status, "reasons": self.reasons, "image_sha256": self.image_sha256}


def read_image_set(list_path: str) -> list[str]:
    """Image ids listed in an `ImageSets/Main/<set>.txt` file (first column)."""
    import tensorflow as tf

    with tf.io.gfile.GFile(list_path) as handle:
        return [line.split()[0] for line in handle if line.strip()]


def voc_dir_of(list_path: str) -> str:
    """`.../VOC2007/ImageSets/Main/trainval.txt` -> `.../VOC2007`."""
    return os.path.dirname(os.path.dirname(os.path.dirname(list_path)))


def is_plain_image_id(image_id: str) -> bool:
    """Whether a listed id names a file inside the dataset's folders: no separators, no `..`, not absolute."""
    return bool(image_id) and image_id not in (".", "..") and not any(sep in image_id for sep in ("/", "\\", "\0"))


def convert_record(
    voc_dir: str,
    image_id: str,
    class_names: list[str] | tuple[str, ...],
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> Outcome:
    """Reads `<voc_dir>/{Annotations,JPEGImages}/<image_id>.*` and converts it.

    Local files are resolved through the data root's links, so reports and errors name the user's
    own files, not the links.
    """
    import tensorflow as tf

    if not is_plain_image_id(image_id):
        return Outcome(
            os.path.join(voc_dir, voc_format.IMAGE_SETS_DIR),
            REJECTED,
            reasons=[f"image id {image_id!r} is not a plain file name (it would read outside the dataset)"],
        )
    xml_path = _resolved(os.path.join(voc_dir, voc_format.ANNOTATIONS_DIR, f"{image_id}.xml"))
    if not tf.io.gfile.exists(xml_path):
        return Outcome(xml_path, REJECTED, reasons=["no annotation file"])
    image_path = find_image(os.path.join(voc_dir, voc_format.IMAGES_DIR), image_id)
    if image_path is None:
        return Outcome(
            _resolved(os.path.join(voc_dir, voc_format.IMAGES_DIR, f"{image_id}.jpg")), REJECTED, reasons=["no image file"]
        )
    try:
        with tf.io.gfile.GFile(xml_path, "rb") as handle:
            annotation = voc_format.parse_annotation_xml(handle.read(), source=xml_path)
    except voc_format.VocFormatError as error:
        return Outcome(xml_path, REJECTED, reasons=[str(error).removeprefix(f"{xml_path}: ")])
    with tf.io.gfile.GFile(image_path, "rb") as handle:
        image_bytes = handle.read()
    return annotation_to_example(annotation, image_bytes, class_names, xml_path, image_path, max_image_pixels)


def find_image(images_dir: str, image_id: str) -> str | None:
    """`<images_dir>/<image_id>.jpg`, else the first other image extension found; resolved through links."""
    import tensorflow as tf

    for extension in (*voc_format.IMAGE_EXTENSIONS, *(ext.upper() for ext in voc_format.IMAGE_EXTENSIONS)):
        path = os.path.join(images_dir, image_id + extension)
        if tf.io.gfile.exists(path):
            return _resolved(path)
    return None


def _resolved(path: str) -> str:
    return path if "://" in path else os.path.realpath(path)


def annotation_to_example(
    annotation: voc_format.VocAnnotation,
    image_bytes: bytes,
    class_names: list[str] | tuple[str, ...],
    xml_path: str,
    image_path: str,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> Outcome:
    """Applies the repair/reject rules and builds the tf.Example."""
    import tensorflow as tf

    repairs = []
    image_sha256 = hashlib.sha256(image_bytes).hexdigest()
    try:
        image_bytes, width, height, reencoded = _checked_jpeg(image_bytes, max_image_pixels)
    except ValueError as error:
        return Outcome(image_path, REJECTED, reasons=[str(error)])
    if reencoded:
        repairs.append("image re-encoded as JPEG")
    on_disk = os.path.basename(image_path)
    if annotation.filename and os.path.basename(annotation.filename.replace("\\", "/")) != on_disk:
        repairs.append(f"<filename> {annotation.filename!r} differs from the image on disk {on_disk!r}; used the image on disk")
    if (annotation.width, annotation.height) != (width, height):
        repairs.append(
            f"<size> {annotation.width}x{annotation.height} differs from the image's {width}x{height}; used the image's"
        )

    class_ids = {name: index for index, name in enumerate(class_names)}
    bbox, labels, difficult, truncated, poses = [], [], [], [], []
    for obj in annotation.objects:
        if obj.name not in class_ids:
            return Outcome(xml_path, REJECTED, reasons=[f"unknown class name {obj.name!r}"])
        xmin, xmax = min(max(obj.xmin, 0.0), width), min(max(obj.xmax, 0.0), width)
        ymin, ymax = min(max(obj.ymin, 0.0), height), min(max(obj.ymax, 0.0), height)
        if (xmin, ymin, xmax, ymax) != (obj.xmin, obj.ymin, obj.xmax, obj.ymax):
            repairs.append(f"{obj.name} box clipped to the image")
        if xmax <= xmin or ymax <= ymin:
            repairs.append(f"{obj.name} box has no area; dropped")
            continue
        # tfds's arithmetic exactly: VOC coordinates divided by the image size.
        bbox.extend([ymin / height, xmin / width, ymax / height, xmax / width])
        labels.append(class_ids[obj.name])
        difficult.append(int(obj.difficult))
        truncated.append(int(obj.truncated))
        poses.append(voc_format.VOC_POSES.index(obj.pose) if obj.pose in voc_format.VOC_POSES else len(voc_format.VOC_POSES) - 1)

    def int_feature(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                features.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes])),
                features.FILENAME: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[os.path.basename(image_path).encode()])
                ),
                features.BBOX: tf.train.Feature(float_list=tf.train.FloatList(value=bbox)),
                features.LABEL: int_feature(labels),
                features.IS_DIFFICULT: int_feature(difficult),
                features.IS_TRUNCATED: int_feature(truncated),
                features.POSE: int_feature(poses),
                features.LABELS: int_feature(sorted(set(labels))),
                features.LABELS_NO_DIFFICULT: int_feature(
                    sorted({label for label, hard in zip(labels, difficult) if not hard})
                ),
            }
        )
    )
    return Outcome(
        image_path, REPAIRED if repairs else WRITTEN, example=example, reasons=repairs, image_sha256=image_sha256
    )


def image_pixels_error(width: int, height: int, max_image_pixels: int) -> str | None:
    """The reason an image of this size is refused, or None."""
    if width * height > max_image_pixels:
        return (
            f"image is {width}x{height} ({width * height / 1e6:.0f} megapixels), above the limit of "
            f"{max_image_pixels / 1e6:g} (data.max_image_pixels)"
        )
    return None


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB; 16-bit greyscale (PNG's `I;16`, or `I`) is scaled to 8 bits, where PIL's own convert clips."""
    if image.mode.startswith("I;16") or image.mode == "I":
        import numpy as np

        levels = np.asarray(image, dtype=np.float64) / 257.0  # 65535 -> 255
        return Image.fromarray(np.clip(np.round(levels), 0, 255).astype(np.uint8), "L").convert("RGB")
    return image.convert("RGB")


def _checked_jpeg(image_bytes: bytes, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> tuple[bytes, int, int, bool]:
    """(jpeg_bytes, width, height, reencoded); raises ValueError if unreadable or too large.

    The size comes from the header (PIL opens lazily), so an oversized image is refused undecoded.
    """
    try:
        with warnings.catch_warnings():  # PIL's bomb warning: our own limit, below, says it better
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(image_bytes))
        width, height = image.size
        image_format = image.format
    except UnidentifiedImageError:
        raise ValueError("unreadable image (not an image format PIL recognises)") from None
    except Image.DecompressionBombError as error:
        raise ValueError(f"image above PIL's decompression-bomb limit ({error})") from None
    except Exception as error:  # PIL raises several types for damaged files
        raise ValueError(f"unreadable image ({type(error).__name__}: {error})") from None
    too_large = image_pixels_error(width, height, max_image_pixels)
    if too_large:
        raise ValueError(too_large)
    if image_format == "JPEG":
        if image_bytes.rstrip(b"\x00").endswith(_JPEG_END_OF_IMAGE):
            return image_bytes, width, height, False
        raise ValueError("truncated JPEG (no end-of-image marker)")
    try:
        buffer = io.BytesIO()
        to_rgb(image).save(buffer, format="JPEG", quality=95)
    except Exception as error:
        raise ValueError(f"unreadable {image_format} image ({type(error).__name__}: {error})") from None
    return buffer.getvalue(), width, height, True
