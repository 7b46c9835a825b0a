"""`vocdet predict`: run a pushed model on image files, draw and list its detections.

Takes a SavedModel folder or a serving base folder (`<serving_dir>/<model>`,
whose newest integer version is used). Any image PIL reads (JPEG, PNG incl.
grayscale and RGBA, ...) of any size is turned upright by its EXIF orientation
(as ingest does, and as viewers show it) and converted to RGB PNG bytes for the
serving signature, which returns boxes in the upright image's pixels. Per image:
`<stem>.png` with boxes, class names and scores drawn, and `<stem>.json` with
the detections at or above the min score: `--min-score`, else the model's
recommended one (its signature's `recommended_min_score`, tuned by the Trainer),
else, for a model from before it, `model.display_confidence_threshold`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import warnings

from PIL import Image, UnidentifiedImageError

from vocdet.components import features, visualization
from vocdet.components.settings import ModelConfig
from vocdet.components.atomic_pusher import push
from vocdet.components.voc_example_gen import convert, orientation


class PredictError(ValueError):
    """An input that cannot be predicted on; the message names it."""


@dataclasses.dataclass
class Detection:
    box: list[float]  # pixel xmin, ymin, xmax, ymax
    class_name: str
    score: float


def resolve_model_dir(path: str) -> str:
    """A SavedModel folder itself, or the newest version under a serving base folder.

    Never a push's hidden `.incoming-*` copy: a push in progress, or one a killed push left, maybe half written.
    """
    incoming = next((part for part in os.path.normpath(os.path.abspath(path)).split(os.sep)
                     if part.startswith(push.INCOMING_PREFIX)), None)
    if incoming:
        base = os.path.abspath(path).split(os.sep + incoming)[0]
        raise PredictError(
            f"{path}: {incoming} is a push in progress, or one a killed push left (maybe half written), not a served "
            f"version; give the serving folder {base} (its newest version is used) or one of its numbered versions"
        )
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = push.versions(path)
    if not versions:
        raise PredictError(f"{path}: neither a SavedModel nor a serving folder with integer versions")
    return os.path.join(path, str(versions[-1]))


READABLE_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def expand_inputs(inputs: list[str]) -> list[str]:
    """Image files from files, folders (their images, sorted) and glob patterns, in the order given.

    A folder or pattern that holds no image raises PredictError naming it; a plain path is kept
    as given, so that a missing file is reported with the others.
    """
    import glob

    paths: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, name) for name in os.listdir(item) if name.lower().endswith(READABLE_IMAGE_EXTENSIONS)
            )
        elif glob.has_magic(item):
            found = sorted(path for path in glob.glob(item, recursive=True) if os.path.isfile(path))
        else:
            found = [item]
        if not found:
            raise PredictError(f"{item}: no images (looked for {', '.join(READABLE_IMAGE_EXTENSIONS)})")
        paths.extend(found)
    return paths


def read_image(path: str, max_image_pixels: int) -> Image.Image:
    """8-bit RGB, upright (16-bit greyscale scaled, EXIF orientation applied, as ingest does).

    An image above the limit is refused from its header.
    """
    try:
        with warnings.catch_warnings():  # PIL's bomb warning: our own limit says it better
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                too_large = convert.image_pixels_error(*image.size, max_image_pixels)
                if too_large:
                    raise PredictError(f"{path}: {too_large.replace('data.max_image_pixels', '--max-image-pixels')}; skipped")
                image.load()
                return convert.to_rgb(orientation.upright(image))
    except FileNotFoundError:
        raise PredictError(f"{path}: no such file") from None
    except Image.DecompressionBombError as error:
        raise PredictError(f"{path}: above PIL's decompression-bomb limit ({error}); skipped") from None
    except (UnidentifiedImageError, OSError) as error:
        raise PredictError(f"{path}: cannot read image ({type(error).__name__})") from None


def detect(serving_fn, image: Image.Image, min_score: float) -> list[Detection]:
    import tensorflow as tf

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    outputs = serving_fn(images=tf.constant([buffer.getvalue()]))
    count = int(outputs["num_detections"][0])
    return [
        Detection([round(float(v), 2) for v in box], name.decode(), round(float(score), 4))
        for box, name, score in zip(
            outputs["detection_boxes"][0, :count].numpy(),
            outputs["detection_class_names"][0, :count].numpy(),
            outputs["detection_scores"][0, :count].numpy(),
        )
        if score >= min_score
    ]


def min_score(serving_fn, given: float | None) -> tuple[float, str]:
    """(the cut, where it came from): `given`, else the model's recommended min score, else the display default."""
    if given is not None:
        return given, "--min-score"
    if features.RECOMMENDED_MIN_SCORE in serving_fn.structured_outputs:
        import tensorflow as tf

        blank = io.BytesIO()
        Image.new("RGB", (8, 8)).save(blank, format="PNG")
        outputs = serving_fn(images=tf.constant([blank.getvalue()]))
        return float(outputs[features.RECOMMENDED_MIN_SCORE][0]), "the model's recommended min score"
    return ModelConfig.display_confidence_threshold, "model.display_confidence_threshold: the model has no recommended min score"


def write_outputs(image: Image.Image, detections: list[Detection], out_dir: str, stem: str) -> tuple[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    picture = os.path.join(out_dir, f"{stem}.png")
    listing = os.path.join(out_dir, f"{stem}.json")
    visualization.draw_boxes(image, predictions=[(d.box, d.class_name, d.score) for d in detections]).save(picture)
    with open(listing, "w") as handle:
        json.dump({"width": image.width, "height": image.height, "detections": [dataclasses.asdict(d) for d in detections]}, handle, indent=2)
    return picture, listing


def load_serving_fn(model_dir: str):
    """The SavedModel's `serving_default` signature (TensorFlow loads here, not for `vocdet --help`)."""
    import tensorflow as tf

    return tf.saved_model.load(model_dir).signatures["serving_default"]


def predict_file(serving_fn, path: str, out_dir: str, min_score: float, max_image_pixels: int) -> tuple[str, list[Detection]]:
    """(the picture written, the detections) for one image file; an image that cannot be read raises PredictError."""
    image = read_image(path, max_image_pixels)
    detections = detect(serving_fn, image, min_score)
    picture, _ = write_outputs(image, detections, out_dir, os.path.splitext(os.path.basename(path))[0])
    return picture, detections
