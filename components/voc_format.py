"""Pascal VOC annotation format: class names, XML reading and writing.

One place knows the VOCdevkit layout and the annotation XML schema, so the
sample-data generator (which writes it) and the ExampleGen executor (which
reads it) cannot disagree. Boxes here are VOC's own: pixel `xmin, ymin, xmax,
ymax` as written in `<bndbox>`; conversion to other formats happens later,
through KerasCV.
"""

from __future__ import annotations

import dataclasses
import math
import xml.etree.ElementTree as ElementTree

# Class names in tfds's `voc` id order (`objects-label.labels.txt`).
VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

# Pose names in tfds's `voc` id order (`objects-pose.labels.txt`); VOC XML
# writes them capitalised ("Unspecified"), tfds lower-cases them.
VOC_POSES = ("frontal", "rear", "left", "right", "unspecified")

ANNOTATIONS_DIR = "Annotations"
IMAGES_DIR = "JPEGImages"
IMAGE_SETS_DIR = "ImageSets/Main"
# Image files an annotation may sit beside (any case), VOC's own first.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def folded_class_name(name: str) -> str:
    """A class name as tfds's VOC builder stores it, lower-cased: names equal in this form are one class."""
    return name.strip().lower()


def names_equal_but_for_case(names: list[str] | tuple[str, ...]) -> tuple[str, str] | None:
    """The first two names of a class list that differ only in case (they would be one class), or None."""
    seen: dict[str, str] = {}
    for name in names:
        first = seen.setdefault(folded_class_name(name), name)
        if first != name:
            return first, name
    return None


class VocFormatError(ValueError):
    """An annotation that does not follow the VOC schema."""


@dataclasses.dataclass(frozen=True)
class VocObject:
    """One annotated object, with its box in VOC pixel `xyxy` coordinates."""

    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False
    truncated: bool = False
    pose: str = "unspecified"


@dataclasses.dataclass(frozen=True)
class VocAnnotation:
    """The contents of one `Annotations/<id>.xml` file; width and height 0 when it gives no `<size>`."""

    filename: str
    width: int
    height: int
    depth: int = 3
    objects: tuple[VocObject, ...] = ()
    folder: str = "VOC2007"


def annotation_to_xml(annotation: VocAnnotation) -> str:
    """Renders an annotation with the element layout of VOC2007's XML files."""
    root = ElementTree.Element("annotation")
    _add_text(root, "folder", annotation.folder)
    _add_text(root, "filename", annotation.filename)
    source = ElementTree.SubElement(root, "source")
    _add_text(source, "database", "vocdet sample")
    _add_text(source, "annotation", "PASCAL VOC2007")
    size = ElementTree.SubElement(root, "size")
    _add_text(size, "width", str(annotation.width))
    _add_text(size, "height", str(annotation.height))
    _add_text(size, "depth", str(annotation.depth))
    _add_text(root, "segmented", "0")
    for obj in annotation.objects:
        node = ElementTree.SubElement(root, "object")
        _add_text(node, "name", obj.name)
        _add_text(node, "pose", obj.pose.capitalize())
        _add_text(node, "truncated", str(int(obj.truncated)))
        _add_text(node, "difficult", str(int(obj.difficult)))
        bndbox = ElementTree.SubElement(node, "bndbox")
        for key in ("xmin", "ymin", "xmax", "ymax"):
            _add_text(bndbox, key, _format_coordinate(getattr(obj, key)))
    ElementTree.indent(root, space="\t")
    return ElementTree.tostring(root, encoding="unicode") + "\n"


class _ObjectCounter(ElementTree.TreeBuilder):
    """ElementTree's tree builder, stopping once the root holds more than `max_objects` `<object>`s.

    Counted as expat reads the start tags, so an annotation of a million objects is refused after
    the first few thousand are built, not after all of them.
    """

    def __init__(self, max_objects: int):
        super().__init__()
        self.max_objects = max_objects
        self.objects = 0
        self.depth = 0

    def start(self, tag, attrs):
        if self.depth == 1 and tag == "object":
            self.objects += 1
            if self.objects > self.max_objects:
                raise _TooManyObjects
        self.depth += 1
        return super().start(tag, attrs)

    def end(self, tag):
        self.depth -= 1
        return super().end(tag)


class _TooManyObjects(Exception):
    pass


def parse_annotation_xml(
    content: bytes | str, source: str = "<xml>", max_objects: int | None = None, setting: str = ""
) -> VocAnnotation:
    """Parses one VOC annotation; raises VocFormatError naming `source`.

    `max_objects` refuses an annotation with more `<object>`s, counted while parsing; `setting`
    names what sets it, for the message (e.g. `data.max_objects_per_image`).
    """
    try:
        if max_objects is None:
            root = ElementTree.fromstring(content)
        else:
            parser = ElementTree.XMLParser(target=_ObjectCounter(max_objects))
            parser.feed(content)
            root = parser.close()
    except ElementTree.ParseError as error:
        raise VocFormatError(f"{source}: XML does not parse ({error})") from None
    except _TooManyObjects:
        raise VocFormatError(
            f"{source}: over the limit of {max_objects:,} objects" + (f" ({setting})" if setting else "")
        ) from None
    if root.tag != "annotation":
        raise VocFormatError(f"{source}: root element is <{root.tag}>, expected <annotation>")
    # No <size>, or an empty <width> or <height>: 0, which the converter reads as "use the image's size".
    size = root.find("size")
    width = _read_number(size, "width", source, int, missing=0) if size is not None else 0
    height = _read_number(size, "height", source, int, missing=0) if size is not None else 0
    depth_node = size.find("depth") if size is not None else None
    depth = int(depth_node.text) if depth_node is not None and (depth_node.text or "").strip() else 3
    objects = []
    for index, node in enumerate(root.findall("object")):
        where = f"{source}: object {index}"
        name = (node.findtext("name") or "").strip()
        if not name:
            raise VocFormatError(f"{where}: missing <name>")
        bndbox = node.find("bndbox")
        if bndbox is None:
            raise VocFormatError(f"{where} ({name}): missing <bndbox>")
        coordinates = {
            key: _read_number(bndbox, key, f"{where} ({name})", float)
            for key in ("xmin", "ymin", "xmax", "ymax")
        }
        objects.append(
            VocObject(
                name=name,
                difficult=_read_flag(node, "difficult"),
                truncated=_read_flag(node, "truncated"),
                pose=(node.findtext("pose") or "unspecified").strip().lower() or "unspecified",
                **coordinates,
            )
        )
    return VocAnnotation(
        filename=(root.findtext("filename") or "").strip(),
        width=width,
        height=height,
        depth=depth,
        objects=tuple(objects),
        folder=(root.findtext("folder") or "").strip(),
    )


def _add_text(parent: ElementTree.Element, tag: str, text: str) -> None:
    ElementTree.SubElement(parent, tag).text = text


def _format_coordinate(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _read_number(parent: ElementTree.Element, tag: str, where: str, kind: type, missing=None):
    """A finite number, or `missing` when the tag is absent or empty and `missing` is given.

    Finite: `nan` and `inf` parse as floats, and would pass every comparison-based check later.
    """
    text = parent.findtext(tag)
    if (text is None or not text.strip()) and missing is not None:
        return missing
    if text is None or not text.strip():
        raise VocFormatError(f"{where}: missing <{tag}>")
    try:
        value = float(text)
    except ValueError:
        raise VocFormatError(f"{where}: <{tag}> is not a number: {text.strip()!r}") from None
    if not math.isfinite(value):
        raise VocFormatError(f"{where}: <{tag}> is not a finite number: {text.strip()!r}")
    return int(value) if kind is int else kind(value)


def _read_flag(node: ElementTree.Element, tag: str) -> bool:
    text = (node.findtext(tag) or "0").strip()
    try:
        return bool(int(float(text)))
    except ValueError:
        return False
