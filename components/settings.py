"""The typed settings the code inside components reads: model, training, evaluation.

They belong to the components: `pipeline/config/` composes them with the data, push and Kubeflow
sections, presets, YAML files and flags, and nothing here reads a file or knows Kubeflow. Each
component receives only its own slice as `custom_config` (`TransformSettings`, `TrainerSettings`,
`EvaluatorSettings`), so TFX's cache, which keys on a component's parameters, reruns a component
only when a setting it reads has changed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vocdet.components.trainer.retinanet.backbones import BACKBONES

# KerasCV's bounding box formats (keras_cv.bounding_box.convert_format).
BOUNDING_BOX_FORMATS = ("xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw", "rel_xyxy", "rel_yxyx", "rel_xywh")
BLESSING_METRICS = ("coco/AP", "coco/AP50", "coco/AP75")


@dataclasses.dataclass
class ModelConfig:
    """The RetinaNet, its input size and its prediction decoder."""

    backbone: str = "resnet50"
    # A local Keras weights file for the backbone; nothing is ever downloaded.
    backbone_weights: str | None = None
    freeze_backbone: bool = False
    bounding_box_format: str = "xywh"
    image_size: int = 640
    # Anchor size as a multiple of the pyramid level's stride (KerasCV's default is 4).
    anchor_size: float = 4.0
    # Also match every ground-truth box to its best anchor, even below IoU 0.5 (torchvision's
    # and mmdetection's RetinaNet do; KerasCV's does not): no object goes untrained.
    allow_low_quality_matches: bool = True
    # Weights of a whole RetinaNet of this architecture to start from: "sample" (vocdet's
    # checkpoint trained on the generated sample, docs/training.md) or a checkpoint file. Layers whose
    # shapes differ (the class head, for another class list) keep their initialisation.
    init_checkpoint: str = ""
    # Conv layers in each RetinaNet head (KerasCV's default is 3).
    head_conv_layers: int = 3
    # Channels of the feature pyramid and the heads (KerasCV's fixed width is 256).
    pyramid_filters: int = 256
    max_boxes: int = 32
    nms_iou_threshold: float = 0.5
    # Low for evaluation (mAP needs the whole PR curve). Clients cut at the model's recommended min
    # score (tuned by the Trainer); display_confidence_threshold only for models without one.
    eval_confidence_threshold: float = 0.05
    display_confidence_threshold: float = 0.5
    max_detections: int = 100
    # The decoder's NMS IoU is chosen from these, by eval.blessing_metric on the tuning data
    # (data.tuning_split), before the serving export; empty keeps nms_iou_threshold untuned.
    nms_iou_grid: list[float] = dataclasses.field(default_factory=lambda: [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75])
    # At most this many tuning images (the first ones) are run once through the network for the sweep.
    tuning_max_images: int = 500

    def validate(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"model.backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.bounding_box_format not in BOUNDING_BOX_FORMATS:
            raise ValueError(
                f"model.bounding_box_format must be one of {BOUNDING_BOX_FORMATS}, got {self.bounding_box_format!r}"
            )
        if self.image_size <= 0 or self.image_size % 128:
            raise ValueError(
                f"model.image_size must be a positive multiple of 128 (RetinaNet's coarsest level, P7, has stride 128), "
                f"got {self.image_size}; e.g. 256 or 640"
            )
        if self.head_conv_layers < 0 or self.pyramid_filters < 8:
            raise ValueError("model.head_conv_layers must be >= 0 and model.pyramid_filters >= 8")
        for name in ("nms_iou_threshold", "eval_confidence_threshold", "display_confidence_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"model.{name} must be in [0, 1]")
        if any(not 0.0 < value <= 1.0 for value in self.nms_iou_grid) or self.tuning_max_images < 1:
            raise ValueError("model.nms_iou_grid values must be in (0, 1] and model.tuning_max_images >= 1")


@dataclasses.dataclass
class TrainConfig:
    """The KerasCV guide's recipe, scaled to the global batch."""

    epochs: int = 50
    # 0 means one pass over the training split per epoch.
    steps_per_epoch: int = 0
    batch_size_per_replica: int = 16
    # Learning rate for a global batch of 16 images; scaled linearly.
    base_learning_rate: float = 0.01
    warmup_steps: int = 500
    # Fractions of all training steps (epochs x steps per epoch) at which the learning rate drops by 10x.
    decay_at: list[float] = dataclasses.field(default_factory=lambda: [0.67, 0.89])
    # "sgd" (the guide's, with momentum) or "adam".
    optimizer: str = "sgd"
    momentum: float = 0.9
    global_clipnorm: float = 10.0
    # "step": the guide's warm-up, then 10x drops at decay_at. "plateau": the same
    # warm-up, then the peak rate until the training loss stops improving for
    # plateau_patience epochs (Keras's ReduceLROnPlateau, 10x at a time); with validation, until the
    # validation metric of eval.blessing_metric stops improving.
    lr_schedule: str = "step"
    plateau_patience: int = 3
    # Stop when the training loss (with validation: the validation metric) has not improved for this many epochs (0: never).
    early_stopping_patience: int = 0
    jitter_scale: list[float] = dataclasses.field(default_factory=lambda: [0.75, 1.3])
    # The guide's colour-only RandAugment strength (0 turns it off).
    rand_augment_magnitude: float = 0.25
    # Validate every this many epochs (and after the last) on held-out data: val_* losses and COCO
    # metrics, and the best epoch by eval.blessing_metric is the one exported. 0: never.
    validation_freq: int = 1
    # What validates: a split held out from training (data.tuning_split), else this percent of the
    # training records, a stable hash slice the model does not train on (0: no validation without a
    # held-out split).
    validation_percent: int = 5
    # At most this many held-out images (the first ones) are validated on.
    validation_max_images: int = 500
    # Compile the train step with XLA.
    jit_compile: bool = False
    # Start from the weights of the latest blessed model of this pipeline, when
    # there is one (scheduled retraining), instead of the backbone weights.
    warm_start: bool = False
    seed: int = 0

    def learning_rate(self, global_batch_size: int) -> float:
        return self.base_learning_rate * global_batch_size / 16.0

    def validate(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"train.optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.lr_schedule not in ("step", "plateau"):
            raise ValueError(f"train.lr_schedule must be 'step' or 'plateau', got {self.lr_schedule!r}")
        if self.plateau_patience < 1 or self.early_stopping_patience < 0:
            raise ValueError("train.plateau_patience must be >= 1 and train.early_stopping_patience >= 0")
        if self.epochs < 1 or self.batch_size_per_replica < 1:
            raise ValueError("train.epochs and train.batch_size_per_replica must be positive")
        if self.validation_freq < 0 or self.validation_max_images < 1 or not 0 <= self.validation_percent < 50:
            raise ValueError(
                "train.validation_freq must be >= 0 (0: no validation), train.validation_max_images >= 1 and "
                "train.validation_percent in [0, 50)"
            )
        if self.steps_per_epoch < 0 or self.warmup_steps < 0:
            raise ValueError("train.steps_per_epoch and train.warmup_steps must not be negative")
        if list(self.decay_at) != sorted(self.decay_at) or any(not 0 < f < 1 for f in self.decay_at):
            raise ValueError("train.decay_at must be increasing fractions in (0, 1)")
        if len(self.jitter_scale) != 2 or not 0 < self.jitter_scale[0] <= self.jitter_scale[1]:
            raise ValueError("train.jitter_scale must be [low, high] with 0 < low <= high")


@dataclasses.dataclass
class EvalConfig:
    """How the trained model is scored and when it is blessed."""

    blessing_metric: str = "coco/AP"
    # The model must reach this value of blessing_metric...
    blessing_threshold: float = 0.25
    # ...and must not fall more than this below the latest blessed model.
    max_regression: float = 0.01
    batch_size: int = 8

    def validate(self) -> None:
        if self.blessing_metric not in BLESSING_METRICS:
            raise ValueError(f"eval.blessing_metric must be one of {BLESSING_METRICS}")
        if not 0.0 <= self.blessing_threshold <= 1.0 or self.max_regression < 0:
            raise ValueError("eval.blessing_threshold must be in [0, 1], eval.max_regression >= 0")



class _ComponentSettings:
    """A component's slice of the configuration, as the JSON-serialisable dict TFX stores."""

    def to_custom_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TransformSettings(_ComponentSettings):
    """What `preprocessing_fn` reads."""

    bounding_box_format: str
    image_size: int
    class_names: list[str]

    @classmethod
    def from_custom_config(cls, custom_config: dict[str, Any]) -> "TransformSettings":
        return cls(**custom_config)


@dataclasses.dataclass
class TrainerSettings(_ComponentSettings):
    """What `run_fn` reads."""

    model: ModelConfig
    train: TrainConfig
    class_names: list[str]
    # The decoder and the recommended score threshold are tuned by this metric (eval.blessing_metric)...
    tuning_metric: str = EvalConfig.blessing_metric
    # ...on the Trainer's eval files, which are these splits (data.tuning_split, or the training splits).
    tuning_splits: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def from_custom_config(cls, custom_config: dict[str, Any]) -> "TrainerSettings":
        return cls(
            **{
                **custom_config,
                "model": ModelConfig(**custom_config["model"]),
                "train": TrainConfig(**custom_config["train"]),
                "class_names": list(custom_config["class_names"]),
            }
        )


@dataclasses.dataclass
class EvaluatorSettings(_ComponentSettings):
    """What CocoEvaluator reads."""

    eval: EvalConfig
    class_names: list[str]
    eval_split: str
    # Predictions drawn in the gallery of a model without a recommended min score (one from before it).
    display_confidence_threshold: float

    @classmethod
    def from_custom_config(cls, custom_config: dict[str, Any]) -> "EvaluatorSettings":
        return cls(**{**custom_config, "eval": EvalConfig(**custom_config["eval"])})
