"""Tunes what the serving model carries, before its export: the decoder's NMS IoU and the score to cut at.

The KerasCV guide leaves it to the reader ("grid search `confidence_threshold` and `iou_threshold`
on `NmsPredictionDecoder`"); CocoEvaluator runs after the export and cannot change the Model
artefact, so the Trainer does it, on its eval files, which the pipeline makes the tuning splits
(`data.tuning_split`; by default the training splits, never the split that scores the model):

1. the network runs once over the tuning images (at most `model.tuning_max_images`); a
   pass-through decoder (`_AllAnchors`, set through KerasCV's public `prediction_decoder`) makes
   `RetinaNet.decode_predictions` return every anchor's box and class logits, and only anchors
   the decoder's confidence threshold can keep are kept (exact: that filter does not depend on the IoU);
2. for each IoU of `model.nms_iou_grid`, KerasCV's MultiClassNonMaxSuppression decodes those
   candidates, the detections are mapped to image pixels as the serving signature maps them
   (`serving.in_image_pixels`), and scored by the blessing metric (COCO, faster-coco-eval);
3. the best IoU wins (ties: the one nearest `model.nms_iou_threshold`), and its detections give
   the F1-optimal score threshold at IoU 0.5 (`coco_evaluator.operating_point`).

The model leaves with the chosen decoder; the threshold becomes the serving signatures'
`recommended_min_score`; the record (`features.TUNING_FILE`) goes into the SavedModel's `assets.extra/`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time

import keras
import keras_cv
import numpy as np
import tensorflow as tf

from vocdet.components import features
from vocdet.components.coco_evaluator import coco_metrics, matching, operating_point
from vocdet.components.trainer import input_pipeline, serving
from vocdet.components.trainer.retinanet import detector

_logger = logging.getLogger(__name__)

@dataclasses.dataclass
class Tuning:
    """What was chosen, on which data, and the sweep it was chosen from."""

    nms_iou_threshold: float
    metric: str
    sweep: list[dict]
    min_score: float
    precision: float
    recall: float
    f1: float
    splits: list[str]
    images: int
    objects: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class _AllAnchors(keras.layers.Layer):
    """A prediction decoder that decodes nothing: every anchor's box (the model's format) and class logits."""

    def __init__(self, bounding_box_format: str, **kwargs):
        super().__init__(**kwargs)
        self.bounding_box_format = bounding_box_format

    def call(self, box_prediction, class_prediction, images=None, image_shape=None):
        return {"boxes": box_prediction, "logits": class_prediction}


@dataclasses.dataclass
class Candidates:
    boxes: tf.Tensor  # [B, K, 4] the model's format, at the model's input size
    logits: tf.Tensor  # [B, K, C] (padding: very negative)
    shapes: tf.Tensor  # [B, 2] each image's height, width


def tune(model, files, tf_transform_output, settings, batch_size: int) -> Tuning | None:
    """Chooses and sets `model.prediction_decoder`; returns the record (None without tuning data or a grid)."""
    model_config = settings.model
    if not model_config.nms_iou_grid or not files:
        return None
    started = time.time()
    images = read_images(files, tf_transform_output, model_config)
    if not images:
        _logger.warning("no tuning images in %s: the decoder keeps model.nms_iou_threshold", files)
        return None
    ground_truth = coco_ground_truth(images, settings.class_names)
    candidates = _candidates(model, images, model_config, batch_size)
    sweep, detections_by_iou = sweep_decoder(candidates, ground_truth, model_config, settings.tuning_metric)
    chosen = best_iou(sweep, settings.tuning_metric, model_config.nms_iou_threshold)
    model.prediction_decoder = detector.build_prediction_decoder(dataclasses.replace(model_config, nms_iou_threshold=chosen))

    matches = matching.match(ground_truth, detections_by_iou[chosen], len(settings.class_names))
    cut = operating_point.best_cut(
        matches.score, matches.true_positive, matches.false_positive, int(matches.positives().sum())
    )
    if cut.f1 == 0.0:
        cut = dataclasses.replace(cut, threshold=model_config.display_confidence_threshold)
    tuning = Tuning(
        nms_iou_threshold=chosen,
        metric=settings.tuning_metric,
        sweep=sweep,
        min_score=operating_point.rounded_down(cut.threshold),
        precision=round(cut.precision, 6),
        recall=round(cut.recall, 6),
        f1=round(cut.f1, 6),
        splits=list(settings.tuning_splits),
        images=len(images),
        objects=int(matches.positives().sum()),
    )
    _logger.info(
        "decoder tuned on %d images of %s in %.0f s: NMS IoU %.2f (%s by IoU: %s), recommended min score %.3f "
        "(P %.2f, R %.2f)",
        tuning.images, "+".join(tuning.splits) or "?", time.time() - started, chosen, settings.tuning_metric,
        ", ".join(f"{row['nms_iou_threshold']:.2f}: {row[settings.tuning_metric]:.4f}" for row in sweep),
        tuning.min_score, tuning.precision, tuning.recall,
    )  # fmt: skip
    return tuning


def sweep_decoder(candidates: list[Candidates], ground_truth: dict, model_config, metric: str) -> tuple[list[dict], dict]:
    """([{nms_iou_threshold, metric}] for each IoU of the grid, {IoU: COCO results}): one decode per setting."""
    key = metric.split("/", 1)[1]
    rows, detections_by_iou = [], {}
    for iou in model_config.nms_iou_grid:
        detections = _decode(candidates, dataclasses.replace(model_config, nms_iou_threshold=iou))
        detections_by_iou[iou] = detections
        rows.append({"nms_iou_threshold": iou, metric: coco_metrics.evaluate(ground_truth, detections)[key]})
    return rows, detections_by_iou


def best_iou(sweep: list[dict], metric: str, default_iou: float) -> float:
    """The IoU with the best metric; among equals, the one nearest `default_iou` (model.nms_iou_threshold)."""
    return max(sweep, key=lambda row: (row[metric], -abs(row["nms_iou_threshold"] - default_iou)))["nms_iou_threshold"]


def coco_ground_truth(images: list[tuple], class_names: list[str]) -> dict:
    """COCO ground truth of `read_images`' images, with ids 1..N in their order (difficult objects: iscrowd)."""
    objects = [
        (index + 1, class_id, box, bool(difficult))
        for index, (_, _, boxes, classes, difficults) in enumerate(images)
        for box, class_id, difficult in zip(boxes, classes, difficults)
    ]
    return coco_metrics.coco_ground_truth(
        [{"id": index + 1, "height": int(h), "width": int(w)} for index, (_, (h, w), _, _, _) in enumerate(images)],
        [coco_metrics.annotation(image_id, number + 1, c, box, d) for number, (image_id, c, box, d) in enumerate(objects)],
        class_names,
    )


def write_record(tuning: Tuning, export_dir: str) -> str:
    """The record in the SavedModel's `assets.extra/`, which every pushed version carries."""
    directory = os.path.join(export_dir, features.ASSETS_EXTRA_DIR)
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, features.TUNING_FILE)
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(json.dumps(tuning.to_dict(), indent=1, sort_keys=True))
    return path


def read_images(files, tf_transform_output, model_config, max_images: int | None = None, slice_percent: int = 0) -> list[tuple]:
    """(resized image, (height, width), boxes pixel xyxy, classes, difficult) of the first examples.

    At most `max_images` (default: `model.tuning_max_images`); with `slice_percent`, of the
    validation slice only (`input_pipeline.in_validation_slice`).
    """
    spec = {
        key: value
        for key, value in tf_transform_output.transformed_feature_spec().items()
        if key in (features.IMAGE, features.BOXES, features.CLASSES, features.DIFFICULT, features.IMAGE_HEIGHT, features.IMAGE_WIDTH)
    }
    paths = sorted(path for pattern in ([files] if isinstance(files, str) else files) for path in tf.io.gfile.glob(pattern))
    resize = input_pipeline.eval_resizing(model_config)
    images = []
    records = tf.data.TFRecordDataset(paths, compression_type="GZIP")
    if slice_percent:
        records = records.filter(lambda record: input_pipeline.in_validation_slice(record, slice_percent))
    for record in records.take(max_images or model_config.tuning_max_images):
        parsed = tf.io.parse_single_example(record, spec)
        height, width = int(parsed[features.IMAGE_HEIGHT]), int(parsed[features.IMAGE_WIDTH])
        image = tf.cast(tf.io.decode_jpeg(parsed[features.IMAGE], channels=3), tf.float32)
        boxes = tf.reshape(tf.sparse.to_dense(parsed[features.BOXES]), [-1, 4])
        xyxy = keras_cv.bounding_box.convert_format(
            boxes, source=model_config.bounding_box_format, target="xyxy", image_shape=(height, width, 3)
        )
        difficult = tf.sparse.to_dense(parsed[features.DIFFICULT]).numpy() if features.DIFFICULT in spec else None
        classes = tf.sparse.to_dense(parsed[features.CLASSES]).numpy()
        images.append((resize(image[tf.newaxis])[0], (height, width), xyxy.numpy(), classes,
                       difficult if difficult is not None and len(difficult) == len(classes) else np.zeros(len(classes))))
    return images


def _candidates(model, images, model_config, batch_size: int) -> list[Candidates]:
    """The network once over the images: per batch, the anchors the decoder's confidence threshold can keep."""
    decoder = model.prediction_decoder
    model.prediction_decoder = _AllAnchors(model_config.bounding_box_format)
    floor = math.log(model_config.eval_confidence_threshold / (1 - model_config.eval_confidence_threshold)) \
        if 0 < model_config.eval_confidence_threshold < 1 else -math.inf  # fmt: skip
    batches = []
    try:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            resized = tf.stack([image for image, *_ in batch])
            decoded = model.decode_predictions(model(resized, training=False), resized)
            boxes, logits = decoded["boxes"].numpy(), decoded["logits"].numpy()
            keep = [np.flatnonzero(row.max(axis=-1) >= floor) for row in logits]
            width = max(1, max(len(k) for k in keep))
            padded_boxes = np.zeros((len(batch), width, 4), np.float32)
            padded_logits = np.full((len(batch), width, logits.shape[-1]), -1e4, np.float32)
            for row, kept in enumerate(keep):
                padded_boxes[row, : len(kept)] = boxes[row, kept]
                padded_logits[row, : len(kept)] = logits[row, kept]
            shapes = tf.constant([shape for _, shape, *_ in batch], tf.float32)
            batches.append(Candidates(tf.constant(padded_boxes), tf.constant(padded_logits), shapes))
    finally:
        model.prediction_decoder = decoder
    return batches


def _decode(candidates: list[Candidates], model_config) -> list[dict]:
    """COCO results of KerasCV's decoder at `model_config`'s NMS IoU, in image pixels as the serving signature returns them."""
    decoder = detector.build_prediction_decoder(model_config)
    size = model_config.image_size
    results, image_id = [], 0
    for batch in candidates:
        decoded = decoder(batch.boxes, batch.logits, image_shape=(size, size, 3))
        detections = serving.in_image_pixels(decoded, batch.shapes, size, model_config.bounding_box_format)
        results += coco_detections(detections, first_image_id=image_id + 1)
        image_id += int(batch.shapes.shape[0])
    return results


def coco_detections(detections: dict, first_image_id: int) -> list[dict]:
    """COCO results of a batch of serving-mapped detections (`serving.in_image_pixels`), its images numbered from
    `first_image_id` in order."""
    results = []
    for row in range(int(detections["num_detections"].shape[0])):
        count = int(detections["num_detections"][row])
        results += coco_metrics.detections_for_image(
            first_image_id + row,
            detections["detection_boxes"][row, :count].numpy(),
            detections["detection_classes"][row, :count].numpy(),
            detections["detection_scores"][row, :count].numpy(),
        )
    return results
