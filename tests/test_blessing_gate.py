"""The Evaluator is the pipeline's gate: the Pusher pushes only what it blesses (and what is servable).

Candidate and baseline are oracle SavedModels with the real serving
signature: they look the image bytes up and return the ground truth (all of
it, or half of it), so their scores are known without training anything.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from vocdet.components.atomic_pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from vocdet.components import voc_format
from vocdet.components.coco_evaluator import executor as evaluator_executor
from vocdet.components.coco_evaluator import evaluation
from vocdet.components.voc_example_gen import convert
from vocdet.pipeline import config as config_lib


class OracleDetector(tf.Module):
    """Returns the stored boxes for images it knows, `keep` of them."""

    def __init__(self, images, keep: float):
        super().__init__()
        boxes = np.zeros((len(images), 100, 4), np.float32)
        classes = -np.ones((len(images), 100), np.int32)
        counts = np.zeros(len(images), np.int32)
        for row, image in enumerate(images):
            count = int(np.ceil(len(image.classes) * keep))
            boxes[row, :count] = image.boxes_xyxy[:count]
            classes[row, :count] = image.classes[:count]
            counts[row] = count
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant([i.encoded for i in images]), tf.range(len(images))), -1
        )
        self.boxes, self.classes, self.counts = tf.constant(boxes), tf.constant(classes), tf.constant(counts)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve(self, images):
        rows = self.table.lookup(images)
        classes = tf.gather(self.classes, rows)
        return {
            "detection_boxes": tf.gather(self.boxes, rows),
            "detection_classes": classes,
            "detection_scores": tf.where(classes >= 0, 0.9, 0.0),
            "detection_class_names": tf.fill(tf.shape(classes), ""),
            "num_detections": tf.gather(self.counts, rows),
        }


@pytest.fixture(scope="module")
def eval_examples(small_voc_root, tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("examples"))
    voc_dir = os.path.join(small_voc_root, "VOC2007")
    os.makedirs(os.path.join(uri, "Split-test"))
    with tf.io.TFRecordWriter(os.path.join(uri, "Split-test", "data.gz"), options="GZIP") as writer:
        for image_id in convert.read_image_set(os.path.join(voc_dir, "ImageSets", "Main", "test.txt")):
            writer.write(convert.convert_record(voc_dir, image_id, voc_format.VOC_CLASSES).example.SerializeToString())
    examples = standard_artifacts.Examples()
    examples.uri = uri
    examples.split_names = artifact_utils.encode_split_names(["test"])
    return examples, evaluation.load_eval_images(os.path.join(uri, "Split-test", "*"))


def _model(tmp_path, name, images, keep, artifact_id):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / name)
    model.id = artifact_id
    module = OracleDetector(images, keep)
    tf.saved_model.save(module, os.path.join(model.uri, "Format-Serving"), signatures={"serving_default": module.serve})
    return model


def _evaluate_and_push(tmp_path, examples, model, baseline, threshold, servable=True, replace_unknown=None, serving=None):
    config = config_lib.demo().with_overrides(
        {"eval": {"blessing_metric": "coco/AP50", "blessing_threshold": threshold, "max_regression": 0.01}}
    )
    evaluation_artifact, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation_artifact.uri, blessing.uri = str(tmp_path / "evaluation"), str(tmp_path / "blessing")
    for uri in (evaluation_artifact.uri, blessing.uri):  # TFX creates output folders before Do
        os.makedirs(uri)
    evaluator_executor.Executor().Do(
        {"examples": [examples], "model": [model], "baseline_model": [baseline] if baseline else []},
        {"evaluation": [evaluation_artifact], "blessing": [blessing]},
        {"custom_config": json.dumps(config.evaluator_settings().to_custom_config())},
    )
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(serving or tmp_path / "serving"))
    )
    infra_blessing = standard_artifacts.InfraBlessing()
    infra_blessing.set_int_custom_property("blessed", int(servable))
    pusher_executor.Executor().Do(
        {"model": [model], "model_blessing": [blessing], "infra_blessing": [infra_blessing]},
        {"pushed_model": [pushed]},
        {
            "push_destination": proto_utils.proto_to_json(destination),
            **({"custom_config": json.dumps({"replace_unknown_serving": replace_unknown})} if replace_unknown is not None else {}),
        },
    )
    with open(os.path.join(evaluation_artifact.uri, "metrics.json")) as handle:
        metrics = json.load(handle)["metrics"]
    return blessing, pushed, metrics


def test_model_below_threshold_is_not_pushed(tmp_path, eval_examples):
    examples, images = eval_examples
    candidate = _model(tmp_path, "half", images, keep=0.5, artifact_id=2)
    blessing, pushed, metrics = _evaluate_and_push(tmp_path, examples, candidate, None, threshold=0.9)
    assert metrics["coco/AP50"] < 0.9
    assert blessing.get_int_custom_property("blessed") == 0
    assert os.path.exists(os.path.join(blessing.uri, "NOT_BLESSED"))
    assert pushed.get_int_custom_property("pushed") == 0
    assert not os.path.exists(tmp_path / "serving")


def test_worse_than_baseline_is_not_pushed_and_better_is(tmp_path, eval_examples):
    examples, images = eval_examples
    perfect = _model(tmp_path, "perfect", images, keep=1.0, artifact_id=3)
    half = _model(tmp_path, "half", images, keep=0.5, artifact_id=4)

    blessing, pushed, metrics = _evaluate_and_push(tmp_path / "worse", examples, half, perfect, threshold=0.1)
    assert blessing.get_int_custom_property("blessed") == 0
    assert "regresses from baseline" in blessing.get_string_custom_property("blessing_message")
    assert blessing.get_int_custom_property("baseline_model_id") == 3
    assert pushed.get_int_custom_property("pushed") == 0

    blessing, pushed, metrics = _evaluate_and_push(tmp_path / "better", examples, perfect, half, threshold=0.1)
    assert metrics["coco/AP50"] == pytest.approx(1.0)
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_int_custom_property("current_model_id") == 3
    assert pushed.get_int_custom_property("pushed") == 1
    versions = [name for name in os.listdir(tmp_path / "better" / "serving") if not name.startswith(".")]  # not the lock file
    assert len(versions) == 1 and os.path.exists(tmp_path / "better" / "serving" / versions[0] / "saved_model.pb")


def test_blessed_model_that_failed_the_serving_check_is_not_pushed(tmp_path, eval_examples):
    examples, images = eval_examples
    perfect = _model(tmp_path, "perfect", images, keep=1.0, artifact_id=5)
    blessing, pushed, _ = _evaluate_and_push(tmp_path, examples, perfect, None, threshold=0.1, servable=False)
    assert blessing.get_int_custom_property("blessed") == 1
    assert pushed.get_int_custom_property("pushed") == 0
    assert not os.path.exists(tmp_path / "serving")


def test_a_new_store_does_not_replace_what_the_serving_folder_already_serves(tmp_path, eval_examples):
    """A store that knows no blessed model (a new one: moving off KFP's metadata-grpc-service) gives no
    baseline; the serving folder's version 7, pushed through the old store, is kept until told otherwise."""
    examples, images = eval_examples
    serving = tmp_path / "serving"
    old = _model(tmp_path, "old", images, keep=1.0, artifact_id=1)
    tf.io.gfile.makedirs(str(serving / "7"))
    for name in tf.io.gfile.listdir(os.path.join(old.uri, "Format-Serving")):
        tf.io.gfile.rename(os.path.join(old.uri, "Format-Serving", name), str(serving / "7" / name))
    candidate = _model(tmp_path, "candidate", images, keep=1.0, artifact_id=2)

    blessing, pushed, _ = _evaluate_and_push(tmp_path / "refused", examples, candidate, None, threshold=0.1, serving=serving)
    assert blessing.get_int_custom_property("blessed") == 1
    assert pushed.get_int_custom_property("pushed") == 0
    reason = pushed.get_string_custom_property("not_pushed_reason")
    assert f"{serving} already serves version 7" in reason and "push.replace_unknown_serving: true" in reason
    assert sorted(name for name in os.listdir(serving) if not name.startswith(".")) == ["7"]

    blessing, pushed, _ = _evaluate_and_push(
        tmp_path / "replaced", examples, candidate, None, threshold=0.1, serving=serving, replace_unknown=True
    )
    assert pushed.get_int_custom_property("pushed") == 1
    (new,) = {name for name in os.listdir(serving) if not name.startswith(".")} - {"7"}
    assert int(new) > 7 and pushed.get_string_custom_property("pushed_version") == new
