"""CocoEvaluator: scores the exported serving model and blesses it.

TFX's Evaluator (TFMA) computes its own object-detection metrics, not
pycocotools' numbers, and cannot run the image-bytes serving signature over
raw examples; this component does both, and writes a `ModelBlessing` with the
same custom properties TFX's Evaluator writes (`blessed`, `current_model_id`,
...), so TFX's Pusher and `LatestBlessedModelStrategy` work with it unchanged.
"""

from __future__ import annotations

import dataclasses
import json

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from vocdet.components.coco_evaluator import executor
from vocdet.components.settings import EvaluatorSettings
from vocdet.components.coco_evaluator.executor import (
    BASELINE_MODEL_KEY,
    BLESSING_KEY,
    CUSTOM_CONFIG_KEY,
    EVALUATION_KEY,
    EXAMPLES_KEY,
    MODEL_KEY,
)


class CocoEvaluatorSpec(types.ComponentSpec):
    PARAMETERS = {CUSTOM_CONFIG_KEY: ExecutionParameter(type=str)}
    INPUTS = {
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class CocoEvaluator(base_component.BaseComponent):
    """Evaluates `model` on the eval split of `examples` with COCO metrics.

    Args:
      examples: raw Examples (tfds VOC layout) with an `eval` split.
      model: the Trainer's Model; its serving SavedModel is what is scored.
      custom_config: `components.settings.EvaluatorSettings.to_custom_config()`.
      baseline_model: optional latest blessed Model (from a Resolver).
    """

    SPEC_CLASS = CocoEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples, model, custom_config: dict, baseline_model=None):
        if set(custom_config) != {field.name for field in dataclasses.fields(EvaluatorSettings)}:
            raise ValueError("custom_config must be EvaluatorSettings.to_custom_config()")
        super().__init__(
            spec=CocoEvaluatorSpec(
                examples=examples,
                model=model,
                baseline_model=baseline_model,
                custom_config=json.dumps(custom_config, sort_keys=True),
                evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
                blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            )
        )
