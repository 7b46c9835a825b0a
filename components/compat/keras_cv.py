"""vocdet's workarounds of KerasCV internals, each behind a check of the KerasCV release it was tested on.

KerasCV is no longer developed (its RetinaNet moved to KerasHub, `keras_hub/src/models/retinanet/`),
so these are written against KerasCV 0.9.0, the release in requirements.lock, and cite the file of
that release they override or copy:

- `NarrowFeaturePyramid`, `NarrowPredictionHead`: KerasCV's RetinaNet pyramid and heads with
  another width, replacing their 256-filter conv layers (`NARROW_LAYERS_TESTED`);
- `GloballyNormalisedLoss`: KerasCV's `RetinaNet.compute_loss`, copied, normalised by the global
  batch's positive anchors (`LOSS_TESTED`);
- `LowQualityMatchingLabelEncoder`: the label encoder with its `box_matcher` replaced
  (`LABEL_ENCODER_TESTED`);
- `TargetScaledJitteredResize`, `LeanRandomFlip`: augmentation layers whose overrides read the
  private `_get_image_shape` and `_random_generator`, or override the private `_flip_images`
  (`JITTERED_RESIZE_TESTED`, `RANDOM_FLIP_TESTED`).

Each class checks the installed KerasCV when it is constructed (`compat.UntestedVersion` on
another release), never at import.
"""

from __future__ import annotations

import keras
import keras_cv
import tensorflow as tf
from keras import ops

from vocdet.components import compat
from vocdet.components.compat import keras as keras_compat

# The KerasCV releases each workaround was tested on (prefixes: "0.9." is 0.9.x).
NARROW_LAYERS_TESTED = ("0.9.",)
LOSS_TESTED = ("0.9.",)
LABEL_ENCODER_TESTED = ("0.9.",)
JITTERED_RESIZE_TESTED = ("0.9.",)
RANDOM_FLIP_TESTED = ("0.9.",)

_RETINANET_SOURCE = "keras_cv 0.9.0 keras_cv/src/models/object_detection/retinanet/"
_PREPROCESSING_SOURCE = "keras_cv 0.9.0 keras_cv/src/layers/preprocessing/"
# What a user can do meanwhile where no setting avoids the workaround.
_PIN = "install keras-cv==0.9.0 (requirements.lock)"


def check_narrow_layers(version: str | None = None) -> None:
    """`NarrowFeaturePyramid` and `NarrowPredictionHead` replace the conv layers KerasCV 0.9's build."""
    compat.check_tested(
        "KerasCV",
        version,
        NARROW_LAYERS_TESTED,
        workaround="narrowing of the feature pyramid and heads (compat.keras_cv.NarrowFeaturePyramid, NarrowPredictionHead)",
        issue=f"{_RETINANET_SOURCE}feature_pyramid.py and prediction_head.py, 256 filters fixed",
        test="tests/test_trainer_export.py",
        constant="compat.keras_cv.NARROW_LAYERS_TESTED",
        alternative=_PIN,
    )


def check_loss(version: str | None = None) -> None:
    """`GloballyNormalisedLoss` is a copy of KerasCV 0.9's `RetinaNet.compute_loss`."""
    compat.check_tested(
        "KerasCV",
        version,
        LOSS_TESTED,
        workaround="globally normalised RetinaNet loss (compat.keras_cv.GloballyNormalisedLoss)",
        issue=f"{_RETINANET_SOURCE}retinanet.py RetinaNet.compute_loss; normalisation unfixed upstream, keras-team/keras-cv#1744",
        test="tests/test_trainer_distribution.py",
        constant="compat.keras_cv.LOSS_TESTED",
        alternative=_PIN,
    )


def check_label_encoder(version: str | None = None) -> None:
    """`LowQualityMatchingLabelEncoder` replaces the `box_matcher` of KerasCV 0.9's label encoder."""
    compat.check_tested(
        "KerasCV",
        version,
        LABEL_ENCODER_TESTED,
        workaround="low-quality-matching label encoder (compat.keras_cv.LowQualityMatchingLabelEncoder)",
        issue=f"{_RETINANET_SOURCE}retinanet_label_encoder.py box_matcher",
        test="tests/test_trainer_export.py",
        constant="compat.keras_cv.LABEL_ENCODER_TESTED",
        alternative="set model.allow_low_quality_matches: false",
    )


def check_jittered_resize(version: str | None = None) -> None:
    """`TargetScaledJitteredResize` reads KerasCV 0.9 JitteredResize's private members."""
    compat.check_tested(
        "KerasCV",
        version,
        JITTERED_RESIZE_TESTED,
        workaround="target-scaled JitteredResize (compat.keras_cv.TargetScaledJitteredResize)",
        issue=f"{_PREPROCESSING_SOURCE}jittered_resize.py _get_image_shape, _random_generator",
        test="tests/test_input_pipeline.py",
        constant="compat.keras_cv.JITTERED_RESIZE_TESTED",
        alternative=_PIN,
    )


def check_random_flip(version: str | None = None) -> None:
    """`LeanRandomFlip` overrides KerasCV 0.9 RandomFlip's private `_flip_images`."""
    compat.check_tested(
        "KerasCV",
        version,
        RANDOM_FLIP_TESTED,
        workaround="lean RandomFlip (compat.keras_cv.LeanRandomFlip)",
        issue=f"{_PREPROCESSING_SOURCE}random_flip.py _flip_images, vectorised in keras-team/keras-cv#1696",
        test="tests/test_input_pipeline.py",
        constant="compat.keras_cv.RANDOM_FLIP_TESTED",
        alternative=_PIN,
    )


@keras.saving.register_keras_serializable(package="vocdet")
class NarrowFeaturePyramid(keras_cv.models.retinanet.FeaturePyramid):
    """KerasCV RetinaNet's feature pyramid (P3-P7), `filters` channels wide instead of 256.

    The pyramid and the heads run at every position of P3 (stride 8): on a CPU
    most of a small RetinaNet's time goes there, not into the backbone. KerasCV 0.9
    fixes the width at 256 (feature_pyramid.py); this replaces its conv layers.
    """

    def __init__(self, filters: int = 256, **kwargs):
        check_narrow_layers()
        super().__init__(**kwargs)
        self.filters = filters
        for name in ("c3_1x1", "c4_1x1", "c5_1x1", "c3_3x3", "c4_3x3", "c5_3x3", "c6_3x3", "c7_3x3"):
            old = getattr(self, f"conv_{name}")
            setattr(self, f"conv_{name}", keras.layers.Conv2D(filters, old.kernel_size, old.strides, "same"))

    def build(self, input_shape):
        for level in (3, 4, 5):
            getattr(self, f"conv_c{level}_1x1").build((None, None, None, input_shape[f"P{level}"][-1]))
            getattr(self, f"conv_c{level}_3x3").build((None, None, None, self.filters))
        self.conv_c6_3x3.build((None, None, None, input_shape["P5"][-1]))
        self.conv_c7_3x3.build((None, None, None, self.filters))
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(tuple(super_shape[:-1]) + (self.filters,) for super_shape in super().compute_output_shape(input_shape))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable(package="vocdet")
class NarrowPredictionHead(keras_cv.models.retinanet.PredictionHead):
    """KerasCV RetinaNet's prediction head with `filters`-wide conv layers instead of 256 (prediction_head.py)."""

    def __init__(self, output_filters, bias_initializer, num_conv_layers=3, filters: int = 256, **kwargs):
        check_narrow_layers()
        super().__init__(output_filters, bias_initializer, num_conv_layers, **kwargs)
        self.filters = filters
        self.conv_layers = [
            keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer="orthogonal", activation="relu")
            for _ in range(num_conv_layers)
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv_layer in self.conv_layers:
            conv_layer.build(shape)
            shape = shape[:-1] + (self.filters,)
        self.prediction_layer.build(shape)
        self.built = True

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


class GloballyNormalisedLoss:
    """A mixin for keras_cv.models.RetinaNet: its loss normalised by the global batch's positive anchors.

    KerasCV 0.9 divides each replica's loss by that replica's positive anchors
    (retinanet.py `compute_loss`): right on one device, not on N replicas whose gradients Keras
    3.6 sums. KerasCV's own rework of that normalisation, keras-team/keras-cv#1744, was closed
    unfixed when KerasCV's RetinaNet moved to KerasHub. This is a copy of that method but for the
    normaliser, all-reduced over replicas (`compat.keras.sum_over_replicas`). Put it before
    keras_cv.models.RetinaNet.
    """

    def __init__(self, *args, **kwargs):
        check_loss()
        super().__init__(*args, **kwargs)

    def compute_loss(self, x, y, y_pred, sample_weight=None, **kwargs):
        # KerasCV's RetinaNet.compute_loss, but for the normaliser (marked in `loss_targets`).
        y_true, weights = self.loss_targets(x, y)
        loss = super(keras_cv.models.RetinaNet, self).compute_loss(
            x=x, y=y_true, y_pred=y_pred, sample_weight=weights
        )
        # Gradients flow through this replica's share of the global loss; the value
        # Keras reports (it may read the first replica only) is the global loss itself.
        global_loss = keras_compat.sum_over_replicas(ops.stop_gradient(loss))
        return loss + (global_loss - ops.stop_gradient(loss))

    def loss_targets(self, x, y) -> tuple[dict, dict]:
        """The encoded targets and the per-anchor weights of the box and classification losses (validation reuses them)."""
        y_for_label_encoder = keras_cv.bounding_box.convert_format(
            y, source=self.bounding_box_format, target=self.label_encoder.bounding_box_format, images=x
        )
        boxes, classes = self.label_encoder(x, y_for_label_encoder)
        positive_mask = ops.cast(ops.greater(classes, -1.0), dtype="float32")
        normalizer = keras_compat.sum_over_replicas(ops.sum(positive_mask))  # <- the change
        # Anchors labelled -2 (IoU between the thresholds) are ignored.
        cls_weights = ops.cast(ops.not_equal(classes, -2.0), dtype="float32")
        weights = ops.cond(
            normalizer == 0,
            lambda: {"box": ops.zeros_like(positive_mask), "classification": ops.zeros_like(cls_weights)},
            lambda: {"box": positive_mask / normalizer, "classification": cls_weights / normalizer},
        )
        y_true = {
            "box": boxes,
            "classification": ops.one_hot(ops.cast(classes, "int32"), self.num_classes, dtype="float32"),
        }
        return y_true, weights


class LowQualityMatchingLabelEncoder(keras_cv.models.retinanet.LabelEncoder):
    """KerasCV's RetinaNet label encoder that also gives every ground-truth box its best anchor.

    An object whose best anchor overlaps it by less than the positive IoU (0.5) gets no positive
    anchor in KerasCV's encoder and never trains: on a 256 px input with anchor_size 2, one box
    in five (small objects, and boxes between two anchor positions of a coarse level).
    torchvision's RetinaNet (`Matcher(allow_low_quality_matches=True)`) and mmdetection's
    (`MaxIoUAssigner(min_pos_iou=0)`) match each box to its best anchor as well. KerasCV's
    BoxMatcher does this (`force_match_for_each_col`); its label encoder does not expose it.
    Padded boxes (class -1) matched this way stay background: they carry the background class.
    """

    def __init__(self, **kwargs):
        check_label_encoder()
        super().__init__(**kwargs)
        # Written against KerasCV 0.9.0, whose encoder matches through its `box_matcher` attribute.
        if not isinstance(getattr(self, "box_matcher", None), keras_cv.layers.BoxMatcher):
            raise RuntimeError(
                f"KerasCV {keras_cv.__version__}'s RetinaNet label encoder has no box_matcher; "
                "LowQualityMatchingLabelEncoder needs updating (set model.allow_low_quality_matches: false meanwhile)"
            )
        self.box_matcher = keras_cv.layers.BoxMatcher(
            thresholds=[self.negative_threshold, self.positive_threshold],
            match_values=[-1, -2, 1],
            force_match_for_each_col=True,
        )


class TargetScaledJitteredResize(keras_cv.layers.JitteredResize):
    """KerasCV's JitteredResize with its scale drawn relative to `target_size`, as TF Model Garden's.

    KerasCV 0.9 scales an image by `scale_factor` relative to the image's own
    size: a 500 px image trained at 256 px was seen at about twice the scale
    evaluation and serving use, most of it cropped away. Here, as in Model
    Garden's `resize_and_crop_image` (which KerasCV's layer ports), the image
    is scaled to fit `target_size * factor`, then cropped or padded to
    `crop_size`: at factor 1 that is exactly the eval resize (tested). One
    resize, where resizing to the eval size first would interpolate twice.
    """

    def __init__(self, *args, **kwargs):
        check_jittered_resize()
        super().__init__(*args, **kwargs)

    def get_random_transformation_batch(self, batch_size, images=None, **kwargs):
        heights, widths = self._get_image_shape(images)
        image_shapes = tf.cast(tf.concat((heights, widths), axis=-1), tf.float32)  # [batch, 2]
        target = tf.constant(self.target_size, tf.float32)
        scaled_targets = tf.round(target * self.scale_factor(shape=(batch_size, 1)))
        scales = tf.reduce_min(scaled_targets / image_shapes, axis=-1, keepdims=True)
        scaled_sizes = tf.round(image_shapes * scales)
        max_offsets = tf.maximum(scaled_sizes - tf.constant(self.crop_size, tf.float32), 0.0)
        offsets = max_offsets * self._random_generator.uniform(shape=(batch_size, 2), minval=0, maxval=1, dtype=tf.float32)
        return {
            "image_scales": scaled_sizes / image_shapes,
            "scaled_sizes": scaled_sizes,
            "offsets": tf.cast(offsets, tf.int32),
        }


class LeanRandomFlip(keras_cv.layers.RandomFlip):
    """KerasCV's RandomFlip (same random draws, same boxes), flipping each image with one select.

    KerasCV 0.9 builds two image-sized masks by multiplication and computes the
    vertical flip even in horizontal mode (`_flip_images`, keras-team/keras-cv#1696):
    that made RandomFlip the costliest layer of the training input after RandAugment
    (bench/input_pipeline.py). Here an image is flipped or not by one `tf.where` on a
    per-image condition.
    """

    def __init__(self, *args, **kwargs):
        check_random_flip()
        super().__init__(*args, **kwargs)

    def _flip_images(self, images, transformations):
        flips = []
        if self.horizontal:
            flips.append(("flip_horizontals", tf.image.flip_left_right))
        if self.vertical:
            flips.append(("flip_verticals", tf.image.flip_up_down))
        outputs = images
        for key, flip in flips:
            chosen = transformations[key][:, 0] > (1.0 - self.rate)
            outputs = tf.where(chosen[:, tf.newaxis, tf.newaxis, tf.newaxis], flip(outputs), outputs)
        outputs.set_shape(images.shape)
        return outputs
