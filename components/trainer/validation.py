"""Validation during `fit`: losses and COCO metrics on held-out images, as Keras `val_*` logs.

The KerasCV sneak peek's headline is train-time COCO metrics; ultralytics validates every epoch.
Here, every `train.validation_freq` epochs (and after the last), the `Validation` callback runs the
network once over each held-out image (at most `train.validation_max_images`, the first ones) and
from that one pass computes

- `val_loss`, `val_box_loss`, `val_classification_loss`: the training losses (the model's own
  loss objects and target encoding, `compat.keras_cv.GloballyNormalisedLoss.loss_targets`) on
  the validation images at the evaluation resize;
- `val_AP`, `val_AP50`, `val_AP75`, `val_AR100`: COCO's numbers, by vocdet's own scoring code
  (`coco_evaluator.coco_metrics`, pycocotools' numbers), on the detections the model's decoder
  returns, mapped to each image's pixels exactly as the serving signature maps them
  (`serving.in_image_pixels`);
- `val_seconds`: what the evaluation took.

They go into the epoch's `logs`, so Keras' progress bar, History, TensorBoard and every callback
after this one (checkpoint, ReduceLROnPlateau, EarlyStopping) see them like any `val_*` metric.
The decoder is the model's own during training (`model.nms_iou_threshold`); the NMS IoU the
export tunes afterwards (`decoder_tuning`) can only raise the exported model's number.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import keras
import keras_cv
import numpy as np
import tensorflow as tf

from vocdet.components.coco_evaluator import coco_metrics
from vocdet.components.trainer import decoder_tuning, input_pipeline, serving

_logger = logging.getLogger(__name__)

PREFIX = "val_"
# COCO's numbers logged each validation (coco_metrics.METRIC_NAMES); every blessing metric is among them.
METRICS = ("AP", "AP50", "AP75", "AR100")
LOSSES = ("loss", "box_loss", "classification_loss")
SECONDS = PREFIX + "seconds"


def monitor(blessing_metric: str) -> str:
    """The `val_*` log of a blessing metric: "coco/AP50" -> "val_AP50" (higher is better)."""
    return PREFIX + blessing_metric.split("/", 1)[1]


@dataclasses.dataclass
class Batch:
    images: tf.Tensor  # [B, S, S, 3] at the evaluation resize
    shapes: tf.Tensor  # [B, 2] each image's own height, width
    targets: dict  # {"boxes": [B, max_boxes, 4] the model's format at S x S, "classes": [B, max_boxes]}


@dataclasses.dataclass
class ValidationSet:
    """Held-out images, batched for the network, and their COCO ground truth (image ids 1..N in order)."""

    batches: list[Batch]
    ground_truth: dict
    images: int
    objects: int

    @classmethod
    def from_images(cls, images: list[tuple], class_names: list[str], model_config, batch_size: int) -> "ValidationSet":
        """From `decoder_tuning.read_images`' (resized image, (height, width), pixel xyxy boxes, classes, difficult)."""
        ground_truth = decoder_tuning.coco_ground_truth(images, class_names)
        batches = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            targets = [_loss_target(boxes, classes, shape, model_config) for _, shape, boxes, classes, _ in chunk]
            batches.append(
                Batch(
                    images=tf.stack([image for image, *_ in chunk]),
                    shapes=tf.constant([shape for _, shape, *_ in chunk], tf.float32),
                    targets={key: tf.stack([target[key] for target in targets]) for key in ("boxes", "classes")},
                )
            )
        objects = sum(1 for annotation in ground_truth["annotations"] if not annotation["iscrowd"])
        return cls(batches, ground_truth, len(images), objects)


def load(files, tf_transform_output, settings, batch_size: int, slice_percent: int = 0) -> ValidationSet:
    """The first `train.validation_max_images` examples of `files`: held-out files, or their validation slice."""
    images = decoder_tuning.read_images(
        files, tf_transform_output, settings.model, max_images=settings.train.validation_max_images,
        slice_percent=slice_percent,
    )  # fmt: skip
    return ValidationSet.from_images(images, settings.class_names, settings.model, batch_size)


def _loss_target(boxes_xyxy, classes, shape, model_config) -> dict:
    """One image's boxes as training sees them after the evaluation resize: the model's format, dense."""
    height, width = shape
    size = model_config.image_size
    # The pad-to-aspect resize scales both sides by the same factor and pads at the bottom right.
    scale = min(size / height, size / width)
    boxes = keras_cv.bounding_box.convert_format(
        tf.constant(np.asarray(boxes_xyxy, np.float32).reshape(-1, 4) * scale),
        source="xyxy",
        target=model_config.bounding_box_format,
        image_shape=(size, size, 3),
    )
    return input_pipeline.dense_boxes(
        {"boxes": boxes, "classes": tf.constant(np.asarray(classes, np.float32))}, model_config.max_boxes
    )


class Evaluation:
    """One compiled pass of the network over a batch: the summed losses and the serving-mapped detections."""

    def __init__(self, model, model_config):
        self.model, self.model_config = model, model_config
        size, max_boxes = model_config.image_size, model_config.max_boxes
        # Any batch size, one trace (the last batch is smaller): the trace is most of the first validation's time.
        self._step = tf.function(
            self._batch,
            input_signature=[
                tf.TensorSpec([None, size, size, 3], tf.float32),
                tf.TensorSpec([None, 2], tf.float32),
                {"boxes": tf.TensorSpec([None, max_boxes, 4], tf.float32),
                 "classes": tf.TensorSpec([None, max_boxes], tf.float32)},
            ],
        )  # fmt: skip

    def _batch(self, images, shapes, targets):
        model = self.model
        predictions = model(images, training=False)
        y_true, weights = model.loss_targets(images, targets)
        box_loss = model.box_loss(y_true["box"], predictions["box"], weights["box"])
        classification_loss = model.classification_loss(
            y_true["classification"], predictions["classification"], weights["classification"]
        )
        decoded = model.decode_predictions(predictions, images)
        detections = serving.in_image_pixels(
            decoded, shapes, self.model_config.image_size, self.model_config.bounding_box_format
        )
        return box_loss, classification_loss, detections

    def __call__(self, validation_set: ValidationSet) -> tuple[dict[str, float], list[dict]]:
        """({loss, box_loss, classification_loss, AP, AP50, AP75, AR100}, the COCO detections scored)."""
        sums = {"box_loss": 0.0, "classification_loss": 0.0}
        detections, image_id = [], 0
        for batch in validation_set.batches:
            box_loss, classification_loss, found = self._step(batch.images, batch.shapes, batch.targets)
            count = int(batch.shapes.shape[0])
            # Keras' evaluate: the mean of the batches' losses, weighted by their sizes.
            sums["box_loss"] += float(box_loss) * count
            sums["classification_loss"] += float(classification_loss) * count
            detections += decoder_tuning.coco_detections(found, first_image_id=image_id + 1)
            image_id += count
        values = {name: total / max(validation_set.images, 1) for name, total in sums.items()}
        regularization = sum(float(loss) for loss in self.model.losses) if self.model.losses else 0.0
        values["loss"] = values["box_loss"] + values["classification_loss"] + regularization
        coco = coco_metrics.evaluate(validation_set.ground_truth, detections)
        values.update({name: coco[name] for name in METRICS})
        return values, detections


class Validation(keras.callbacks.Callback):
    """Adds `val_*` losses and COCO metrics to the logs every `frequency` epochs and after the last."""

    def __init__(self, validation_set: ValidationSet, model_config, frequency: int, epochs: int):
        super().__init__()
        self.validation_set, self.model_config = validation_set, model_config
        self.frequency, self.epochs = frequency, epochs
        self.last_detections: list[dict] = []
        self._evaluation = None

    def runs_after(self, epoch: int) -> bool:
        """Whether validation runs at the end of `epoch` (0-based)."""
        return (epoch + 1) % self.frequency == 0 or epoch + 1 == self.epochs

    def on_epoch_end(self, epoch, logs=None):
        if not self.runs_after(epoch):
            return
        started = time.perf_counter()
        if self._evaluation is None or self._evaluation.model is not self.model:
            self._evaluation = Evaluation(self.model, self.model_config)
        values, self.last_detections = self._evaluation(self.validation_set)
        seconds = time.perf_counter() - started
        if logs is not None:
            logs.update({PREFIX + name: value for name, value in values.items()})
            logs[SECONDS] = seconds
        _logger.info(
            "validation after epoch %d on %d images in %.1f s: val_loss %.4f, val mAP %.4f, mAP@0.5 %.4f, AR@100 %.4f",
            epoch + 1, self.validation_set.images, seconds, values["loss"], values["AP"], values["AP50"],
            values["AR100"],
        )  # fmt: skip
