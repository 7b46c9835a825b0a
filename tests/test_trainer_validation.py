"""Validation during fit: its COCO numbers are the evaluator's and pycocotools', its losses Keras' own;
the best epoch survives a resume and is the one training ends on; results.csv and results.png."""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

import vocdet.components  # noqa: F401  (Keras 3 before TensorFlow)
import keras
import tensorflow as tf

from tests.coco_cases import reference_scores
from vocdet.components import voc_format
from vocdet.components.coco_evaluator import scoring
from vocdet.components.settings import TrainConfig
from vocdet.components.trainer import best_epoch, checkpoint, input_pipeline, optimization, results, validation
from vocdet.components.trainer.retinanet import detector
from vocdet.pipeline.config import presets
from vocdet.pipeline.data import sample

CLASS_NAMES = list(voc_format.VOC_CLASSES)


@pytest.fixture(scope="module")
def demo_model():
    """The demo's RetinaNet with the shipped sample checkpoint: it detects the sample's objects."""
    model_config = presets.demo().model
    model = detector.build_retinanet(model_config, num_classes=len(CLASS_NAMES))
    checkpoint.restore(model, model_config.init_checkpoint, model_config)
    optimization.compile_retinanet(model, TrainConfig(optimizer="adam", warmup_steps=1), 4, 10)
    return model, model_config


def sample_images(model_config, count=7, seed=11):
    """`decoder_tuning.read_images`' tuples for freshly drawn sample images (another seed than the checkpoint's)."""
    spec = sample.SampleSpec(seed=seed)
    resize = input_pipeline.eval_resizing(model_config)
    images = []
    for index in range(1, count + 1):
        encoded, annotation = sample.render_image(str(index), spec)
        pixels = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"), np.float32)
        boxes = np.array([[o.xmin - 1, o.ymin - 1, o.xmax, o.ymax] for o in annotation.objects], np.float32)
        classes = np.array([CLASS_NAMES.index(o.name) for o in annotation.objects])
        difficult = np.array([o.difficult for o in annotation.objects])
        images.append((resize(pixels[tf.newaxis])[0], pixels.shape[:2], boxes, classes, difficult))
    return images


def test_validation_map_is_the_evaluators_and_pycocotools(demo_model, tmp_path):
    model, model_config = demo_model
    # Batches of one size: Keras' evaluate averages its per-output losses over batches unweighted (its graph
    # has no static batch size), where the total and vocdet weight each batch by its images.
    validation_set = validation.ValidationSet.from_images(sample_images(model_config, 6), CLASS_NAMES, model_config, 3)
    callback = validation.Validation(validation_set, model_config, frequency=1, epochs=1)
    callback.set_model(model)
    logs = {"loss": 1.0}
    callback.on_epoch_end(0, logs)

    detections = callback.last_detections
    assert detections and logs["val_AP50"] > 0.3  # the checkpoint detects: the comparison is not of zeros
    evaluator = scoring.score(validation_set.ground_truth, detections, CLASS_NAMES)[0]["metrics"]
    reference = reference_scores(validation_set.ground_truth, detections, tmp_path)
    for name in validation.METRICS:
        assert logs[f"val_{name}"] == pytest.approx(evaluator[f"coco/{name}"], abs=1e-9)
        assert logs[f"val_{name}"] == pytest.approx(reference[name], abs=1e-9)
    assert logs[validation.SECONDS] > 0

    # The losses are Keras' own on the same batches (Model.evaluate: the model's compute_loss).
    images = tf.concat([batch.images for batch in validation_set.batches], 0)
    targets = {key: tf.concat([batch.targets[key] for batch in validation_set.batches], 0) for key in ("boxes", "classes")}
    keras_logs = model.evaluate(images, targets, batch_size=3, return_dict=True, verbose=0)
    for name in validation.LOSSES:
        assert logs[f"val_{name}"] == pytest.approx(keras_logs[name], rel=1e-5)


def test_validation_runs_every_frequency_epochs_and_after_the_last(demo_model):
    model, model_config = demo_model
    validation_set = validation.ValidationSet.from_images(sample_images(model_config, count=2), CLASS_NAMES, model_config, 2)
    callback = validation.Validation(validation_set, model_config, frequency=3, epochs=7)
    assert [epoch + 1 for epoch in range(7) if callback.runs_after(epoch)] == [3, 6, 7]
    callback.set_model(model)
    logs = {}
    callback.on_epoch_end(0, logs)
    assert logs == {}
    assert validation.monitor("coco/AP50") == "val_AP50" and validation.monitor("coco/AP") == "val_AP"


class _Scores(keras.callbacks.Callback):
    """Logs a made-up validation score per epoch, and marks the weights with the epoch."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores

    def on_epoch_end(self, epoch, logs=None):
        self.model.weights[0].assign(tf.fill(self.model.weights[0].shape, float(epoch + 1)))
        logs["val_AP50"] = self.scores[epoch]


def _tiny_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def _fit(model, scores, tmp_path, epochs, state_dir):
    best = best_epoch.BestCheckpoint(str(tmp_path / "run" / "best.weights.h5"), "val_AP50", str(state_dir))
    log = results.ResultsLog(str(tmp_path / "run"), str(state_dir))
    model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=epochs, verbose=0, callbacks=[_Scores(scores), best, log])
    return best, log


def test_training_ends_on_the_best_epoch_and_a_resume_keeps_it(tmp_path):
    state_dir = tmp_path / "resume" / "record"
    scores = [0.2, 0.6, 0.5, 0.4]
    model = _tiny_model()
    best, log = _fit(model, scores[:3], tmp_path, 3, state_dir)  # killed after epoch 3 (Keras' backup: epoch 3)
    assert best.best_epoch == 2 and float(model.weights[0].numpy().flat[0]) == 2.0
    assert best_epoch.read_state(str(state_dir))["epoch"] == 2

    # The retry resumes at epoch 4 (as BackupAndRestore would) with a new run folder: the best so far is
    # epoch 2's, not -inf, so epoch 4's 0.4 does not replace it, and training ends on epoch 2's weights.
    resumed = _tiny_model()
    best = best_epoch.BestCheckpoint(str(tmp_path / "run2" / "best.weights.h5"), "val_AP50", str(state_dir))
    log = results.ResultsLog(str(tmp_path / "run2"), str(state_dir))
    resumed.fit(np.zeros((4, 2)), np.zeros((4, 1)), initial_epoch=3, epochs=4, verbose=0,
                callbacks=[_Scores(scores), best, log])  # fmt: skip
    assert best.best_epoch == 2 and best.best == pytest.approx(0.6)
    assert float(resumed.weights[0].numpy().flat[0]) == 2.0
    rows = results.read_csv(str(tmp_path / "run2" / results.CSV_FILE))
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert [row["metrics/mAP50(B)"] for row in rows] == pytest.approx(scores)

    # A new training (epoch 0) ignores what an earlier one left.
    fresh = _tiny_model()
    best, log = _fit(fresh, [0.1, 0.05], tmp_path, 2, state_dir)
    assert best.best_epoch == 1 and [row["epoch"] for row in log.rows] == [1, 2]


def test_results_png_marks_the_best_epoch(tmp_path):
    rows = [{"epoch": e, "loss": 2.0 / e, "box_loss": 1.0 / e, "classification_loss": 1.0 / e,
             **({"val_AP50": s, "val_AP": s / 2, "val_loss": 1 + abs(e - 3)} if s is not None else {})}
            for e, s in [(1, 0.3), (2, None), (3, 0.7), (4, 0.5)]]  # fmt: skip
    path = tmp_path / results.PLOT_FILE
    results.plot(rows, str(path), best_epoch=3, monitor_column=results.column_of("val_AP50"))
    picture = Image.open(path)
    assert picture.format == "PNG" and picture.size == (1200, 600)
    results.write_csv(rows, str(tmp_path / results.CSV_FILE))
    table = results.read_csv(str(tmp_path / results.CSV_FILE))
    assert table[1]["metrics/mAP50(B)"] is None and table[2]["metrics/mAP50(B)"] == 0.7
    assert list(table[0])[:3] == ["epoch", "time", "train/loss"]


def test_the_run_summary_line_names_the_best_epoch_or_why_there_was_no_validation():
    from vocdet.components import trainer

    record = {"history": [{"epoch": e} for e in range(1, 13)],
              "best": {"epoch": 9, "epochs": 12, "monitor": "val_AP50", "value": 0.8412},
              "validation": {"images": 14, "source": "10% slice of the training records"}}  # fmt: skip
    assert trainer.best_epoch_line(record) == (
        "best epoch 9/12: val mAP@0.5 0.841 (validation: 14 images, 10% slice of the training records)"
    )
    assert trainer.best_epoch_line({"history": [{"epoch": 1}], "best": None,
                                    "validation": {"images": 0, "reason": "train.validation_freq: 0"}}) == (
        "training: 1 epochs, no validation (train.validation_freq: 0)"
    )  # fmt: skip
