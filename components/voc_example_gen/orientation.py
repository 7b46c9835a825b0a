"""EXIF orientation: the turn a camera records instead of turning its pixels, applied the way viewers do.

A phone stores the pixels as its sensor read them and writes, in the EXIF orientation tag, how a
viewer must turn them. Browsers apply it, and so do the labelling tools that run in them (Label
Studio, CVAT); TensorFlow's decoders (`tf.io.decode_jpeg`, `decode_image`) do not. Ingest and
`vocdet predict` both turn such an image upright here, with PIL's own `ImageOps.exif_transpose`, so
training, evaluation and prediction see what the person who drew the boxes saw. `turn_box` carries
a box drawn on the stored pixels through the same turn.

Frames: the *stored* frame is the pixels as the file holds them, the *displayed* frame is what a
viewer shows once the orientation is applied (width and height swapped for a quarter turn).
"""

from __future__ import annotations

from PIL import ExifTags, Image, ImageOps

UPRIGHT = 1
# The orientations EXIF defines; any other value (0, 9, ...) is read as upright, as PIL does.
ORIENTATIONS = range(1, 9)
# Orientations whose turn is a quarter turn (with or without a mirror): displayed width = stored height.
QUARTER_TURNS = (5, 6, 7, 8)


def exif_orientation(image: Image.Image) -> int:
    """The image's EXIF orientation (1..8), read from its header without decoding; 1 when absent or invalid."""
    value = image.getexif().get(ExifTags.Base.Orientation, UPRIGHT)
    return value if isinstance(value, int) and value in ORIENTATIONS else UPRIGHT


def displayed_size(stored_size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """(width, height) a viewer shows for pixels stored as `stored_size` with this orientation."""
    width, height = stored_size
    return (height, width) if orientation in QUARTER_TURNS else (width, height)


def upright(image: Image.Image) -> Image.Image:
    """The image as viewers display it: its EXIF orientation applied to the pixels (PIL's `exif_transpose`)."""
    if exif_orientation(image) == UPRIGHT:
        return image
    return ImageOps.exif_transpose(image)


def turn_box(box: tuple[float, float, float, float], stored_size: tuple[int, int], orientation: int) -> tuple[float, ...]:
    """A pixel `xmin, ymin, xmax, ymax` box on the stored pixels, moved to where `upright` puts those pixels.

    The same turn as `exif_transpose` (EXIF's orientation 2: mirror left-right, 3: half turn,
    4: mirror top-bottom, 5: transpose, 6: quarter turn clockwise, 7: transverse, 8: quarter turn
    anticlockwise), applied to the box's two corners.
    """
    width, height = stored_size
    turns = {
        UPRIGHT: lambda x, y: (x, y),
        2: lambda x, y: (width - x, y),
        3: lambda x, y: (width - x, height - y),
        4: lambda x, y: (x, height - y),
        5: lambda x, y: (y, x),
        6: lambda x, y: (height - y, x),
        7: lambda x, y: (height - y, width - x),
        8: lambda x, y: (y, width - x),
    }
    turn = turns[orientation if orientation in turns else UPRIGHT]
    (x0, y0), (x1, y1) = turn(box[0], box[1]), turn(box[2], box[3])
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)
