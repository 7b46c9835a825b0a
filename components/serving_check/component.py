"""ServingCheck: TFX InfraValidator's LOAD_AND_QUERY mode without Docker or Kubernetes.

Outputs an `InfraBlessing`, which TFX's Pusher checks before pushing
(`blessed` custom property, as InfraValidator writes it).
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from vocdet.components.serving_check import executor
from vocdet.components.serving_check.executor import BLESSING_KEY, EXAMPLES_KEY, MODEL_KEY, NUM_IMAGES_KEY, SPLIT_KEY


class ServingCheckSpec(types.ComponentSpec):
    PARAMETERS = {SPLIT_KEY: ExecutionParameter(type=str), NUM_IMAGES_KEY: ExecutionParameter(type=int)}
    INPUTS = {
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {BLESSING_KEY: ChannelParameter(type=standard_artifacts.InfraBlessing)}


class ServingCheck(base_component.BaseComponent):
    """Loads `model`'s serving SavedModel in a fresh process and queries it with `num_images` from `split`."""

    SPEC_CLASS = ServingCheckSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples, model, split: str, num_images: int = 4):
        if num_images < 1:
            raise ValueError(f"num_images must be at least 1, got {num_images}")
        super().__init__(
            spec=ServingCheckSpec(
                examples=examples,
                model=model,
                split=split,
                num_images=num_images,
                blessing=types.Channel(type=standard_artifacts.InfraBlessing),
            )
        )
