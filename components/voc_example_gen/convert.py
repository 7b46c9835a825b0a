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
- rejected, with a reason: no annotation file, no image file, XML that does
  not parse, a missing `<bndbox>` or coordinate, a non-numeric coordinate, an
  unknown class name, an unreadable or truncated image.

Only JPEGs that are not JPEGs are decoded: a valid JPEG is checked from its
header and end-of-image marker and stored byte for byte.
"""

from __future__ import annotations

import dataclasses
import io
import os

from PIL import Image, UnidentifiedImageError

from vocdet.components import features, voc_format

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

    def report_row(self) -> dict:
        return {"file": self.source, "status": self.status, "reasons": self.reasons}


def read_image_set(list_path: str) -> list[str]:
    """Image ids listed in an `ImageSets/Main/<set>.txt` file (first column)."""
    import tensorflow as tf

    with tf.io.gfile.GFile(list_path) as handle:
        return [line.split()[0] for line in handle if line.strip()]


def voc_dir_of(list_path: str) -> str:
    """`.../VOC2007/ImageSets/Main/trainval.txt` -> `.../VOC2007`."""
    return os.path.dirname(os.path.dirname(os.path.dirname(list_path)))


def convert_record(voc_dir: str, image_id: str, class_names: list[str] | tuple[str, ...]) -> Outcome:
    """Reads `<voc_dir>/{Annotations,JPEGImages}/<image_id>.*` and converts it.

    A local `voc_dir` is resolved through the data root's links, so reports and errors name the
    user's own files, not the links.
    """
    import tensorflow as tf

    if "://" not in voc_dir:
        voc_dir = os.path.realpath(voc_dir)

    xml_path = os.path.join(voc_dir, voc_format.ANNOTATIONS_DIR, f"{image_id}.xml")
    image_path = os.path.join(voc_dir, voc_format.IMAGES_DIR, f"{image_id}.jpg")
    if not tf.io.gfile.exists(xml_path):
        return Outcome(xml_path, REJECTED, reasons=["no annotation file"])
    if not tf.io.gfile.exists(image_path):
        return Outcome(image_path, REJECTED, reasons=["no image file"])
    try:
        with tf.io.gfile.GFile(xml_path, "rb") as handle:
            annotation = voc_format.parse_annotation_xml(handle.read(), source=xml_path)
    except voc_format.VocFormatError as error:
        return Outcome(xml_path, REJECTED, reasons=[str(error).removeprefix(f"{xml_path}: ")])
    with tf.io.gfile.GFile(image_path, "rb") as handle:
        image_bytes = handle.read()
    return annotation_to_example(annotation, image_bytes, class_names, xml_path, image_path)


def annotation_to_example(
    annotation: voc_format.VocAnnotation,
    image_bytes: bytes,
    class_names: list[str] | tuple[str, ...],
    xml_path: str,
    image_path: str,
) -> Outcome:
    """Applies the repair/reject rules and builds the tf.Example."""
    import tensorflow as tf

    repairs = []
    try:
        image_bytes, width, height, reencoded = _checked_jpeg(image_bytes)
    except ValueError as error:
        return Outcome(image_path, REJECTED, reasons=[str(error)])
    if reencoded:
        repairs.append("image re-encoded as JPEG")
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
    return Outcome(image_path, REPAIRED if repairs else WRITTEN, example=example, reasons=repairs)


def _checked_jpeg(image_bytes: bytes) -> tuple[bytes, int, int, bool]:
    """(jpeg_bytes, width, height, reencoded); raises ValueError if unreadable."""
    try:
        image = Image.open(io.BytesIO(image_bytes))
        width, height = image.size
        image_format = image.format
    except UnidentifiedImageError:
        raise ValueError("unreadable image (not an image format PIL recognises)") from None
    except Exception as error:  # PIL raises several types for damaged files
        raise ValueError(f"unreadable image ({type(error).__name__}: {error})") from None
    if image_format == "JPEG":
        if image_bytes.rstrip(b"\x00").endswith(_JPEG_END_OF_IMAGE):
            return image_bytes, width, height, False
        raise ValueError("truncated JPEG (no end-of-image marker)")
    try:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
    except Exception as error:
        raise ValueError(f"unreadable {image_format} image ({type(error).__name__}: {error})") from None
    return buffer.getvalue(), width, height, True
