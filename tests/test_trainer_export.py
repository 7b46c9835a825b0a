"""The Trainer's exported SavedModel, loaded in a fresh process, puts boxes on the objects."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.serving_probe import LOAD_AND_PREDICT


@pytest.mark.e2e
def test_exported_model_puts_boxes_on_the_objects_it_learned(pipeline_run, tmp_path):
    """run_fn learns one image (heads on a frozen backbone: about a minute on 2 cores), exports,
    and the SavedModel, given that image's JPEG bytes in a plain-TF process, finds its objects."""
    import vocdet.components  # noqa: F401  (Keras 3 before TensorFlow)
    import keras_cv
    import tensorflow as tf
    from tfx.components.trainer.fn_args_utils import FnArgs

    from vocdet.components import features
    from vocdet.components.trainer.module import run_fn

    config, _ = pipeline_run
    root = config.pipeline_root
    transform_output = max(glob.glob(os.path.join(root, "Transform", "transform_graph", "*")))
    train_files = sorted(glob.glob(os.path.join(root, "Transform", "transformed_examples", "*", "Split-train", "*")))

    def large_objects(record):
        boxes = np.array(tf.train.Example.FromString(record).features.feature[features.BOXES].float_list.value)
        return int((boxes.reshape(-1, 4)[:, 2:].min(axis=1) >= 48).sum())

    # The training image with the most objects of 48 px and more.
    records = [record.numpy() for record in tf.data.TFRecordDataset(train_files, compression_type="GZIP")]
    record = max(records, key=large_objects)
    one_image = str(tmp_path / "one.tfrecord.gz")
    with tf.io.TFRecordWriter(one_image, options="GZIP") as writer:
        writer.write(record)
    example = tf.train.Example.FromString(record).features.feature
    image_path = tmp_path / "image.jpg"
    image_path.write_bytes(example[features.IMAGE].bytes_list.value[0])
    boxes = np.array(example[features.BOXES].float_list.value).reshape(-1, 4)  # xywh, image pixels
    classes = np.array(example[features.CLASSES].int64_list.value)

    # A frozen (random) backbone keeps BatchNorm in inference mode, so the few steps that
    # fit the heads hold at prediction time too; no colour or scale jitter.
    overrides = {
        "model": {"freeze_backbone": True, "pyramid_filters": 64, "head_conv_layers": 1},
        "train": {
            "optimizer": "adam", "base_learning_rate": 0.016, "warmup_steps": 10, "epochs": 15,
            "steps_per_epoch": 20, "batch_size_per_replica": 2, "jitter_scale": [1.0, 1.0],
            "rand_augment_magnitude": 0.0,
        },
    }
    trained = config.with_overrides(overrides)
    serving = tmp_path / "model" / "Format-Serving"
    # The decoder and the score threshold are tuned on the image it learned (the eval files are the tuning data).
    run_fn(FnArgs(train_files=[one_image], eval_files=[one_image], transform_output=transform_output,
                  serving_model_dir=str(serving), model_run_dir=str(tmp_path / "run"),
                  custom_config=trained.trainer_settings().to_custom_config()))
    from vocdet.components.coco_evaluator import deployment

    record = deployment.read_tuning_record(str(serving))
    assert record["images"] == 1 and record["objects"] == len(classes)
    assert [row["nms_iou_threshold"] for row in record["sweep"]] == trained.model.nms_iou_grid
    assert record["nms_iou_threshold"] in trained.model.nms_iou_grid
    assert max(row[trained.eval.blessing_metric] for row in record["sweep"]) == next(
        row[trained.eval.blessing_metric] for row in record["sweep"] if row["nms_iou_threshold"] == record["nms_iou_threshold"])

    completed = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, str(serving), str(image_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["decoded_images_signature_agrees"]
    # The recommended threshold reaches a client that has only the SavedModel, from both signatures.
    assert result["recommended_min_score"] == pytest.approx(record["min_score"], abs=1e-6)
    assert result["recommended_min_score_of_decoded"] == pytest.approx(record["min_score"], abs=1e-6)
    assert 0.05 <= record["min_score"] < 1.0
    confident = [i for i, score in enumerate(result["scores"]) if score >= 0.1]
    predicted = keras_cv.bounding_box.convert_format(
        np.array([result["boxes"][i] for i in confident], np.float32).reshape(-1, 4), source="xyxy", target="xywh"
    )
    names = [result["names"][i] for i in confident]
    # Every object at least 24 px on its short side has a box of its class (score >= 0.1) at IoU >= 0.5.
    objects = [(box, class_id) for box, class_id in zip(boxes, classes) if min(box[2], box[3]) >= 24]
    assert len(objects) >= 3
    for box, class_id in objects:
        class_name = config.data.class_names[class_id]
        same_class = [j for j, name in enumerate(names) if name == class_name]
        ious = keras_cv.bounding_box.compute_iou(np.array([box], np.float32), predicted, "xywh").numpy()[0]
        best = max((ious[j] for j in same_class), default=0.0)
        assert best >= 0.5, (class_name, box.tolist(), result)


def test_degenerate_detections_never_leave_the_serving_signature():
    import tensorflow as tf

    from vocdet.components.trainer.serving import drop_degenerate_detections

    boxes = tf.constant([[[0.0, 472.0, 0.0, 472.0], [10.0, 10.0, 50.0, 40.0], [5.0, 5.0, 5.5, 30.0], [0, 0, 0, 0]]])
    scores = tf.constant([[0.9, 0.8, 0.7, 0.0]])
    classes = tf.constant([[2, 7, 3, -1]])
    kept = drop_degenerate_detections(boxes, scores, classes)
    assert kept["num_detections"].numpy().tolist() == [1]
    assert kept["detection_boxes"][0, 0].numpy().tolist() == [10.0, 10.0, 50.0, 40.0]
    assert kept["detection_scores"][0].numpy().tolist() == pytest.approx([0.8, 0.0, 0.0, 0.0])
    assert kept["detection_classes"].numpy().tolist() == [[7, -1, -1, -1]]
