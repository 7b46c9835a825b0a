"""Trainer module: KerasCV RetinaNet model, tf.data input, serving export, run_fn.

Light (no TensorFlow import), so that the pipeline can read what the Trainer records.
"""

# In the model_run artefact: the final losses and throughput, the schedule and the starting weights (run_fn).
TRAINING_RECORD_FILE = "training.json"
# In the model_run artefact: one row per epoch, and its curves (results.py).
RESULTS_CSV_FILE = "results.csv"
RESULTS_PLOT_FILE = "results.png"
# The validation logs' names for people: val_AP50 -> mAP@0.5.
VALIDATION_METRIC_LABELS = {"val_AP": "mAP@[.5:.95]", "val_AP50": "mAP@0.5", "val_AP75": "mAP@0.75", "val_AR100": "AR@100"}


def read_training_record(model_run_dir: str) -> dict | None:
    """`training.json` of a Trainer's model_run artefact (local paths), or None where it has none."""
    import json
    import os

    path = os.path.join(model_run_dir, TRAINING_RECORD_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def best_epoch_line(record: dict) -> str:
    """`best epoch 9/12: val mAP@0.5 0.840 (validation: 14 images)`, or why there was no validation."""
    best = record.get("best")
    validation = record.get("validation") or {}
    if not best:
        reason = validation.get("reason", "not recorded")
        return f"training: {len(record.get('history', []))} epochs, no validation ({reason})"
    label = VALIDATION_METRIC_LABELS.get(best["monitor"], best["monitor"])
    return (f"best epoch {best['epoch']}/{best['epochs']}: val {label} {best['value']:.3f} "
            f"(validation: {validation.get('images', '?')} images, {validation.get('source', '')})")
