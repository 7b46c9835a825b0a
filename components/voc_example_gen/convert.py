"""Turns one VOCdevkit record (image + XML) into a tfds-layout tf.Example.

Plain functions with no Beam or TFX in them, so each rule can be tested on
its own. Every record ends in exactly one outcome, never silently dropped:

- written: converted as it is;
- repaired (written, with the repairs listed in its reasons and counted by kind,
  `REPAIR_KINDS`), by these documented rules:
  * an image with an EXIF orientation other than 1 is turned upright and
    re-encoded; its boxes are taken in the frame `<size>` gives (`box_frame`);
  * `<size>` against the real image (`box_frame`): missing or zero, the
    image's size is used; a uniform rescale of it, the coordinates are scaled
    by image/`<size>` (tfds's own arithmetic divides by `<size>`); anything
    else, the coordinates are taken as the image's pixels, as said in the
    reasons (rejected in strict mode);
  * a class name that matches a known one but for case is read as that one
    (tfds's VOC builder lower-cases names);
  * a box partly outside the image is clipped to the image bounds;
  * a box that is empty after clipping (zero or negative area) is dropped from
    the image (it marks no visible object);
  * an image that is not a JPEG (PNG, BMP, ...) is re-encoded as JPEG;
  (a 16-bit PNG is scaled to 8 bits, not clipped);
  * data after a JPEG's end-of-image marker (a Motion Photo's video, a Samsung
    trailer, an MPO's second image) is stripped: the stream ends where its
    segments and scans say (`jpeg_end`), not where the file does;
  * several images with the annotation's id (`IMG_1.jpg` and `IMG_1.JPG`): the
    one `<filename>` names, else the one whose size `<size>` is
    (`choose_image`); the others are named in the reasons as not used;
  * an XML `<filename>` that disagrees with the only image of its id is
    ignored: that image is used;
- rejected, with a reason: an image id that is not a plain file name (it would
  read outside the dataset), no annotation file, no image file, XML that does
  not parse, several images with the id that neither `<filename>` nor `<size>`
  tells apart (all named), a missing `<bndbox>` or coordinate, a non-numeric or non-finite
  coordinate, an unknown class name (with the closest known one), an unreadable
  or truncated image, an image above the pixel limit (checked from its header,
  before any decoding); in strict mode, a `<size>` the image does not explain.

Only images that are not upright JPEGs are decoded: a valid JPEG without an
EXIF turn is checked from its header and its segments up to its end-of-image
marker, and stored byte for byte (without what follows that marker).

Files are read only through `safe_files.read_bytes`, within limits checked before reading: a FIFO,
device, folder or link loop named as a record's file, an annotation above `data.max_annotation_bytes`
or `data.max_objects_per_image` (counted while parsing), or an image file above 8 bytes a pixel of
`data.max_image_pixels`, is a rejected record with one reason. Links are followed; a record is
named by the user's own path (`_resolved`), and one that links out of its folder says so in its
reasons.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import io
import os
import re
import warnings

from PIL import Image, UnidentifiedImageError

from vocdet.components import features, safe_files, voc_format
from vocdet.components.voc_example_gen import (
    DATA_ROOT_DIR,
    DEFAULT_MAX_ANNOTATION_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_OBJECTS_PER_IMAGE,
    orientation,
)

WRITTEN = "written"
REPAIRED = "repaired"
REJECTED = "rejected"
OUTCOMES = (WRITTEN, REPAIRED, REJECTED)

# Kinds of repair: each repaired record lists its kinds, and the ingest report counts the records of
# each kind per split (key -> what `vocdet ingest` prints).
TURNED_UPRIGHT = "turned_upright"
BOXES_TURNED = "boxes_turned"
RESCALED_FROM_SIZE = "rescaled_from_size"
SIZE_MISSING = "size_missing"
SIZE_UNEXPLAINED = "size_unexplained"
CLASS_NAME_CASE = "class_name_case"
BOX_CLIPPED = "box_clipped"
BOX_DROPPED = "box_dropped"
REENCODED = "reencoded"
FILENAME_DIFFERS = "filename_differs"
TRAILER_STRIPPED = "trailer_stripped"
SAME_ID_IMAGE_UNUSED = "same_id_image_unused"
REPAIR_KINDS = {
    TURNED_UPRIGHT: "turned upright",
    BOXES_TURNED: "boxes turned with the pixels",
    RESCALED_FROM_SIZE: "rescaled from <size>",
    SIZE_MISSING: "no <size>",
    SIZE_UNEXPLAINED: "<size> unexplained",
    CLASS_NAME_CASE: "class name read but for case",
    BOX_CLIPPED: "box clipped",
    BOX_DROPPED: "box dropped",
    REENCODED: "re-encoded as JPEG",
    FILENAME_DIFFERS: "<filename> differs",
    TRAILER_STRIPPED: "trailer after the JPEG's end stripped",
    SAME_ID_IMAGE_UNUSED: "other image with the same id not used",
}


@dataclasses.dataclass
class Outcome:
    """What became of one listed image."""

    source: str
    status: str
    example: "object | None" = None  # tf.train.Example when written
    reasons: list[str] = dataclasses.field(default_factory=list)
    # SHA-256 of the image file, for written records: the same image twice, or in two splits, is found by it.
    image_sha256: str = ""
    # The kinds (REPAIR_KINDS keys) of the repairs in `reasons`, each once, sorted.
    repairs: list[str] = dataclasses.field(default_factory=list)

    def report_row(self) -> dict:
        return {
            "file": self.source,
            "status": self.status,
            "reasons": self.reasons,
            "repairs": self.repairs,
            "image_sha256": self.image_sha256,
        }


@dataclasses.dataclass(frozen=True)
class StoredImage:
    """The image as the example stores it: JPEG bytes, upright, with where they came from."""

    jpeg: bytes
    width: int  # of the stored, upright pixels: the displayed frame
    height: int
    # The source's EXIF orientation (1: none); its pixels were turned upright when not 1.
    exif_orientation: int = orientation.UPRIGHT
    # The source's format (PIL's name); its bytes are stored as they are only when a JPEG with no turn.
    source_format: str = "JPEG"
    # What followed the JPEG's end-of-image marker and is not stored, for the reasons; "" when nothing was.
    trailer_stripped: str = ""

    @property
    def source_size(self) -> tuple[int, int]:
        """(width, height) of the pixels as the source file stores them (the stored frame)."""
        return orientation.displayed_size((self.width, self.height), self.exif_orientation)


@dataclasses.dataclass(frozen=True)
class BoxFrame:
    """Where an annotation's coordinates were drawn, as `box_frame` decides it from `<size>` and the image."""

    # Drawn on the source's stored pixels (a tool that ignored EXIF): turned upright with them.
    stored: bool
    # <size> pixels -> the pixels of that frame, (x, y); 1 where <size> is that frame, or missing, or unexplained.
    scale: tuple[float, float]
    # (kind, reason) for each repair the decision makes.
    repairs: tuple[tuple[str, str], ...] = ()

    @property
    def unexplained(self) -> bool:
        """<size> fits neither frame, even rescaled: the coordinates are taken as the image's pixels."""
        return any(kind == SIZE_UNEXPLAINED for kind, _ in self.repairs)


# An ImageSets list is read whole, up to this size: 100 MB is some 5 million ids (VOC's trainval is 35 kB).
IMAGE_SET_MAX_BYTES = 100_000_000
# What an image file may weigh: 8 bytes for each pixel `max_image_pixels` allows (16-bit RGBA,
# the largest uncompressed pixel), and never less than 64 MB (metadata, a phone's appended video).
_IMAGE_BYTES_PER_PIXEL = 8
_IMAGE_MIN_BYTES_LIMIT = 64_000_000


def read_image_set(list_path: str) -> list[str]:
    """Image ids listed in an `ImageSets/Main/<set>.txt` file (first column); UnsafeFileError if not a regular file."""
    try:
        text = safe_files.read_bytes(list_path, IMAGE_SET_MAX_BYTES).decode("utf-8")
    except safe_files.UnsafeFileError as error:
        raise safe_files.UnsafeFileError(_resolved(list_path), error.problem) from None
    except UnicodeDecodeError:
        raise safe_files.UnsafeFileError(_resolved(list_path), "not a text file of image ids (not UTF-8)") from None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def image_bytes_limit(max_image_pixels: int) -> int:
    """The most bytes an image file is read up to, for a pixel limit (`_IMAGE_BYTES_PER_PIXEL`); ingest's and predict's."""
    return max(_IMAGE_BYTES_PER_PIXEL * max_image_pixels, _IMAGE_MIN_BYTES_LIMIT)


def image_bytes_setting(pixel_setting: str = "data.max_image_pixels") -> str:
    """What sets `image_bytes_limit`, for a message: the pixel limit's setting or flag."""
    return f"{_IMAGE_BYTES_PER_PIXEL} bytes a pixel of {pixel_setting}, at least {safe_files.describe_size(_IMAGE_MIN_BYTES_LIMIT)}"


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
    strict: bool = False,
    max_annotation_bytes: int = DEFAULT_MAX_ANNOTATION_BYTES,
    max_objects_per_image: int = DEFAULT_MAX_OBJECTS_PER_IMAGE,
) -> Outcome:
    """Reads `<voc_dir>/{Annotations,JPEGImages}/<image_id>.*` and converts it.

    Reports and errors name the user's own files (`_resolved`). Files are read with
    `safe_files.read_bytes`: a FIFO, device, folder or link loop named as a record's file, or an
    annotation above `max_annotation_bytes` or `max_objects_per_image`, is a rejected record with
    one reason, read no further. `strict` rejects what is otherwise repaired by an assumption (a
    `<size>` the image does not explain).
    """
    if not is_plain_image_id(image_id):
        return Outcome(
            os.path.join(voc_dir, voc_format.IMAGE_SETS_DIR),
            REJECTED,
            reasons=[f"image id {image_id!r} is not a plain file name (it would read outside the dataset)"],
        )
    xml_path = _resolved(os.path.join(voc_dir, voc_format.ANNOTATIONS_DIR, f"{image_id}.xml"))
    if not _exists(xml_path):
        return Outcome(xml_path, REJECTED, reasons=["no annotation file"])
    candidates = image_candidates(os.path.join(voc_dir, voc_format.IMAGES_DIR), image_id)
    if not candidates:
        return Outcome(
            _resolved(os.path.join(voc_dir, voc_format.IMAGES_DIR, f"{image_id}.jpg")), REJECTED, reasons=["no image file"]
        )
    try:
        annotation = read_annotation(xml_path, max_annotation_bytes, max_objects_per_image)
    except ValueError as error:  # UnsafeFileError, VocFormatError
        return Outcome(xml_path, REJECTED, reasons=[_unreadable(xml_path, error)])
    try:
        choice = choose_image(candidates, annotation, max_image_pixels)
    except ValueError as error:
        return Outcome(xml_path, REJECTED, reasons=[str(error)])
    image_path = choice.path
    try:
        image_bytes = safe_files.read_bytes(image_path, image_bytes_limit(max_image_pixels), image_bytes_setting())
    except safe_files.UnsafeFileError as error:
        return Outcome(image_path, REJECTED, reasons=[_unreadable(image_path, error)])
    outcome = annotation_to_example(
        annotation, image_bytes, class_names, xml_path, image_path, max_image_pixels, strict, choice
    )
    if outcome.status != REJECTED:
        outcome.reasons += [note for path in (xml_path, image_path) for note in _link_out_note(path)]
    return outcome


def read_annotation(
    xml_path: str,
    max_annotation_bytes: int = DEFAULT_MAX_ANNOTATION_BYTES,
    max_objects_per_image: int = DEFAULT_MAX_OBJECTS_PER_IMAGE,
) -> voc_format.VocAnnotation:
    """One annotation file, within the limits; UnsafeFileError or VocFormatError (both ValueErrors) naming it."""
    content = safe_files.read_bytes(xml_path, max_annotation_bytes, "data.max_annotation_bytes")
    return voc_format.parse_annotation_xml(
        content, source=xml_path, max_objects=max_objects_per_image, setting="data.max_objects_per_image"
    )


@dataclasses.dataclass(frozen=True)
class ImageChoice:
    """The image an annotation is paired with, among those with its id, and the others, which are not used."""

    path: str
    unused: tuple[str, ...] = ()
    # Why this one, for the record's reasons: "<filename> 'IMG_1.jpg' names this image" ("" for the only one).
    rule: str = ""

    def repairs(self) -> list[tuple[str, str]]:
        """(kind, reason) naming the images not used, so that none is dropped unsaid."""
        if not self.unused:
            return []
        return [(
            SAME_ID_IMAGE_UNUSED,
            f"{self.rule}, one of {len(self.unused) + 1} images with its id; not used: {', '.join(self.unused)}",
        )]


def image_id_of(file_name: str) -> str | None:
    """The image id a file name gives (`IMG_1.JPG` -> `IMG_1`): its stem, for any image extension in any case."""
    stem, extension = os.path.splitext(file_name)
    return stem if stem and extension.lower() in voc_format.IMAGE_EXTENSIONS else None


def image_candidates(images_dir: str, image_id: str) -> list[str]:
    """Every `<images_dir>/<image_id>.<ext>`, any image extension in any case, sorted, by the user's names (`_resolved`).

    Phones and cameras write `IMG_1.jpg` and `IMG_1.JPG` side by side, so an id can name several
    images: `choose_image` picks the annotation's. Broken links and FIFOs are candidates too: reading
    says what is wrong with them. An object store (gs://) is probed for the lower- and upper-case
    extensions only, as a listing there would be a request per record.
    """
    if "://" in images_dir:
        names = [image_id + ext for lower in voc_format.IMAGE_EXTENSIONS for ext in (lower, lower.upper())]
        found = [name for name in names if _exists(os.path.join(images_dir, name))]
    else:
        found = _local_images_by_id(images_dir).get(image_id, ())
    return [_resolved(os.path.join(images_dir, name)) for name in sorted(found)]


def _local_images_by_id(images_dir: str) -> dict[str, tuple[str, ...]]:
    try:
        status = os.stat(images_dir)
    except OSError:
        return {}
    return _images_by_id(os.path.realpath(images_dir), status.st_ino, status.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _images_by_id(directory: str, inode: int, mtime_ns: int) -> dict[str, tuple[str, ...]]:
    """image id -> its file names, from one listing of the folder.

    Cached by the folder's inode and modification time, which change when a file is added, removed
    or renamed there: a listing per record would be quadratic in VOC's 17,000-image folder.
    """
    by_id: dict[str, list[str]] = {}
    for name in os.listdir(directory):
        image_id = image_id_of(name)
        if image_id:
            by_id.setdefault(image_id, []).append(name)
    return {image_id: tuple(names) for image_id, names in by_id.items()}


def choose_image(
    candidates: list[str], annotation: voc_format.VocAnnotation, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> ImageChoice:
    """The image of `candidates` (same id, `image_candidates`) the annotation describes; ValueError if none tells.

    By `<filename>`: the candidate it names, else the one it names but for case; then, among those
    it names (or all, when it names none), the one whose size is `<size>`, in either frame of an
    EXIF-turned photo (as `box_frame` reads it). Several left: the annotation's image cannot be
    told, and the record is rejected naming them all, rather than trained on the wrong photo.
    """
    if not candidates:
        raise ValueError("no image file")
    if len(candidates) == 1:
        return ImageChoice(candidates[0])
    named = os.path.basename(annotation.filename.replace("\\", "/"))
    exact = [path for path in candidates if os.path.basename(path) == named]
    folded = [path for path in candidates if os.path.basename(path).casefold() == named.casefold()]
    if len(exact) == 1 or len(folded) == 1:
        chosen = exact[0] if len(exact) == 1 else folded[0]
        but_for_case = "" if len(exact) == 1 else " but for case"
        return ImageChoice(chosen, _others(candidates, chosen), f"<filename> {named!r} names this image{but_for_case}")
    size = (annotation.width, annotation.height)
    left = folded or candidates
    fitting = [path for path in left if size in _frames(path, max_image_pixels)]
    if len(fitting) == 1:
        return ImageChoice(fitting[0], _others(candidates, fitting[0]), f"<size> {_size(size)} is this image's size")
    filename = f"<filename> {named!r}" if named else "no <filename>"
    raise ValueError(
        f"{len(candidates)} images have the annotation's id and neither {filename} nor <size> "
        f"{_size(size if all(size) else None)} tells which it describes: {', '.join(candidates)}; "
        "name one in <filename>, or rename the others"
    )


def _others(candidates: list[str], chosen: str) -> tuple[str, ...]:
    return tuple(path for path in candidates if path != chosen)


def _frames(path: str, max_image_pixels: int) -> set[tuple[int, int]]:
    """The image's stored and displayed sizes, from its header; empty when it cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(safe_files.read_bytes(path, image_bytes_limit(max_image_pixels)))) as image:
                return {image.size, orientation.displayed_size(image.size, orientation.exif_orientation(image))}
    except Exception:  # an unreadable candidate fits no <size>; if it is chosen, its reading rejects it
        return set()


def _resolved(path: str) -> str:
    """The user's own name for a record's file: the data root's links followed once, the user's never.

    A run's data root (`<output>/data-root/<group>/VOC<name>/`) links `Annotations` and
    `JPEGImages`, or each of their files, to the --data folders. A record is named by the path in
    the user's folder those links give: neither the data-root link, nor where a link of the user's
    own leads (which is read, and noted in the reasons when it leads out of its folder). Object-store
    paths, and data roots laid out by the user (spans), are the user's names already.
    """
    if "://" in path:
        return path
    voc_dir = os.path.dirname(path)  # the data root's `<group>/VOC<name>` holding the path, if any
    while os.path.basename(os.path.dirname(os.path.dirname(voc_dir))) != DATA_ROOT_DIR:
        if os.path.dirname(voc_dir) == voc_dir:
            return path
        voc_dir = os.path.dirname(voc_dir)
    inside = os.path.relpath(path, voc_dir).split(os.sep)
    for depth in range(1, len(inside) + 1):  # the first link below it is the data root's: a folder, or a file
        linked = os.path.join(voc_dir, *inside[:depth])
        if os.path.islink(linked):
            return os.path.join(os.path.dirname(linked), os.readlink(linked), *inside[depth:])
    return path


def _exists(path: str) -> bool:
    """Whether the path names something, a broken link or a link loop included: `read_bytes` says what is wrong."""
    if "://" in path:
        import tensorflow as tf

        return tf.io.gfile.exists(path)
    return os.path.lexists(path)


def _unreadable(path: str, error: ValueError) -> str:
    """A record's one reason for a file that could not be read: the problem, and where a link of the user's led."""
    if not isinstance(error, safe_files.UnsafeFileError):
        return str(error).removeprefix(f"{path}: ")
    if "://" not in path and os.path.islink(path) and os.path.exists(path):  # a FIFO, a device: say which
        return f"{error.problem} (through the symbolic link to {os.path.realpath(path)})"
    return error.problem


def _link_out_note(path: str) -> list[str]:
    """The reasons' note for a file that is a symbolic link out of its folder: followed, and said where to.

    Followed, as tfds and TFX do: DVC's link cache and git-annex make every data file such a link,
    and vocdet reads only what the user running it can read.
    """
    if "://" in path or not os.path.islink(path):
        return []
    target, folder = os.path.realpath(path), os.path.realpath(os.path.dirname(path))
    if os.path.commonpath([target, folder]) == folder:
        return []
    return [f"{os.path.basename(path)} is a symbolic link out of its folder, to {target}; read from there"]


def annotation_to_example(
    annotation: voc_format.VocAnnotation,
    image_bytes: bytes,
    class_names: list[str] | tuple[str, ...],
    xml_path: str,
    image_path: str,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    strict: bool = False,
    image_choice: ImageChoice | None = None,
) -> Outcome:
    """Applies the repair/reject rules and builds the tf.Example; `image_choice` says which images were not used."""
    import tensorflow as tf

    repairs: list[tuple[str, str]] = image_choice.repairs() if image_choice else []  # (kind, reason)
    image_sha256 = hashlib.sha256(image_bytes).hexdigest()
    try:
        image = stored_image(image_bytes, max_image_pixels)
    except ValueError as error:
        return Outcome(image_path, REJECTED, reasons=[str(error)])
    if image.source_format != "JPEG":
        repairs.append((REENCODED, "image re-encoded as JPEG"))
    if image.trailer_stripped:
        repairs.append((TRAILER_STRIPPED, image.trailer_stripped))
    on_disk = os.path.basename(image_path)
    if annotation.filename and os.path.basename(annotation.filename.replace("\\", "/")) != on_disk:
        repairs.append((
            FILENAME_DIFFERS,
            f"<filename> {annotation.filename!r} differs from the image on disk {on_disk!r}; used the image on disk",
        ))
    frame = box_frame((annotation.width, annotation.height), image.source_size, image.exif_orientation)
    if frame.unexplained and strict:
        reason = unexplained_size((annotation.width, annotation.height), (image.width, image.height))
        return Outcome(xml_path, REJECTED, reasons=[f"{reason}; rejected in strict mode"])
    repairs.extend(frame.repairs)

    class_ids = {name: index for index, name in enumerate(class_names)}
    bbox, labels, difficult, truncated, poses = [], [], [], [], []
    for obj in annotation.objects:
        try:
            name = match_class_name(obj.name, class_names)
        except ValueError as error:
            return Outcome(xml_path, REJECTED, reasons=[str(error)])
        read_as = (CLASS_NAME_CASE, f"class name {obj.name!r} read as {name!r}")
        if name != obj.name and read_as not in repairs:
            repairs.append(read_as)
        box = _upright_box(obj, frame, image, repairs)
        if box is None:
            continue
        xmin, ymin, xmax, ymax = box
        # tfds's arithmetic exactly: VOC coordinates divided by the image size.
        bbox.extend([ymin / image.height, xmin / image.width, ymax / image.height, xmax / image.width])
        labels.append(class_ids[name])
        difficult.append(int(obj.difficult))
        truncated.append(int(obj.truncated))
        poses.append(voc_format.VOC_POSES.index(obj.pose) if obj.pose in voc_format.VOC_POSES else len(voc_format.VOC_POSES) - 1)

    def int_feature(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                features.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.jpeg])),
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
        image_path,
        REPAIRED if repairs else WRITTEN,
        example=example,
        reasons=[reason for _, reason in repairs],
        image_sha256=image_sha256,
        repairs=sorted({kind for kind, _ in repairs}),
    )


def _upright_box(obj: voc_format.VocObject, frame: BoxFrame, image: StoredImage, repairs: list) -> tuple | None:
    """The object's pixel box in the stored, upright image, or None when it has no area; repairs appended.

    Scaled from `<size>`'s pixels to those of the frame it was drawn in, clipped to that frame,
    then turned with the pixels when that frame is the stored one.
    """
    frame_width, frame_height = image.source_size if frame.stored else (image.width, image.height)
    scale_x, scale_y = frame.scale
    scaled = (obj.xmin * scale_x, obj.ymin * scale_y, obj.xmax * scale_x, obj.ymax * scale_y)
    xmin, xmax = min(max(scaled[0], 0.0), frame_width), min(max(scaled[2], 0.0), frame_width)
    ymin, ymax = min(max(scaled[1], 0.0), frame_height), min(max(scaled[3], 0.0), frame_height)
    if (xmin, ymin, xmax, ymax) != scaled:
        repairs.append((BOX_CLIPPED, f"{obj.name} box clipped to the image"))
    if xmax <= xmin or ymax <= ymin:
        repairs.append((BOX_DROPPED, f"{obj.name} box has no area; dropped"))
        return None
    if frame.stored:
        return orientation.turn_box((xmin, ymin, xmax, ymax), image.source_size, image.exif_orientation)
    return xmin, ymin, xmax, ymax


def box_frame(size: tuple[int, int], source_size: tuple[int, int], exif_orientation: int) -> BoxFrame:
    """The `<size>` rule: which frame an annotation's coordinates are in, and their scale to its pixels.

    Evidence first, the EXIF rule before the size rule. The frames are the displayed one (the image
    upright, as browser-based labelling tools show it) and, for an image with an EXIF turn, the
    stored one (a tool that ignored EXIF). `<size>` picks the frame it equals, else the one it is a
    uniform rescale of (`is_uniform_rescale`), the displayed frame first: where both frames have
    the same size (orientations 2, 3 and 4, square images), the displayed frame, the default. A
    rescaled `<size>` scales the coordinates by frame/`<size>`. No `<size>` (or zero): the displayed
    frame, coordinates as they are. A `<size>` that fits no frame: the same, said in the reasons
    (strict mode rejects the record).
    """
    displayed = orientation.displayed_size(source_size, exif_orientation)
    frames = [(False, displayed)] + ([(True, source_size)] if exif_orientation != orientation.UPRIGHT else [])
    given = size if size[0] > 0 and size[1] > 0 else None
    match = None
    if given:
        match = next(((stored, frame) for stored, frame in frames if frame == given), None) or next(
            ((stored, frame) for stored, frame in frames if is_uniform_rescale(given, frame)), None
        )
    stored, frame = match or (False, displayed)
    repairs = []
    if exif_orientation != orientation.UPRIGHT:
        if stored:
            case = f"boxes turned with the pixels: <size> {_size(given)} is its stored frame (a tool that ignored EXIF)"
        elif not match:
            case = "boxes taken in the displayed frame, the default (<size> names neither frame)"
        elif displayed == source_size:
            case = (f"boxes taken in the displayed frame, the default: <size> {_size(given)} fits both frames "
                    f"(orientation {exif_orientation} or a square image)")
        else:
            case = f"boxes taken in the displayed frame: <size> {_size(given)} is its displayed size"
        turned = f"image turned upright (EXIF orientation {exif_orientation}) and re-encoded"
        if stored:
            repairs += [(TURNED_UPRIGHT, turned), (BOXES_TURNED, case)]
        else:
            repairs.append((TURNED_UPRIGHT, f"{turned}; {case}"))
    scale = (1.0, 1.0)
    if not given:
        repairs.append((SIZE_MISSING, f"no <size> (or zero); used the image's {_size(displayed)}"))
    elif not match:
        repairs.append((SIZE_UNEXPLAINED, f"{unexplained_size(given, displayed)}; assumed the coordinates are its pixels"))
    elif given != frame:
        scale = (frame[0] / given[0], frame[1] / given[1])
        repairs.append((
            RESCALED_FROM_SIZE,
            f"<size> {_size(given)} differs from the image's {_size(frame)} by a uniform rescale; "
            f"coordinates rescaled from <size> (x{scale[0]:.3g}, y{scale[1]:.3g})",
        ))
    return BoxFrame(stored, scale, tuple(repairs))


def unexplained_size(size: tuple[int, int], image_size: tuple[int, int]) -> str:
    """What is wrong with a `<size>` that fits no frame of the image, for the record's reasons."""
    return f"<size> {_size(size)} is neither the image's {_size(image_size)} nor a uniform rescale of it"


def is_uniform_rescale(size: tuple[int, int], image_size: tuple[int, int]) -> bool:
    """Whether `image_size` is `size` scaled by one factor, within the pixel a resize rounds off on each side.

    Some factor s gives |width - s * W| < 1 and |height - s * H| < 1 exactly when
    |width * H - height * W| < W + H.
    """
    (size_width, size_height), (width, height) = size, image_size
    return abs(width * size_height - height * size_width) < size_width + size_height


def match_class_name(name: str, class_names: list[str] | tuple[str, ...]) -> str:
    """The known class `name` stands for: itself, else the one known name it equals but for case.

    tfds's VOC builder lower-cases every name, so 'Dog' is 'dog'. Raises ValueError when no known
    name matches (naming the closest) or when several do but for case.
    """
    if name in class_names:
        return name
    folded = {known: voc_format.folded_class_name(known) for known in class_names}
    same = [known for known, key in folded.items() if key == voc_format.folded_class_name(name)]
    if len(same) == 1:
        return same[0]
    if same:
        raise ValueError(f"class name {name!r} matches {' and '.join(map(repr, same))} but for case: ambiguous")
    closest = difflib.get_close_matches(voc_format.folded_class_name(name), list(folded.values()), n=1, cutoff=0)
    known = [known for known, key in folded.items() if key in closest][:1]
    raise ValueError(f"unknown class name {name!r}" + "".join(f" (closest known name: {k!r})" for k in known))


def _size(size: tuple[int, int] | None) -> str:
    return f"{size[0]}x{size[1]}" if size else "none"


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


def stored_image(image_bytes: bytes, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> StoredImage:
    """The JPEG the example stores, upright; raises ValueError if unreadable or too large.

    The size comes from the header (PIL opens lazily), so an oversized image is refused undecoded.
    A JPEG with no EXIF turn is kept byte for byte, up to its end-of-image marker (`jpeg_end`): what
    follows (a phone's video, a trailer) is stripped and said in `trailer_stripped`. Any other image
    is decoded, turned upright (`orientation.upright`) and encoded as JPEG, without the EXIF turn
    that would turn it again.
    """
    try:
        with warnings.catch_warnings():  # PIL's bomb warning: our own limit, below, says it better
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(image_bytes))
        width, height = image.size
        # PIL names a JPEG that carries an MPF index of further images after its end (an MPO: a second
        # view, a depth or gain map) "MPO"; its first image is the photo.
        image_format = "JPEG" if image.format == "MPO" else image.format
    except UnidentifiedImageError:
        raise ValueError("unreadable image (not an image format PIL recognises)") from None
    except Image.DecompressionBombError as error:
        raise ValueError(f"image above PIL's decompression-bomb limit ({error})") from None
    except Exception as error:  # PIL raises several types for damaged files
        raise ValueError(f"unreadable image ({type(error).__name__}: {error})") from None
    too_large = image_pixels_error(width, height, max_image_pixels)
    if too_large:
        raise ValueError(too_large)
    jpeg, trailer_stripped = image_bytes, ""
    if image_format == "JPEG":
        end = jpeg_end(image_bytes)
        if image_bytes.count(0, end) < len(image_bytes) - end:  # zero padding (memory cards) is kept, as it was
            jpeg, trailer_stripped = image_bytes[:end], describe_trailer(image_bytes[end:])
    try:
        turn = orientation.exif_orientation(image)  # after the size check: a PNG's may need its pixels read
        if image_format == "JPEG" and turn == orientation.UPRIGHT:
            return StoredImage(jpeg, width, height, trailer_stripped=trailer_stripped)
        buffer = io.BytesIO()
        upright = to_rgb(orientation.upright(image))
        upright.save(buffer, format="JPEG", quality=95)
    except Exception as error:
        raise ValueError(f"unreadable {image_format} image ({type(error).__name__}: {error})") from None
    return StoredImage(buffer.getvalue(), upright.width, upright.height, turn, image_format, trailer_stripped)


# Markers with no length after them: TEM and the restart markers RST0-7.
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
_START_OF_IMAGE, _END_OF_IMAGE, _START_OF_SCAN = 0xD8, 0xD9, 0xDA
# Between segments a marker is FF and a byte other than 00 or FF; bytes before it are skipped, as libjpeg does.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xff]")
# In a scan's entropy-coded data, FF is followed by 00 (a stuffed FF), RST0-7 or more FF (fill):
# any other byte is the marker that ends the scan.
_END_OF_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_end(data: bytes) -> int:
    """The length of the JPEG stream `data` starts with, its end-of-image marker included.

    Walks the stream as a decoder does: each segment by its length, each scan's entropy-coded data
    to the marker that ends it. So neither what is appended after the stream (a Motion Photo's
    video, a Samsung trailer, an MPO's next image) nor a JPEG inside it (the EXIF thumbnail, in its
    APP1 segment) is taken for its end. Raises ValueError when the stream stops before its
    end-of-image marker (truncated), or holds a marker no JPEG has.
    """
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("unreadable JPEG (no start-of-image marker)")
    truncated = ValueError("truncated JPEG (no end-of-image marker)")
    position, in_scan = 2, False
    while True:
        found = (_END_OF_SCAN if in_scan else _NEXT_MARKER).search(data, position)
        if found is None:
            raise truncated
        marker, position = data[found.start() + 1], found.end()
        if marker == _END_OF_IMAGE:
            return position
        if marker in _STANDALONE_MARKERS:
            continue
        if marker < 0xC0 or marker == _START_OF_IMAGE:
            raise ValueError(f"corrupt JPEG (0xff{marker:02x} at byte {found.start()} is not a JPEG marker there)")
        if position + 2 > len(data):
            raise truncated
        position += int.from_bytes(data[position : position + 2], "big")  # the length counts its own 2 bytes
        in_scan = marker == _START_OF_SCAN


def describe_trailer(trailer: bytes) -> str:
    """A repair's reason for the bytes after a JPEG's end-of-image marker, naming what phones put there."""
    if b"ftyp" in trailer[:64]:
        what = "a video: a Motion Photo's MP4"
    elif trailer[-4:] == b"SEFT" or b"SEFH" in trailer[-1024:]:
        what = "a Samsung trailer (SEFH/SEFT)"
    elif trailer.lstrip(b"\x00").startswith(b"\xff\xd8"):
        what = "another JPEG: an MPO's next image, a depth or gain map"
    else:
        what = "data that is not the image"
    return f"{safe_files.describe_size(len(trailer))} after the JPEG's end-of-image marker ({what}) stripped"
