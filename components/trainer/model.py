"""Builds and compiles the KerasCV RetinaNet the KerasCV guide trains.

Backbones are KerasCV ResNet or CSPDarkNet backbones built from their
architecture arguments, never from a preset: presets download from the
internet, and nothing here may. Pretrained weights come from a local Keras
weights file (`model.backbone_weights`).

Two corrections make training on N replicas (MirroredStrategy, or
MultiWorkerMirroredStrategy) take the step one device would take on the
same global batch. Keras 3.6 sums the replicas' gradients without scaling,
so each replica's loss must be its share of the global loss:

- `RetinaNet.compute_loss` divides by the positive anchors of the global
  batch (all-reduced), where KerasCV divides by each replica's own count;
- `clip_globally` clips the all-reduced gradient by `global_clipnorm`,
  where Keras clips each replica's partial gradient before the sum.
"""

from __future__ import annotations

import math
import os

import keras
import keras_cv
import tensorflow as tf
from keras import ops
from keras.src.backend.tensorflow.trainer import _collective_all_reduce_multi_worker
from keras_cv.src.models.object_detection.retinanet.feature_pyramid import FeaturePyramid
from keras_cv.src.models.object_detection.retinanet.prediction_head import PredictionHead

from vocdet.components.trainer.backbones import BACKBONE_ARCHITECTURES, BACKBONES, CSP_DARKNET_ARCHITECTURES

# 3 scales x 3 aspect ratios, as KerasCV's RetinaNet.
ANCHORS_PER_LOCATION = 9
# The Keras releases whose distributed training the corrections above were tested on, [first, end):
# 3.6.x. Their premise, replica gradients summed unscaled and Keras 3.6's multi-worker reductions
# (keras-team/keras#20585), is what keras-team/keras#20609 changes (Keras then scales each
# replica's loss itself); under another Keras the corrections would scale the step twice or not at all.
DISTRIBUTED_KERAS_VERSIONS = ((3, 6), (3, 7))


def check_distributed_keras(num_replicas: int, version: str | None = None) -> None:
    """Raises when training on several replicas under a Keras outside `DISTRIBUTED_KERAS_VERSIONS`."""
    version = version or keras.__version__
    if num_replicas <= 1:
        return
    release = tuple(int(part) for part in version.split(".")[:2])
    first, end = DISTRIBUTED_KERAS_VERSIONS
    if not first <= release < end:
        raise RuntimeError(
            f"Keras {version}: vocdet's multi-replica loss and clipping corrections (components/trainer/model.py) "
            f"were tested on Keras {first[0]}.{first[1]}.x only, and keras-team/keras#20609 changes how Keras scales "
            f"replica losses; {num_replicas} replicas would not take one device's step. Re-test the corrections "
            "(tests/test_trainer_distribution.py) and widen DISTRIBUTED_KERAS_VERSIONS, or train on one replica."
        )



def build_backbone(name: str, weights_path: str | None = None) -> keras.Model:
    """A randomly initialised backbone, or one loaded from a local weights file."""
    if name in BACKBONE_ARCHITECTURES:
        backbone = keras_cv.models.ResNetBackbone(
            stackwise_filters=[64, 128, 256, 512],
            stackwise_strides=[1, 2, 2, 2],
            include_rescaling=True,
            **BACKBONE_ARCHITECTURES[name],
        )
    elif name in CSP_DARKNET_ARCHITECTURES:
        backbone = keras_cv.models.CSPDarkNetBackbone(include_rescaling=True, **CSP_DARKNET_ARCHITECTURES[name])
    else:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    if weights_path:
        if not os.path.exists(weights_path):
            raise FileNotFoundError(f"{weights_path}: backbone weights file not found (nothing is downloaded)")
        backbone.load_weights(weights_path)
    return backbone


def anchor_generator(bounding_box_format: str, anchor_size: float) -> keras_cv.layers.AnchorGenerator:
    """RetinaNet's anchors (3 scales x 3 aspect ratios on P3-P7), `anchor_size` x stride big.

    KerasCV's default is anchor_size=4 (32 px at stride 8); smaller inputs
    want smaller anchors, or small objects match no anchor and never train.
    """
    strides = [2**level for level in range(3, 8)]
    return keras_cv.layers.AnchorGenerator(
        bounding_box_format=bounding_box_format,
        sizes=[anchor_size * stride for stride in strides],
        aspect_ratios=[0.5, 1.0, 2.0],
        scales=[2**exponent for exponent in (0, 1 / 3, 2 / 3)],
        strides=strides,
        clip_boxes=True,
    )


def label_encoder(model_config) -> keras_cv.models.retinanet.LabelEncoder:
    """KerasCV's RetinaNet label encoder on our anchors, with low-quality matches when configured."""
    anchors = anchor_generator(model_config.bounding_box_format, model_config.anchor_size)
    if model_config.allow_low_quality_matches:
        return LowQualityMatchingLabelEncoder(bounding_box_format=model_config.bounding_box_format, anchor_generator=anchors)
    return keras_cv.models.retinanet.LabelEncoder(bounding_box_format=model_config.bounding_box_format, anchor_generator=anchors)


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


@keras.saving.register_keras_serializable(package="vocdet")
class NarrowFeaturePyramid(FeaturePyramid):
    """KerasCV RetinaNet's feature pyramid (P3-P7), `filters` channels wide instead of 256.

    The pyramid and the heads run at every position of P3 (stride 8): on a CPU
    most of a small RetinaNet's time goes there, not into the backbone.
    """

    def __init__(self, filters: int = 256, **kwargs):
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
class NarrowPredictionHead(PredictionHead):
    """KerasCV RetinaNet's prediction head with `filters`-wide conv layers instead of 256."""

    def __init__(self, output_filters, bias_initializer, num_conv_layers=3, filters: int = 256, **kwargs):
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


@keras.saving.register_keras_serializable(package="vocdet")
class RetinaNet(keras_cv.models.RetinaNet):
    """KerasCV's RetinaNet, its losses normalised by the global batch's positive anchors."""

    def compute_loss(self, x, y, y_pred, sample_weight=None, **kwargs):
        # KerasCV's RetinaNet.compute_loss, but for the normaliser (marked).
        y_for_label_encoder = keras_cv.bounding_box.convert_format(
            y, source=self.bounding_box_format, target=self.label_encoder.bounding_box_format, images=x
        )
        boxes, classes = self.label_encoder(x, y_for_label_encoder)
        positive_mask = ops.cast(ops.greater(classes, -1.0), dtype="float32")
        normalizer = _sum_over_replicas(ops.sum(positive_mask))  # <- the change
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
        loss = super(keras_cv.models.RetinaNet, self).compute_loss(
            x=x, y=y_true, y_pred=y_pred, sample_weight=weights
        )
        # Gradients flow through this replica's share of the global loss; the value
        # Keras reports (it may read the first replica only) is the global loss itself.
        global_loss = _sum_over_replicas(ops.stop_gradient(loss))
        return loss + (global_loss - ops.stop_gradient(loss))

    def train_step(self, data):
        logs = super().train_step(data)
        if _collective_all_reduce_multi_worker(self.distribute_strategy):
            # Keras 3.6 averages a multi-worker step's outputs with strategy.reduce("MEAN",
            # axis=0), which needs an axis to average over: give each scalar one.
            logs = {name: ops.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.6 builds the model on one distributed batch that it first averages over
        # replicas with strategy.reduce; MultiWorkerMirroredStrategy cannot reduce a nested
        # batch (keras-team/keras#20585). This replica's own part has the same structure.
        if iterator is not None and self._distribute_strategy is not None:
            for _, batches in iterator.enumerate_epoch():
                data_batch = tf.nest.map_structure(self._local_part, next(batches))
                break
        return super()._maybe_symbolic_build(data_batch=data_batch)

    def _local_part(self, value):
        if isinstance(value, tf.distribute.DistributedValues):
            return self.distribute_strategy.experimental_local_results(value)[0]
        return value


def _sum_over_replicas(value):
    """`value` summed over all replicas (itself outside a distribution)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def clip_globally(optimizer_class: type[keras.optimizers.Optimizer]) -> type[keras.optimizers.Optimizer]:
    """`optimizer_class` with `global_clipnorm` applied to the gradient summed over replicas."""

    class GloballyClipped(optimizer_class):
        def _clip_gradients(self, grads):
            context = tf.distribute.get_replica_context()
            if not self.global_clipnorm or context is None or context.num_replicas_in_sync == 1:
                return super()._clip_gradients(grads)
            replicas = context.num_replicas_in_sync
            total = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            clipped, _ = tf.clip_by_global_norm(total, self.global_clipnorm)
            # Keras sums the replicas' gradients next: each contributes 1/replicas of the clipped total.
            return [gradient / replicas for gradient in clipped]

    GloballyClipped.__name__ = optimizer_class.__name__
    return GloballyClipped


def build_retinanet(model_config, num_classes: int) -> RetinaNet:
    """The RetinaNet for `model_config` (a `components.settings.ModelConfig`)."""
    check_distributed_keras(tf.distribute.get_strategy().num_replicas_in_sync)
    backbone = build_backbone(model_config.backbone, model_config.backbone_weights)
    if model_config.freeze_backbone:
        backbone.trainable = False
    return RetinaNet(
        num_classes=num_classes,
        bounding_box_format=model_config.bounding_box_format,
        backbone=backbone,
        label_encoder=label_encoder(model_config),
        # KerasCV's pyramid and heads, optionally narrower and shallower: most of a small
        # RetinaNet's compute is here.
        feature_pyramid=NarrowFeaturePyramid(filters=model_config.pyramid_filters),
        classification_head=NarrowPredictionHead(
            output_filters=ANCHORS_PER_LOCATION * num_classes,
            bias_initializer=keras.initializers.Constant(-math.log((1 - 0.01) / 0.01)),
            num_conv_layers=model_config.head_conv_layers,
            filters=model_config.pyramid_filters,
        ),
        box_head=NarrowPredictionHead(
            output_filters=ANCHORS_PER_LOCATION * 4,
            bias_initializer=keras.initializers.Zeros(),
            num_conv_layers=model_config.head_conv_layers,
            filters=model_config.pyramid_filters,
        ),
        prediction_decoder=keras_cv.layers.MultiClassNonMaxSuppression(
            bounding_box_format=model_config.bounding_box_format,
            from_logits=True,
            iou_threshold=model_config.nms_iou_threshold,
            confidence_threshold=model_config.eval_confidence_threshold,
            max_detections=model_config.max_detections,
            max_detections_per_class=model_config.max_detections,
        ),
    )


# The guide's stepped warm-up: fractions of the peak rate up to warmup/4, warmup/2, warmup.
_WARMUP_FRACTIONS = (0.001, 0.25, 0.5)


def _warmup_boundaries(warmup_steps: int) -> list[int]:
    warmup = max(1, warmup_steps)
    return [warmup // 4, warmup // 2, warmup]


def warmup_learning_rate(peak: float, warmup_steps: int, step: int) -> float:
    """The warm-up's rate at `step` (the peak once warm-up is over)."""
    for boundary, fraction in zip(_warmup_boundaries(warmup_steps), _WARMUP_FRACTIONS):
        if step <= boundary:
            return peak * fraction
    return peak


def learning_rate_schedule(train_config, global_batch_size: int, total_steps: int):
    """The guide's shape: a stepped warm-up, then 10x drops at `decay_at` of training."""
    peak = train_config.learning_rate(global_batch_size)
    boundaries = _warmup_boundaries(train_config.warmup_steps)
    boundaries += [max(boundaries[-1] + 1, int(f * total_steps)) for f in train_config.decay_at]
    values = [peak * f for f in _WARMUP_FRACTIONS] + [peak] + [peak * 0.1 ** (i + 1) for i in range(len(train_config.decay_at))]
    # PiecewiseConstantDecay needs strictly increasing boundaries.
    for index in range(1, len(boundaries)):
        boundaries[index] = max(boundaries[index], boundaries[index - 1] + 1)
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries=boundaries, values=values)


def compile_retinanet(model, train_config, global_batch_size: int, total_steps: int) -> None:
    """Focal + smooth-L1 losses, and the guide's SGD with momentum and global_clipnorm.

    `train.optimizer="adam"` trades the guide's SGD for Adam, which trains a
    randomly initialised backbone much faster in the few hundred steps a CPU
    demo can afford. With `lr_schedule="plateau"` the rate is a plain float
    that the warm-up and ReduceLROnPlateau callbacks set (see callbacks.py).
    """
    if train_config.lr_schedule == "plateau":
        learning_rate = warmup_learning_rate(train_config.learning_rate(global_batch_size), train_config.warmup_steps, 0)
    else:
        learning_rate = learning_rate_schedule(train_config, global_batch_size, total_steps)
    if train_config.optimizer == "adam":
        optimizer = clip_globally(keras.optimizers.Adam)(
            learning_rate=learning_rate, global_clipnorm=train_config.global_clipnorm
        )
    else:
        optimizer = clip_globally(keras.optimizers.SGD)(
            learning_rate=learning_rate, momentum=train_config.momentum, global_clipnorm=train_config.global_clipnorm
        )
    model.compile(
        optimizer=optimizer, classification_loss="focal", box_loss="smoothl1", jit_compile=train_config.jit_compile
    )
