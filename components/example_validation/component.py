"""TFX's ExampleValidator with the stopping executor (`executor.Executor`); same spec, inputs and outputs."""

from __future__ import annotations

from tfx.components import ExampleValidator
from tfx.dsl.components.base import executor_spec

from vocdet.components.example_validation import executor


class StoppingExampleValidator(ExampleValidator):
    """ExampleValidator that fails its execution, and so the run, when the data breaks the schema."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
