"""Named configurations to start from, as small factory functions (TF Model Garden's experiment factories)."""

from __future__ import annotations

import typing

from vocdet.components.settings import EvalConfig, ModelConfig, TrainConfig
from vocdet.pipeline.config.pipeline_config import PipelineConfig
from vocdet.pipeline.config.sections import DataConfig


def demo() -> PipelineConfig:
    """Sample data on a 2-core CPU in a few minutes: a small RetinaNet fine-tuned from the shipped checkpoint.

    The checkpoint (`model.init_checkpoint: sample`, `make sample-weights`) is this architecture
    trained on another draw of the generated sample (docs/training.md); from random weights, a
    few CPU minutes learn nothing. Colour augmentation is off: in the generated sample a class is
    first of all its hue, which RandAugment's colour operations change.
    """
    return PipelineConfig(
        model=ModelConfig(
            backbone="csp_darknet_tiny",
            image_size=256,
            anchor_size=2.0,
            head_conv_layers=1,
            pyramid_filters=64,
            init_checkpoint="sample",
        ),
        train=TrainConfig(
            epochs=12,
            batch_size_per_replica=8,
            optimizer="adam",
            # Fine-tuning: an eighth of the rate the checkpoint was trained with. At a quarter (0.002) the
            # validation curves show 131 images overfitted from epoch 3 on (docs/training.md, validation).
            base_learning_rate=0.0005,
            warmup_steps=40,
            jitter_scale=[0.8, 1.25],
            rand_augment_magnitude=0.0,
            # Validation every epoch on a tenth of train+validation (13 images, docs/training.md): holding
            # out VOC's validation list (36 images) costs 0.03 of test mAP@0.5 here.
            validation_percent=10,
        ),
        # A model that learned nothing is not pushed.
        eval=EvalConfig(blessing_metric="coco/AP50", blessing_threshold=0.5),
    )


def voc_guide() -> PipelineConfig:
    """The KerasCV guide's recipe: ResNet50, 640x640, batch 16 per GPU, 50 epochs."""
    return PipelineConfig(
        # Train on VOC2007 + VOC2012 train and validation; VOC2012's test has no annotations.
        data=DataConfig(eval_year="2007"),
        model=ModelConfig(backbone="resnet50", image_size=640, freeze_backbone=True),
        train=TrainConfig(epochs=50, batch_size_per_replica=16),
    )


PRESETS: dict[str, typing.Callable[[], PipelineConfig]] = {"demo": demo, "voc_guide": voc_guide}
# The preset of the commands that run here (run, ingest), and of those that bind the pipeline to a cluster.
LOCAL_PRESET = "demo"
CLUSTER_PRESET = "voc_guide"
