"""ServingCheck's executor: query the model, write an InfraBlessing TFX's Pusher reads."""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from vocdet.components import features
from vocdet.components.serving_check import check

EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
BLESSING_KEY = "blessing"
SPLIT_KEY = "split"
NUM_IMAGES_KEY = "num_images"

_logger = logging.getLogger(__name__)


def first_images(file_pattern: str, count: int) -> list[bytes]:
    """The encoded images of the first `count` raw examples."""
    files = sorted(tf.io.gfile.glob(file_pattern))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(count)
    spec = {features.IMAGE: tf.io.FixedLenFeature([], tf.string)}
    return [tf.io.parse_single_example(record, spec)[features.IMAGE].numpy() for record in dataset]


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
        split_uri = artifact_utils.get_split_uri([examples], exec_properties[SPLIT_KEY])
        images = first_images(os.path.join(split_uri, "*"), int(exec_properties[NUM_IMAGES_KEY]))
        passed, reason = check.load_and_query(path_utils.serving_model_path(model.uri), images)
        # TFX InfraValidator's conventions: a marker file and the `blessed` property.
        with tf.io.gfile.GFile(os.path.join(blessing.uri, "INFRA_BLESSED" if passed else "INFRA_NOT_BLESSED"), "w") as handle:
            handle.write(reason + "\n")
        with tf.io.gfile.GFile(os.path.join(blessing.uri, "serving_check.json"), "w") as handle:
            json.dump({"passed": passed, "reason": reason}, handle)
        blessing.set_int_custom_property("blessed", int(passed))
        blessing.set_string_custom_property("serving_check", reason)
        (_logger.info if passed else _logger.warning)("Serving check %s: %s", "passed" if passed else "FAILED", reason)
