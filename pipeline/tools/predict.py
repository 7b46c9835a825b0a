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

Inputs are someone's files: only regular files are read (`safe_files`: a FIFO would block, a device
never ends), up to a size that `--max-image-pixels` sets; anything else is one "skipped" line and
the other images are still predicted. Folders and patterns are expanded without walking a link loop
(`dir/**/*.jpg` over `loop -> .`) and list each file once; two images with the same name get
distinct outputs.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import io
import json
import os
import warnings

from PIL import Image, UnidentifiedImageError

from vocdet.components import features, safe_files, visualization
from vocdet.components.settings import ModelConfig
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
    from vocdet.components.atomic_pusher import push  # imports TensorFlow: not for inputs refused before a model loads
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

# An image file is read only up to ingest's byte limit for the same pixel limit (`convert.image_bytes_limit`):
# checked from its size, before reading, so a sparse 100 GB "photo" or a device is never read.
PIXEL_FLAG = "--max-image-pixels"


def expand_inputs(inputs: list[str]) -> list[str]:
    """Image files from files, folders (their images, sorted) and glob patterns, in the order given, each once.

    Patterns are expanded as `glob.glob(recursive=True)` does, but `**` enters each real folder once (a
    link back to a folder above, `loop -> .`, is not walked again), so expansion ends; and a file reached
    twice, by two links, two patterns or a pattern and a name, is listed once, under the first name it
    was given by. Entries that are not folders are listed whatever they are (FIFOs, devices, dangling
    links), so that `read_image` reports each instead of dropping it. A folder or pattern that holds no
    image raises PredictError naming it; a plain path is kept as given, so that a missing file is
    reported with the others.
    """
    paths: list[str] = []
    seen: set[str] = set()
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, entry.name)
                for entry in _entries(item)
                if entry.name.lower().endswith(READABLE_IMAGE_EXTENSIONS) and not _is_dir(entry)
            )
        elif glob.has_magic(item):
            found = sorted(path for path in _glob(item) if not os.path.isdir(path))
        else:
            found = [item]
        if not found:
            raise PredictError(f"{item}: no images (looked for {', '.join(READABLE_IMAGE_EXTENSIONS)})")
        for path in found:
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                paths.append(path)
    return paths


def _entries(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder or os.curdir) as entries:
            return list(entries)
    except OSError:  # unreadable, or not a folder: no matches there, as glob
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links
    except OSError:
        return False


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _glob(pattern: str):
    """`glob.glob(pattern, recursive=True)`'s matches, lazily, with `**` entering each real folder once."""
    root = os.sep if pattern.startswith(os.sep) else ""
    matches = _match(root, [part for part in pattern.split(os.sep) if part])
    yield from (path for path in matches if os.path.isdir(path)) if pattern.endswith(os.sep) else matches


def _match(base: str, parts: list[str]):
    if not parts:
        yield base
        return
    head, rest = parts[0], parts[1:]
    if head == "**":
        for folder in _walk(base):
            if rest:
                yield from _match(folder, rest)
            else:  # `**` last matches every file and folder below, as glob's
                if folder != base:
                    yield folder
                for entry in _entries(folder):
                    if not _hidden(entry.name) and not _is_dir(entry):
                        yield os.path.join(folder, entry.name)
    elif glob.has_magic(head):
        for entry in _entries(base):
            if (_hidden(entry.name) and not _hidden(head)) or not fnmatch.fnmatch(entry.name, head):
                continue
            if not rest:
                yield os.path.join(base, entry.name)
            elif _is_dir(entry):
                yield from _match(os.path.join(base, entry.name), rest)
    else:
        path = os.path.join(base, head)
        if rest:
            if os.path.isdir(path):
                yield from _match(path, rest)
        elif os.path.lexists(path):
            yield path


def _walk(top: str):
    """`top` and every folder below it, links followed, each real folder once; hidden ones left out, as glob's `**`.

    Folders reached without a link are walked first, so that a folder also reached by a link is
    named by its own path.
    """
    visited: set[tuple[int, int]] = set()
    direct, linked = [top], []
    while direct or linked:
        folder = direct.pop() if direct else linked.pop()
        try:
            status = os.stat(folder or os.curdir)
        except OSError:
            continue
        if (status.st_dev, status.st_ino) in visited:
            continue
        visited.add((status.st_dev, status.st_ino))
        yield folder
        for entry in sorted(_entries(folder), key=lambda entry: entry.name, reverse=True):
            if not _hidden(entry.name) and _is_dir(entry):
                (linked if entry.is_symlink() else direct).append(os.path.join(folder, entry.name))


def check_input(path: str, max_image_pixels: int) -> None:
    """PredictError (`...; skipped`) unless `path` is a regular file small enough to read, without opening it."""
    try:
        safe_files.check_file(path, convert.image_bytes_limit(max_image_pixels), convert.image_bytes_setting(PIXEL_FLAG))
    except safe_files.UnsafeFileError as error:
        raise PredictError(f"{error}; skipped") from None


def readable_inputs(paths: list[str], max_image_pixels: int) -> tuple[list[str], list[str]]:
    """(the paths `check_input` accepts, a line for each it refuses): from their status, opening nothing."""
    readable, refused = [], []
    for path in paths:
        try:
            check_input(path, max_image_pixels)
            readable.append(path)
        except PredictError as error:
            refused.append(str(error))
    return readable, refused


def read_image(path: str, max_image_pixels: int) -> Image.Image:
    """8-bit RGB, upright (16-bit greyscale scaled, EXIF orientation applied, as ingest does).

    Only a regular file is read (never blocking on a FIFO or reading a device), and only up to
    `convert.image_bytes_limit`; an image above the pixel limit is refused from its header.
    """
    try:
        content = safe_files.read_bytes(path, convert.image_bytes_limit(max_image_pixels), convert.image_bytes_setting(PIXEL_FLAG))
    except safe_files.UnsafeFileError as error:
        raise PredictError(f"{error}; skipped") from None
    try:
        with warnings.catch_warnings():  # PIL's bomb warning: our own limit says it better
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as image:
                too_large = convert.image_pixels_error(*image.size, max_image_pixels)
                if too_large:
                    raise PredictError(f"{path}: {too_large.replace('data.max_image_pixels', '--max-image-pixels')}; skipped")
                image.load()
                return convert.to_rgb(orientation.upright(image))
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


def output_stems(paths: list[str]) -> dict[str, str]:
    """The name each input's outputs get: its own stem, or `<stem>-2`, `-3`, ... for a later one with the
    same stem (`a/x.jpg` and `b/x.jpg`, or `x.jpg` and `x.png`), so that no picture overwrites another.
    Compared case-blind, as on a case-insensitive disk."""
    stems, taken = {}, set()
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        candidate, number = stem, 1
        while candidate.casefold() in taken:
            number += 1
            candidate = f"{stem}-{number}"
        taken.add(candidate.casefold())
        stems[path] = candidate
    return stems


def predict_file(
    serving_fn, path: str, out_dir: str, min_score: float, max_image_pixels: int, stem: str | None = None
) -> tuple[str, list[Detection]]:
    """(the picture written, the detections) for one image file; an image that cannot be read raises PredictError.

    The outputs are `<stem>.png` and `<stem>.json`, by default the image's own stem (see `output_stems`).
    """
    image = read_image(path, max_image_pixels)
    detections = detect(serving_fn, image, min_score)
    picture, _ = write_outputs(image, detections, out_dir, stem or os.path.splitext(os.path.basename(path))[0])
    return picture, detections
