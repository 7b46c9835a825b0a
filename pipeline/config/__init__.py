"""The one typed configuration every entry point reads.

A tree of dataclasses (beam, data, model, train, eval, push, kubeflow) with defaults,
`validate()` and derived values, in the manner of TF Model Garden's
experiment configs. The model, train and eval sections are the components' own
(`components/settings.py`); this module composes them with the rest. Layering:
a named preset, then an optional YAML file, then command-line flags
(`with_overrides`), every value checked against its type. The CLI, the local
runner and the Kubeflow compiler all build the pipeline from a `PipelineConfig`;
each component receives only its slice (`transform_settings`,
`trainer_settings`, `evaluator_settings`), so no setting is defined twice and
TFX's cache reruns a component only when its own settings change.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# The public API: every section, the whole, the presets and `load`.
from vocdet.components.settings import (  # noqa: F401
    BLESSING_METRICS,
    BOUNDING_BOX_FORMATS,
    EvalConfig,
    EvaluatorSettings,
    ModelConfig,
    TrainConfig,
    TrainerSettings,
    TransformSettings,
)
from vocdet.pipeline.config import typed
from vocdet.pipeline.config.pipeline_config import DEFAULT_OUTPUT_DIR, PipelineConfig, metadata_path  # noqa: F401
from vocdet.pipeline.config.presets import CLUSTER_PRESET, LOCAL_PRESET, PRESETS, demo, voc_guide  # noqa: F401
from vocdet.pipeline.config.sections import BeamConfig, DataConfig, KubeflowConfig, PushConfig, image_reference  # noqa: F401


def load(preset: str = LOCAL_PRESET, yaml_path: str | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """preset -> YAML file -> overrides, merged, then validated once (checks may span layers)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    merged = dataclasses.asdict(PRESETS[preset]())
    if yaml_path:
        from_file = typed.read_yaml(yaml_path)
        if not isinstance(from_file, dict):
            raise ValueError(f"{yaml_path}: expected a mapping of config sections")
        merged = typed.deep_merge(PipelineConfig, merged, from_file, path="")
    merged = typed.deep_merge(PipelineConfig, merged, overrides or {}, path="")
    return typed.from_dict(PipelineConfig, merged).validate()
