"""Runs a serving model over raw eval examples and scores it with COCO metrics.

What is scored is exactly what gets pushed: the exported SavedModel's
`serving_default` signature, fed the examples' encoded images in batches.
Ground truth comes from the raw (tfds-layout) examples, relative boxes scaled
by each image's real size.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from vocdet.components import features
from vocdet.components.coco_evaluator import coco_metrics, deployment, report, scoring

_logger = logging.getLogger(__name__)

_RAW_SPEC = {
    features.IMAGE: tf.io.FixedLenFeature([], tf.string),
    features.FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
    features.BBOX: tf.io.VarLenFeature(tf.float32),
    features.LABEL: tf.io.VarLenFeature(tf.int64),
    features.IS_DIFFICULT: tf.io.VarLenFeature(tf.int64),
}


@dataclasses.dataclass
class EvalImage:
    image_id: int
    filename: str
    encoded: bytes
    height: int
    width: int
    boxes_xyxy: np.ndarray  # [n, 4] pixels
    classes: np.ndarray  # [n]
    difficult: np.ndarray  # [n]


def load_eval_images(file_pattern: str) -> list[EvalImage]:
    """Reads raw examples (gzipped TFRecords, tfds VOC layout)."""
    files = sorted(tf.io.gfile.glob(file_pattern))
    images = []
    for index, serialized in enumerate(tf.data.TFRecordDataset(files, compression_type="GZIP")):
        parsed = tf.io.parse_single_example(serialized, _RAW_SPEC)
        encoded = parsed[features.IMAGE].numpy()
        height, width = (int(value) for value in tf.image.extract_jpeg_shape(encoded)[:2])
        relative = tf.sparse.to_dense(parsed[features.BBOX]).numpy().reshape(-1, 4)  # ymin xmin ymax xmax
        boxes = np.stack(
            [relative[:, 1] * width, relative[:, 0] * height, relative[:, 3] * width, relative[:, 2] * height], axis=-1
        )
        images.append(
            EvalImage(
                image_id=index + 1,
                filename=parsed[features.FILENAME].numpy().decode(),
                encoded=encoded,
                height=height,
                width=width,
                boxes_xyxy=boxes,
                classes=tf.sparse.to_dense(parsed[features.LABEL]).numpy(),
                difficult=tf.sparse.to_dense(parsed[features.IS_DIFFICULT]).numpy(),
            )
        )
    return images


def ground_truth(images: list[EvalImage], class_names: list[str]) -> dict:
    coco_images, annotations = [], []
    for image in images:
        coco_images.append({"id": image.image_id, "file_name": image.filename, "height": image.height, "width": image.width})
        for box, class_id, difficult in zip(image.boxes_xyxy, image.classes, image.difficult):
            annotations.append(
                coco_metrics.annotation(image.image_id, len(annotations) + 1, class_id, box, bool(difficult))
            )
    return coco_metrics.coco_ground_truth(coco_images, annotations, class_names)


@dataclasses.dataclass
class ImageDetections:
    """The serving signature's valid detections for one image, pixel xyxy."""

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


def detect(saved_model_dir: str, images: list[EvalImage], batch_size: int) -> tuple[list[ImageDetections], float | None]:
    """Runs the serving signature over the images, batch by batch; also returns the model's recommended min score.

    The threshold is the signature's own output (None for a model exported before it had one).
    A person at a terminal sees one progress bar; logs get one line when it is done.
    """
    serving_fn = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    min_score = None
    results = []
    started = time.time()
    progress = tqdm(total=len(images), unit="image", desc="evaluating", disable=not sys.stderr.isatty())
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        outputs = serving_fn(images=tf.constant([image.encoded for image in batch]))
        if features.RECOMMENDED_MIN_SCORE in outputs:
            min_score = float(outputs[features.RECOMMENDED_MIN_SCORE][0])
        for row in range(len(batch)):
            count = int(outputs["num_detections"][row])
            results.append(
                ImageDetections(
                    boxes=outputs["detection_boxes"][row, :count].numpy(),
                    classes=outputs["detection_classes"][row, :count].numpy(),
                    scores=outputs["detection_scores"][row, :count].numpy(),
                )
            )
        progress.update(len(batch))
    progress.close()
    _logger.info("evaluated %d images in %.0f s", len(images), time.time() - started)
    return results, min_score


def coco_results(images: list[EvalImage], detections: list[ImageDetections]) -> list[dict]:
    entries = []
    for image, found in zip(images, detections):
        entries.extend(coco_metrics.detections_for_image(image.image_id, found.boxes, found.classes, found.scores))
    return entries


@dataclasses.dataclass
class ModelEvaluation:
    """One serving model on the eval images: its scores, curves, detections, and how to deploy it."""

    scores: dict
    curves: dict
    detections: list[ImageDetections]
    min_score: float | None  # the model's recommended min score (None: a model from before it)
    analysis: dict | None = None  # deployment.analyse's, when asked for


def evaluate_saved_model(
    saved_model_dir: str, images: list[EvalImage], class_names: list[str], batch_size: int, analyse: bool = False
) -> ModelEvaluation:
    """Scores one serving model; with `analyse`, also its operating point, confusions and errors."""
    detections, min_score = detect(saved_model_dir, images, batch_size)
    truth, results = ground_truth(images, class_names), coco_results(images, detections)
    scores, curves = scoring.score(truth, results, class_names)
    analysis = deployment.analyse(truth, results, class_names, min_score) if analyse else None
    return ModelEvaluation(scores, curves, detections, min_score, analysis)


def gallery(
    images: list[EvalImage], detections: list[ImageDetections], class_names: list[str], min_score: float, count: int = 6
) -> list[report.GalleryImage]:
    """The first `count` eval images with their ground truth and confident predictions."""
    return [
        report.GalleryImage(
            encoded=image.encoded,
            truth=[(list(box), class_names[int(c)]) for box, c in zip(image.boxes_xyxy, image.classes)],
            predictions=[
                (list(box), class_names[int(c)], float(score))
                for box, c, score in zip(found.boxes, found.classes, found.scores)
                if score >= min_score and c >= 0
            ],
        )
        for image, found in list(zip(images, detections))[:count]
    ]
