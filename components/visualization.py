"""Draws boxes on images: ground truth in green with its class, predictions in red with class and score.

One drawing routine for the evaluation gallery and `vocdet predict`, so the
two pictures look the same. Boxes are pixel `xyxy` in the image's own size.
"""

from __future__ import annotations

import io
import math

from PIL import Image, ImageDraw

TRUTH_COLOUR = (60, 220, 60)
PREDICTION_COLOUR = (240, 60, 60)


def draw_boxes(
    image: Image.Image,
    truth: list[tuple[list[float], str]] = (),
    predictions: list[tuple[list[float], str, float]] = (),
    scale: float = 1.0,
) -> Image.Image:
    """A copy of `image` resized by `scale` with the boxes drawn on it."""
    image = image.convert("RGB")
    if scale != 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    draw = ImageDraw.Draw(image)
    width = max(2, round(min(image.size) / 160))
    for box, name in truth:
        x0, y0, x1, y1 = (v * scale for v in box)
        draw.rectangle([x0, y0, x1, y1], outline=TRUTH_COLOUR, width=width)
        # Truth labels sit inside the box's bottom edge, prediction labels above the top edge.
        _label(draw, name, x0, y1, TRUTH_COLOUR, below=False, text_colour=(0, 0, 0))
    for box, name, confidence in predictions:
        x0, y0, x1, y1 = (v * scale for v in box)
        draw.rectangle([x0, y0, x1, y1], outline=PREDICTION_COLOUR, width=width)
        _label(draw, f"{name} {confidence:.2f}", x0, y0, PREDICTION_COLOUR, below=True, text_colour=(255, 255, 255))
    return image


def _label(draw: ImageDraw.ImageDraw, text: str, x: float, y: float, colour, below: bool, text_colour) -> None:
    """A filled label at (x, y): above that edge if it fits (`below` False: above the bottom edge)."""
    text_box = draw.textbbox((0, 0), text)
    height = text_box[3] - text_box[1] + 3
    top = y - height if (y >= height) else y
    draw.rectangle([x, top, x + text_box[2] + 4, top + height], fill=colour)
    draw.text((x + 2, top + 1), text, fill=text_colour)


def legend(picture: Image.Image, min_score: float) -> Image.Image:
    """`picture` under a band that says what the colours mean and which predictions are shown."""
    band = 22
    framed = Image.new("RGB", (picture.width, picture.height + band), (32, 32, 32))
    framed.paste(picture, (0, band))
    draw = ImageDraw.Draw(framed)
    x = 6
    for text, colour in (
        ("ground truth (class)", TRUTH_COLOUR),
        ("   ", None),
        (f"prediction (class, score >= {min_score:.2f})", PREDICTION_COLOUR),
    ):
        if colour:
            draw.text((x, 5), text, fill=colour)
        x += draw.textbbox((0, 0), text)[2]
    return framed


def contact_sheet(tiles: list[Image.Image], tile: int = 320, columns: int = 3) -> Image.Image:
    """Tiles (each at most `tile` px on its long side) on a dark grid."""
    rows = max(1, math.ceil(len(tiles) / columns))
    sheet = Image.new("RGB", (tile * columns, tile * rows), (32, 32, 32))
    for index, picture in enumerate(tiles):
        sheet.paste(picture, ((index % columns) * tile, (index // columns) * tile))
    return sheet


def open_image(encoded: bytes) -> Image.Image:
    return Image.open(io.BytesIO(encoded))
