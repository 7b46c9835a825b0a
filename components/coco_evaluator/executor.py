"""CocoEvaluator's executor: unpacks artefacts, scores, blesses, records.

The logic lives in `evaluation` (scoring) and `blessing` (the decision); this
module only moves artefacts and writes results:
`<evaluation>/metrics.json`, `<evaluation>/blessing.json`, and the blessing
artefact's `BLESSED`/`NOT_BLESSED` file and custom properties (the ones TFX's
own Evaluator sets, which Pusher and LatestBlessedModelStrategy read).
"""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from vocdet.components.coco_evaluator import BASELINE_MODEL_ID_PROPERTY
from vocdet.components.coco_evaluator import blessing, deployment, evaluation, report
from vocdet.components.settings import EvaluatorSettings

_logger = logging.getLogger(__name__)

EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
BASELINE_MODEL_KEY = "baseline_model"
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"
CUSTOM_CONFIG_KEY = "custom_config"

BLESSING_FILE = "blessing.json"


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        config = EvaluatorSettings.from_custom_config(json.loads(exec_properties[CUSTOM_CONFIG_KEY]))
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        baselines = input_dict.get(BASELINE_MODEL_KEY) or []
        baseline = baselines[0] if baselines and baselines[0].id != model.id else None
        evaluation_artifact = artifact_utils.get_single_instance(output_dict[EVALUATION_KEY])
        blessing_artifact = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])

        eval_uri = artifact_utils.get_split_uri([examples], config.eval_split)
        images = evaluation.load_eval_images(os.path.join(eval_uri, "*"))
        class_names = config.class_names
        batch_size = config.eval.batch_size
        model_dir = path_utils.serving_model_path(model.uri)
        evaluated = evaluation.evaluate_saved_model(model_dir, images, class_names, batch_size, analyse=True)
        scores, metrics = evaluated.scores, evaluated.scores["metrics"]
        baseline_metrics = (
            evaluation.evaluate_saved_model(path_utils.serving_model_path(baseline.uri), images, class_names, batch_size)
            .scores["metrics"]
            if baseline
            else None
        )
        # The gallery cuts where a client of the model would: its recommended min score, else the display threshold.
        gallery_min_score = evaluated.min_score if evaluated.min_score is not None else config.display_confidence_threshold
        metric = config.eval.blessing_metric
        decision = blessing.decide(
            metric,
            metrics[metric],
            config.eval.blessing_threshold,
            baseline_metrics[metric] if baseline_metrics else None,
            config.eval.max_regression,
        )

        report.write_report(
            evaluation_artifact.uri,
            scores,
            evaluated.curves,
            num_images=len(images),
            decision=decision.to_dict(),
            baseline_metrics=baseline_metrics,
            gallery=evaluation.gallery(images, evaluated.detections, class_names, gallery_min_score),
            gallery_min_score=gallery_min_score,
            analysis=evaluated.analysis,
            tuning=deployment.read_tuning_record(model_dir),
            scored_on=f"{config.eval_split} ({len(images)} images)",
        )
        _write_json(os.path.join(evaluation_artifact.uri, BLESSING_FILE), decision.to_dict())
        # Object stores have no folders; a local or PVC pipeline root needs this one made.
        tf.io.gfile.makedirs(blessing_artifact.uri)
        _write_json(os.path.join(blessing_artifact.uri, BLESSING_FILE), decision.to_dict())
        with tf.io.gfile.GFile(
            os.path.join(blessing_artifact.uri, "BLESSED" if decision.blessed else "NOT_BLESSED"), "w"
        ) as handle:
            handle.write("\n".join(decision.reasons) + "\n")

        for artifact in (evaluation_artifact, blessing_artifact):
            artifact.set_int_custom_property("blessed", int(decision.blessed))
            artifact.set_string_custom_property("blessing_message", "; ".join(decision.reasons))
            artifact.set_float_custom_property(metric, metrics[metric])
        blessing_artifact.set_string_custom_property("current_model", model.uri)
        blessing_artifact.set_int_custom_property("current_model_id", model.id)
        if baseline:
            blessing_artifact.set_string_custom_property("baseline_model", baseline.uri)
            blessing_artifact.set_int_custom_property(BASELINE_MODEL_ID_PROPERTY, baseline.id)
        _logger.info(
            "COCO AP %.4f, AP50 %.4f, VOC mAP50 %.4f on %d images; %s: %s",
            metrics["coco/AP"],
            metrics["coco/AP50"],
            metrics["voc/mAP50_11point"],
            len(images),
            "blessed" if decision.blessed else "not blessed",
            "; ".join(decision.reasons),
        )


def _write_json(path: str, content: dict) -> None:
    with tf.io.gfile.GFile(path, "w") as handle:
        json.dump(content, handle, indent=2, sort_keys=True)
