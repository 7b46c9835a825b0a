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
  * an XML `<filename>` that disagrees with the image on disk is ignored: the
    image beside the annotation (same id) is used;
- rejected, with a reason: an image id that is not a plain file name (it would
  read outside the dataset), no annotation file, no image file, XML that does
  not parse, a missing `<bndbox>` or coordinate, a non-numeric or non-finite
  coordinate, an unknown class name (with the closest known one), an unreadable
  or truncated image, an image above the pixel limit (checked from its header,
  before any decoding); in strict mode, a `<size>` the image does not explain.

Only images that are not upright JPEGs are decoded: a valid JPEG without an
EXIF turn is checked from its header and end-of-image marker and stored byte
for byte.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import io
import os
import warnings

from PIL import Image, UnidentifiedImageError

from vocdet.components import features, voc_format
from vocdet.components.voc_example_gen import DEFAULT_MAX_IMAGE_PIXELS, orientation

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
}

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
    strict: bool = False,
) -> Outcome:
    """Reads `<voc_dir>/{Annotations,JPEGImages}/<image_id>.*` and converts it.

    Local files are resolved through the data root's links, so reports and errors name the user's
    own files, not the links. `strict` rejects what is otherwise repaired by an assumption (a
    `<size>` the image does not explain).
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
    return annotation_to_example(annotation, image_bytes, class_names, xml_path, image_path, max_image_pixels, strict)


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
    strict: bool = False,
) -> Outcome:
    """Applies the repair/reject rules and builds the tf.Example."""
    import tensorflow as tf

    repairs: list[tuple[str, str]] = []  # (kind, reason)
    image_sha256 = hashlib.sha256(image_bytes).hexdigest()
    try:
        image = stored_image(image_bytes, max_image_pixels)
    except ValueError as error:
        return Outcome(image_path, REJECTED, reasons=[str(error)])
    if image.source_format != "JPEG":
        repairs.append((REENCODED, "image re-encoded as JPEG"))
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
    A JPEG with no EXIF turn is kept byte for byte; any other image is decoded, turned upright
    (`orientation.upright`) and encoded as JPEG, without the EXIF turn that would turn it again.
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
    if image_format == "JPEG" and not image_bytes.rstrip(b"\x00").endswith(_JPEG_END_OF_IMAGE):
        raise ValueError("truncated JPEG (no end-of-image marker)")
    try:
        turn = orientation.exif_orientation(image)  # after the size check: a PNG's may need its pixels read
        if image_format == "JPEG" and turn == orientation.UPRIGHT:
            return StoredImage(image_bytes, width, height)
        buffer = io.BytesIO()
        upright = to_rgb(orientation.upright(image))
        upright.save(buffer, format="JPEG", quality=95)
    except Exception as error:
        raise ValueError(f"unreadable {image_format} image ({type(error).__name__}: {error})") from None
    return StoredImage(buffer.getvalue(), upright.width, upright.height, turn, image_format)
