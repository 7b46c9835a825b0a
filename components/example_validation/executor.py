"""ExampleValidator's executor, made to stop the run when a data drop breaks the schema.

TFX's ExampleValidator compares each split's statistics with the schema,
writes the anomalies, and marks the split `blessed` or not; the pipeline goes
on either way. A scheduled retraining runs unattended, so a drop that breaks
the schema kept with the project (a new class id, a missing feature, an empty
split) must stop before Transform and the Trainer spend their hours on it.
This executor runs TFX's, then fails in one line that names the anomalies and
where TFX wrote them; the pipeline makes Transform wait for it.
"""

from __future__ import annotations

import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.example_validator import executor as tfx_executor
from tfx.types import artifact_utils, standard_component_specs


class DataAnomaliesError(ValueError):
    """The examples break the schema; the message lists the anomalies and their report."""


def anomaly_lines(anomalies: anomalies_pb2.Anomalies) -> list[str]:
    """One short description per anomaly: `feature: description`, and the dataset's own."""
    lines = [
        f"{feature}: {info.short_description}" for feature, info in sorted(anomalies.anomaly_info.items())
    ]
    if anomalies.HasField("dataset_anomaly_info"):
        lines.append(f"dataset: {anomalies.dataset_anomaly_info.short_description}")
    return lines


def read_anomalies(split_uri: str) -> anomalies_pb2.Anomalies:
    with tf.io.gfile.GFile(os.path.join(split_uri, tfx_executor.DEFAULT_FILE_NAME), "rb") as handle:
        return anomalies_pb2.Anomalies.FromString(handle.read())


class Executor(tfx_executor.Executor):
    """TFX's ExampleValidator executor; then DataAnomaliesError if any split has anomalies."""

    def Do(self, input_dict, output_dict, exec_properties):
        result = super().Do(input_dict, output_dict, exec_properties)
        anomalies_artifact = artifact_utils.get_single_instance(output_dict[standard_component_specs.ANOMALIES_KEY])
        found = {}
        for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
            split_uri = artifact_utils.get_split_uri([anomalies_artifact], split)
            if tf.io.gfile.exists(os.path.join(split_uri, tfx_executor.DEFAULT_FILE_NAME)):
                lines = anomaly_lines(read_anomalies(split_uri))
                if lines:
                    found[split] = lines
        if found:
            listed = "; ".join(f"{split}: {', '.join(lines)}" for split, lines in sorted(found.items()))
            raise DataAnomaliesError(
                f"the examples break the schema ({listed}); stopped before Transform. "
                f"Anomalies: {anomalies_artifact.uri}/Split-*/{tfx_executor.DEFAULT_FILE_NAME}. "
                "Fix the data, or update the schema file if the change is intended (vocdet freeze-schema)"
            )
        return result
