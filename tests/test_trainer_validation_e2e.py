"""The exported model is the best validated epoch, not the last: run_fn on a schedule that diverges late."""

import glob
import json
import os

import pytest


@pytest.mark.e2e
def test_the_exported_model_is_the_best_epoch_not_the_last(pipeline_run, tmp_path):
    """From the shipped checkpoint, epoch 1 trains at a thousandth of a learning rate that then wrecks the
    model (Adam at 0.5): epoch 1 is the best on the held-out validation split, epochs 2-3 are worse.
    The SavedModel, re-scored on the validation images through its serving signature, gives epoch 1's
    recorded validation mAP; results.csv shows the later epochs worse."""
    import vocdet.components  # noqa: F401  (Keras 3 before TensorFlow)
    import tensorflow as tf
    from tfx.components.trainer.fn_args_utils import FnArgs

    from vocdet.components import features, trainer
    from vocdet.components.coco_evaluator import coco_metrics
    from vocdet.components.trainer import decoder_tuning, results
    from vocdet.components.trainer.module import run_fn

    config, _ = pipeline_run
    root = config.pipeline_root
    transform_output = max(glob.glob(os.path.join(root, "Transform", "transform_graph", "*")))
    examples = max(glob.glob(os.path.join(root, "Transform", "transformed_examples", "*")))
    train_files = [os.path.join(examples, "Split-train", "*")]
    validation_files = [os.path.join(examples, "Split-validation", "*")]

    trained = config.with_overrides({
        # No decoder sweep: the exported decoder is the one validation decoded with.
        "model": {"nms_iou_grid": []},
        "train": {
            "optimizer": "adam", "base_learning_rate": 0.5, "epochs": 3, "steps_per_epoch": 4, "warmup_steps": 16,
            "batch_size_per_replica": 2, "jitter_scale": [1.0, 1.0], "lr_schedule": "step", "decay_at": [0.98, 0.99],
            "validation_freq": 1, "validation_max_images": 6,
        },
    })  # fmt: skip
    serving = tmp_path / "model" / "Format-Serving"
    run_dir = tmp_path / "run" / "model_run" / "1"
    run_fn(FnArgs(train_files=train_files, eval_files=validation_files, transform_output=transform_output,
                  serving_model_dir=str(serving), model_run_dir=str(run_dir),
                  custom_config=trained.trainer_settings().to_custom_config()))  # fmt: skip

    record = trainer.read_training_record(str(run_dir))
    assert record["best"]["epoch"] == 1 and record["exported_epoch"] == 1, record["best"]
    assert [row["epoch"] for row in record["history"]] == [1, 2, 3]
    assert record["validation"]["images"] == 6 and "held-out split" in record["validation"]["source"]
    best = record["best"]
    assert best["monitor"] == "val_AP50" and best["value"] == best["validation"]["val_AP50"] > 0.05  # the demo's blessing metric

    table = results.read_csv(str(run_dir / results.CSV_FILE))
    monitored = results.column_of(record["best"]["monitor"])
    assert [row["epoch"] for row in table] == [1, 2, 3]
    assert all(row[monitored] < table[0][monitored] for row in table[1:]), table
    assert (run_dir / results.PLOT_FILE).stat().st_size > 10_000

    # Re-score the SavedModel on the validation images through serving_default (JPEG bytes in).
    images = decoder_tuning.read_images(validation_files, _transform(transform_output), trained.model, max_images=6)
    ground_truth = decoder_tuning.coco_ground_truth(images, trained.data.class_names)
    records = list(tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(validation_files[0])), compression_type="GZIP").take(6))
    encoded = [tf.train.Example.FromString(r.numpy()).features.feature[features.IMAGE].bytes_list.value[0] for r in records]
    signature = tf.saved_model.load(str(serving)).signatures["serving_default"]
    detections = []
    for image_id, jpeg in enumerate(encoded, start=1):
        found = signature(images=tf.constant([jpeg]))
        count = int(found["num_detections"][0])
        detections += coco_metrics.detections_for_image(
            image_id, found["detection_boxes"][0, :count].numpy(), found["detection_classes"][0, :count].numpy(),
            found["detection_scores"][0, :count].numpy(),
        )  # fmt: skip
    rescored = coco_metrics.evaluate(ground_truth, detections)
    for name in ("AP", "AP50"):
        assert rescored[name] == pytest.approx(record["best"]["validation"][f"val_{name}"], abs=1e-4), (name, rescored)
    assert json.loads((run_dir / trainer.TRAINING_RECORD_FILE).read_text())["best"]["why"].startswith("highest val_")


def _transform(transform_output):
    import tensorflow_transform as tft

    return tft.TFTransformOutput(transform_output)
