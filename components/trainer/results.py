"""`results.csv` and `results.png` in the Trainer's `model_run` artefact, as ultralytics writes them.

One row per epoch, written as each epoch ends (a run can be watched, and a killed one keeps its
rows): the epoch, its training time, the training losses, the validation losses and COCO
metrics (empty where validation did not run), the learning rate, images/s and the validation's
time. Columns follow ultralytics' habits (`train/box_loss`, `metrics/mAP50(B)`, `lr/pg0`).
The rows are also kept in the Trainer's resume folder, so a resumed Trainer's file holds every
epoch. At the end of training `results.png` draws the curves, ultralytics' grid, the best
epoch marked.
"""

from __future__ import annotations

import csv
import io
import json
import os

import keras
import numpy as np
import tensorflow as tf

from vocdet.components.trainer import RESULTS_CSV_FILE as CSV_FILE, RESULTS_PLOT_FILE as PLOT_FILE
STATE_FILE = "results.json"
# CSV column <- Keras log name (Throughput, Validation and Keras itself write them).
COLUMNS = {
    "epoch": "epoch",
    "time": "epoch_seconds",
    "train/loss": "loss",
    "train/box_loss": "box_loss",
    "train/classification_loss": "classification_loss",
    "val/loss": "val_loss",
    "val/box_loss": "val_box_loss",
    "val/classification_loss": "val_classification_loss",
    "metrics/mAP50-95(B)": "val_AP",
    "metrics/mAP50(B)": "val_AP50",
    "metrics/mAP75(B)": "val_AP75",
    "metrics/AR100(B)": "val_AR100",
    "lr/pg0": "learning_rate",
    "images_per_s": "images_per_s",
    "val/time": "val_seconds",
}
# The grid of results.png: (column, title), ultralytics' order (losses, then metrics).
PANELS = (
    ("train/box_loss", "train box loss"),
    ("train/classification_loss", "train classification loss"),
    ("train/loss", "train loss"),
    ("metrics/mAP50(B)", "val mAP@0.5"),
    ("val/box_loss", "val box loss"),
    ("val/classification_loss", "val classification loss"),
    ("val/loss", "val loss"),
    ("metrics/mAP50-95(B)", "val mAP@[.5:.95]"),
)


class ResultsLog(keras.callbacks.Callback):
    """Appends each epoch's logs (and the learning rate) to `results.csv`; resumable through `state_dir`."""

    def __init__(self, run_dir: str, state_dir: str):
        super().__init__()
        self.run_dir, self.state_dir = run_dir, state_dir
        self.rows: list[dict] = []
        self._started = False

    def on_train_begin(self, logs=None):
        path = os.path.join(self.state_dir, STATE_FILE)
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as handle:
                self.rows = json.loads(handle.read())

    def on_epoch_begin(self, epoch, logs=None):
        if not self._started:
            # Keras resumes at `epoch` (0: afresh): rows from that epoch on are trained again.
            self.rows = [row for row in self.rows if row["epoch"] <= epoch]
            self._started = True

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{name: float(value) for name, value in (logs or {}).items()}}
        row.setdefault("learning_rate", _learning_rate(self.model.optimizer))
        self.rows = [kept for kept in self.rows if kept["epoch"] < epoch + 1] + [row]
        tf.io.gfile.makedirs(self.state_dir)
        partial = os.path.join(self.state_dir, STATE_FILE + ".partial")
        with tf.io.gfile.GFile(partial, "w") as handle:
            handle.write(json.dumps(self.rows))
        tf.io.gfile.rename(partial, os.path.join(self.state_dir, STATE_FILE), overwrite=True)
        write_csv(self.rows, os.path.join(self.run_dir, CSV_FILE))


def clear_state(state_dir: str) -> None:
    path = os.path.join(state_dir, STATE_FILE)
    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def _learning_rate(optimizer) -> float:
    """The optimizer's current rate (a schedule's value at the current step)."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def write_csv(rows: list[dict], path: str) -> None:
    """One line per epoch, ultralytics' columns; empty where a value was not logged that epoch."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            [_format(row.get(log)) if column != "epoch" else row["epoch"] for column, log in COLUMNS.items()]
        )
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(buffer.getvalue())


def _format(value) -> str:
    return "" if value is None else f"{value:.6g}"


def read_csv(path: str) -> list[dict]:
    """`results.csv` back: {column: float or None} per epoch."""
    with tf.io.gfile.GFile(path) as handle:
        return [
            {column: (float(value) if value != "" else None) for column, value in row.items()}
            for row in csv.DictReader(io.StringIO(handle.read()))
        ]


def plot(rows: list[dict], path: str, best_epoch: int | None, monitor_column: str | None) -> None:
    """ultralytics' results.png: a 2 x 4 grid of curves by epoch, the best epoch marked in each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = [{column: row.get(log) for column, log in COLUMNS.items()} for row in rows]
    figure, axes = plt.subplots(2, 4, figsize=(12, 6))
    for axis, (column, title) in zip(axes.ravel(), PANELS):
        points = [(row["epoch"], row[column]) for row in table if row[column] is not None]
        if points:
            epochs, values = np.array(points).T
            axis.plot(epochs, values, marker=".", markersize=6, linewidth=1.5, color="#1f4e9c")
            best = [value for epoch, value in points if epoch == best_epoch]
            if best_epoch is not None:
                axis.axvline(best_epoch, color="#aa3333", linestyle="--", linewidth=1)
            if best:
                axis.plot([best_epoch], best, marker="*", markersize=12, color="#aa3333",
                          label=f"best epoch {best_epoch}: {best[0]:.3f}")  # fmt: skip
                axis.legend(fontsize=7, frameon=False)
        else:
            axis.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axis.transAxes, color="#777777")
        axis.set_title(title + (" (monitored)" if column == monitor_column else ""), fontsize=10)
        axis.set_xlabel("epoch", fontsize=8)
        axis.tick_params(labelsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=100, format="png")
    plt.close(figure)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(buffer.getvalue())


def column_of(log_name: str) -> str | None:
    """The CSV column of a Keras log name (`val_AP50` -> `metrics/mAP50(B)`)."""
    return next((column for column, log in COLUMNS.items() if log == log_name), None)
