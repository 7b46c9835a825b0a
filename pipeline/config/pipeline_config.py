"""`PipelineConfig`: every section of one pipeline's configuration, its derived paths and each component's slice."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from vocdet.components.settings import EvalConfig, EvaluatorSettings, ModelConfig, TrainConfig, TrainerSettings, TransformSettings
from vocdet.pipeline import beam_args
from vocdet.pipeline.config import typed
from vocdet.pipeline.config.sections import BeamConfig, DataConfig, KubeflowConfig, PushConfig

# Where a run writes unless told (`--output`), and its ML Metadata store there.
DEFAULT_OUTPUT_DIR = "outputs"
METADATA_FILE = "metadata.sqlite"


def metadata_path(output_dir: str) -> str:
    """The SQLite ML Metadata store of a run on this machine writing to `output_dir`."""
    return os.path.join(output_dir, METADATA_FILE)


@dataclasses.dataclass
class PipelineConfig:
    """Everything one pipeline run needs."""

    pipeline_name: str = "vocdet"
    output_dir: str = DEFAULT_OUTPUT_DIR
    enable_cache: bool = True
    beam: BeamConfig = dataclasses.field(default_factory=BeamConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    push: PushConfig = dataclasses.field(default_factory=PushConfig)
    kubeflow: KubeflowConfig = dataclasses.field(default_factory=KubeflowConfig)

    # Derived locations, all under output_dir unless set otherwise.
    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return metadata_path(self.output_dir)

    @property
    def sample_dir(self) -> str:
        return os.path.join(self.output_dir, "sample-data")

    @property
    def serving_dir(self) -> str:
        return self.push.serving_dir or os.path.join(self.output_dir, "serving")

    @property
    def beam_pipeline_args(self) -> list[str]:
        """Beam's flags for a run on this machine (the Kubeflow compiler asks `beam_args` with on_cluster=True)."""
        return beam_args.pipeline_args(self.beam, image=self.kubeflow.image)

    def validate(self) -> "PipelineConfig":
        for section in (self.beam, self.data, self.model, self.train, self.eval, self.push, self.kubeflow):
            section.validate()
        if self.beam.runner == "dataflow" and not self.kubeflow.image:
            raise ValueError("beam.runner dataflow runs the pipeline image on its workers: set kubeflow.image (--image)")
        return self

    # Each component's own slice (its custom_config), so that TFX reruns it only when it changes.
    def transform_settings(self) -> TransformSettings:
        return TransformSettings(self.model.bounding_box_format, self.model.image_size, list(self.data.class_names))

    def trainer_settings(self) -> TrainerSettings:
        return TrainerSettings(
            self.model, self.train, list(self.data.class_names), self.eval.blessing_metric, self.data.tuning_splits
        )

    def evaluator_settings(self) -> EvaluatorSettings:
        return EvaluatorSettings(
            self.eval, list(self.data.class_names), self.data.eval_split, self.model.display_confidence_threshold
        )

    def with_overrides(self, overrides: dict[str, Any]) -> "PipelineConfig":
        """Returns a copy with nested keys replaced, e.g. {"train": {"epochs": 3}}."""
        merged = typed.deep_merge(PipelineConfig, dataclasses.asdict(self), overrides, path="")
        return typed.from_dict(PipelineConfig, merged).validate()
