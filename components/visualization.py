"""Draws boxes on images: ground truth in green, predictions in red with class name and score.

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
    for box, _ in truth:
        draw.rectangle([v * scale for v in box], outline=TRUTH_COLOUR, width=width)
    for box, name, confidence in predictions:
        x0, y0, x1, y1 = (v * scale for v in box)
        draw.rectangle([x0, y0, x1, y1], outline=PREDICTION_COLOUR, width=width)
        label = f"{name} {confidence:.2f}"
        text_box = draw.textbbox((0, 0), label)
        label_height = text_box[3] - text_box[1] + 3
        top = y0 - label_height if y0 >= label_height else y0
        draw.rectangle([x0, top, x0 + text_box[2] + 4, top + label_height], fill=PREDICTION_COLOUR)
        draw.text((x0 + 2, top + 1), label, fill=(255, 255, 255))
    return image


def contact_sheet(tiles: list[Image.Image], tile: int = 320, columns: int = 3) -> Image.Image:
    """Tiles (each at most `tile` px on its long side) on a dark grid."""
    rows = max(1, math.ceil(len(tiles) / columns))
    sheet = Image.new("RGB", (tile * columns, tile * rows), (32, 32, 32))
    for index, picture in enumerate(tiles):
        sheet.paste(picture, ((index % columns) * tile, (index // columns) * tile))
    return sheet


def open_image(encoded: bytes) -> Image.Image:
    return Image.open(io.BytesIO(encoded))
