"""Exports the trained RetinaNet as a SavedModel with two detection signatures.

- `serving_default` takes a batch of encoded images (JPEG or PNG, any size,
  `[batch]` string tensor named `images`) and applies the Transform graph;
- `serving_images` takes already-decoded RGB images (`[batch, height, width, 3]`
  float32, 0-255, one size per batch, named `images`): Transform passes images
  through unchanged, so it skips straight to the resize.

Both then apply the evaluation resize (`input_pipeline.eval_resizing`, the very
layer the eval input pipeline uses), the model and its
MultiClassNonMaxSuppression decoder, and return detections in each input
image's own pixel coordinates:

- `detection_boxes`  float32 [batch, max_detections, 4]: xmin, ymin, xmax, ymax
- `detection_scores` float32 [batch, max_detections]
- `detection_classes` int32 [batch, max_detections] (-1 for padding)
- `detection_class_names` string [batch, max_detections] ("" for padding)
- `num_detections` int32 [batch]
- `recommended_min_score` float32 [batch]: the score threshold the Trainer chose
  (`decoder_tuning`: F1-optimal on its tuning data), the same for every image, so
  that a TF Serving client, which cannot read the SavedModel's files, gets the
  cut with every answer.

The decoder's confidence threshold is the low evaluation one, so the
Evaluator sees the whole precision-recall curve; clients cut at
`recommended_min_score`. Its NMS IoU is the tuned one. The tuning record
(the sweep, the threshold, the data) is written beside the graph, in
`assets.extra/` (TF Serving's place for files it does not load).
Detections less than a pixel wide or high once clipped to the image (a
box that lies outside it, or a degenerate one) are dropped here, so no client,
gallery or `vocdet predict` ever sees them.
"""

from __future__ import annotations

import keras_cv
import tensorflow as tf

from vocdet.components import features
from vocdet.components.trainer import input_pipeline

# Detections thinner than this in the image's own pixels, once clipped to it, are dropped.
MIN_BOX_SIDE_PX = 1.0

SERVING_SIGNATURE = "serving_default"
DECODED_IMAGES_SIGNATURE = "serving_images"
INPUT_KEY = "images"


class DetectionModule(tf.Module):
    """Holds the Keras model and Transform layer so SavedModel tracks their variables."""

    def __init__(self, model, tf_transform_output, model_config, class_names: list[str], min_score: float):
        super().__init__(name="vocdet_detector")
        self._min_score = tf.constant(min_score, tf.float32)
        self.model = model
        self.tft_layer = tf_transform_output.transform_features_layer()
        self._raw_feature_spec = tf_transform_output.raw_feature_spec()
        self._size = model_config.image_size
        self._bounding_box_format = model_config.bounding_box_format
        self._class_names = tf.constant(list(class_names))
        self._resizing = input_pipeline.eval_resizing(model_config)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_KEY)])
    def serve(self, images):
        transformed = self.tft_layer(self._raw_features_without_annotations(images))
        encoded = tf.reshape(transformed[features.IMAGE], [-1])
        resized, shapes = tf.map_fn(
            self._decode_and_resize,
            encoded,
            fn_output_signature=(
                tf.TensorSpec([self._size, self._size, 3], tf.float32),
                tf.TensorSpec([2], tf.float32),
            ),
        )
        return self._detect(resized, shapes)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name=INPUT_KEY)])
    def serve_images(self, images):
        shape = tf.cast(tf.shape(images)[1:3], tf.float32)
        shapes = tf.tile(shape[tf.newaxis], [tf.shape(images)[0], 1])
        return self._detect(self._resizing(images), shapes)

    def _detect(self, resized, shapes):
        """Model + decoder on resized images; boxes mapped back to each image's `shapes` (height, width)."""
        predictions = self.model(resized, training=False)
        decoded = self.model.decode_predictions(predictions, resized)
        detections = in_image_pixels(decoded, shapes, self._size, self._bounding_box_format)
        valid = detections["detection_classes"] >= 0
        detections["detection_class_names"] = tf.where(
            valid, tf.gather(self._class_names, tf.maximum(detections["detection_classes"], 0)), ""
        )
        detections[features.RECOMMENDED_MIN_SCORE] = tf.fill(tf.shape(shapes)[:1], self._min_score)
        return detections

    def _raw_features_without_annotations(self, images):
        """A complete raw batch: the images, and every other raw feature empty.

        The Transform graph needs all its inputs; an image to detect on is an
        example with no objects yet.
        """
        batch_size = tf.shape(images, out_type=tf.int64)[0]
        raw = {}
        for key, spec in self._raw_feature_spec.items():
            if isinstance(spec, tf.io.VarLenFeature):
                raw[key] = tf.SparseTensor(
                    indices=tf.zeros([0, 2], tf.int64),
                    values=tf.zeros([0], spec.dtype),
                    dense_shape=tf.stack([batch_size, 0]),
                )
            elif key == features.IMAGE:
                raw[key] = tf.reshape(images, [-1] + list(spec.shape))
            else:
                raw[key] = tf.zeros(tf.concat([[batch_size], tf.constant(spec.shape, tf.int64)], 0), spec.dtype)
        return raw

    def _decode_and_resize(self, encoded):
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        return self._resizing(tf.cast(image, tf.float32)), shape


def in_image_pixels(decoded: dict, shapes, size: int, bounding_box_format: str) -> dict:
    """The decoder's detections on `size` x `size` resized inputs, in each image's own pixels (`shapes`: height, width).

    Undoes the pad-to-aspect resize (the image sits at the top left, scaled), clips to the image
    and drops degenerate boxes (`drop_degenerate_detections`). The decoder sweep uses it too, so
    the detections it scores are the ones the serving signature returns.
    """
    boxes = keras_cv.bounding_box.convert_format(
        decoded["boxes"], source=bounding_box_format, target="xyxy", image_shape=(size, size, 3)
    )
    heights, widths = shapes[:, 0], shapes[:, 1]
    scale = tf.minimum(size / heights, size / widths)
    boxes = boxes / scale[:, None, None]
    limits = tf.stack([widths, heights, widths, heights], axis=-1)[:, None, :]
    boxes = tf.clip_by_value(boxes, 0.0, limits)
    return drop_degenerate_detections(boxes, tf.cast(decoded["confidence"], tf.float32), tf.cast(decoded["classes"], tf.int32))


def drop_degenerate_detections(boxes, scores, classes) -> dict:
    """Padding and boxes thinner than MIN_BOX_SIDE_PX removed; kept detections first, in score order.

    `boxes` are pixel xyxy [batch, n, 4], clipped to the image; padding has class -1.
    """
    sides = tf.minimum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1])
    valid = (classes >= 0) & (sides >= MIN_BOX_SIDE_PX)
    order = tf.argsort(tf.cast(valid, tf.int32), axis=1, direction="DESCENDING", stable=True)
    boxes, scores, classes, valid = (tf.gather(t, order, batch_dims=1) for t in (boxes, scores, classes, valid))
    return {
        "detection_boxes": tf.where(valid[..., None], boxes, 0.0),
        "detection_scores": tf.where(valid, scores, 0.0),
        "detection_classes": tf.where(valid, classes, -1),
        "num_detections": tf.reduce_sum(tf.cast(valid, tf.int32), axis=1),
    }


def export_serving_model(
    model, tf_transform_output, model_config, class_names: list[str], export_dir: str, min_score: float
) -> None:
    """Writes the SavedModel with the two signatures described above; `model` carries its (tuned) decoder."""
    module = DetectionModule(model, tf_transform_output, model_config, class_names, min_score)
    signatures = {SERVING_SIGNATURE: module.serve, DECODED_IMAGES_SIGNATURE: module.serve_images}
    tf.saved_model.save(module, export_dir, signatures=signatures)
