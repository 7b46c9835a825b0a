"""Image files built by hand for the ingest tests."""


def png_header_only(width, height):
    """A PNG whose header claims width x height and whose pixel data is missing: only a header read can size it."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


# The PIL turn that makes stored pixels of an EXIF orientation from upright ones: the inverse of
# `ImageOps.exif_transpose`'s turn (its quarter turns swap; the others are their own inverse).
_STORED_FROM_UPRIGHT = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_90",
                        7: "TRANSVERSE", 8: "ROTATE_270"}
OBJECT_COLOUR = (230, 20, 30)


def stored_pixels(upright, orientation):
    """The pixels a camera stores, with this EXIF orientation, for a picture that viewers show as `upright`.

    Checked with PIL's own `exif_transpose`, which must give `upright` back.
    """
    from PIL import Image, ImageOps

    if orientation == 1:
        return upright.copy()
    stored = upright.transpose(getattr(Image.Transpose, _STORED_FROM_UPRIGHT[orientation]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.info["exif"] = exif.tobytes()
    assert ImageOps.exif_transpose(stored).tobytes() == upright.tobytes(), orientation
    return stored


def encoded_with_orientation(image, orientation, image_format="JPEG"):
    """`image`'s pixels as they are, encoded with an EXIF orientation tag (none for 1)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    options = {"quality": 95} if image_format == "JPEG" else {}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def photo_with_object(displayed_size, box, orientation=1, image_format="JPEG", grey=128):
    """(file bytes, the object's box in the stored pixels): a grey picture, displayed as `displayed_size`
    under this EXIF orientation, holding an `OBJECT_COLOUR` rectangle at `box` (pixel xmin, ymin, xmax,
    ymax in the displayed frame). Pictures of other `grey` levels are other images (other digests)."""
    import numpy as np
    from PIL import Image

    width, height = displayed_size
    pixels = np.full((height, width, 3), grey, np.uint8)
    xmin, ymin, xmax, ymax = box
    pixels[ymin:ymax, xmin:xmax] = OBJECT_COLOUR
    stored = stored_pixels(Image.fromarray(pixels), orientation)
    return encoded_with_orientation(stored, orientation, image_format), coloured_box(np.asarray(stored))


def coloured_box(pixels, colour=OBJECT_COLOUR, tolerance=60):
    """Pixel (xmin, ymin, xmax, ymax) around the pixels of `colour` (within JPEG's error) in an [h, w, 3] array."""
    import numpy as np

    close = (np.abs(pixels.astype(int) - np.array(colour)) <= tolerance).all(axis=-1)
    ys, xs = np.nonzero(close)
    assert len(xs), "no pixel of the object's colour"
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)

