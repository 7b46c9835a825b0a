"""The deployment pictures, drawn as ultralytics draws its validation plots, with matplotlib.

- `F1_curve.png`, `P_curve.png`, `R_curve.png`: F1, precision and recall by score threshold,
  one thin line a class and a thick one for all classes pooled, the cut marked;
- `confusion_matrix.png`: the normalised matrix (columns: true classes, rows: predicted, plus
  background), cells written out up to 30 classes, readable at 20 and more;
- `errors.png`: TIDE's error kinds, the mAP@0.5 each costs, with their counts.
"""

from __future__ import annotations

import os

import numpy as np

from vocdet.components.coco_evaluator import confusion, tide

CURVE_FILES = {"F1": "F1_curve.png", "precision": "P_curve.png", "recall": "R_curve.png"}
CONFUSION_FILE = "confusion_matrix.png"
ERRORS_FILE = "errors.png"
_CURVE_KEYS = {"F1": "f1", "precision": "precision", "recall": "recall"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(point: dict, directory: str) -> dict[str, str]:
    """The three curves; returns {picture name: file name}."""
    plt = _pyplot()
    grid = np.array(point["grid"])
    names = [name for name in point["curves"] if name != "all"]
    written = {}
    for title, file in CURVE_FILES.items():
        key = _CURVE_KEYS[title]
        figure, axis = plt.subplots(figsize=(7, 5))
        for name in names:
            if point["objects"].get(name, 0):
                axis.plot(grid, point["curves"][name][key], linewidth=0.8, alpha=0.6,
                          label=name if len(names) <= 20 else None)  # fmt: skip
        overall = np.array(point["curves"]["all"][key])
        at = point["at_threshold"]
        axis.plot(grid, overall, linewidth=3, color="#1f4e9c",
                  label=f"all classes {at[key]:.2f} at {point['threshold']:.3f}")  # fmt: skip
        axis.axvline(point["threshold"], color="#aa3333", linestyle="--", linewidth=1)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1.02)
        axis.set_xlabel("min score (confidence threshold)")
        axis.set_ylabel(title)
        axis.set_title(f"{title} by score threshold, IoU 0.5 (cut: {point['threshold_from']})", fontsize=10)
        axis.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=7, frameon=False)
        figure.tight_layout()
        figure.savefig(os.path.join(directory, file), dpi=90)
        plt.close(figure)
        written[f"{title} curve"] = file
    return written


def plot_confusion(matrix_record: dict, path: str) -> None:
    plt = _pyplot()
    counts = np.array(matrix_record["counts"])
    share = confusion.normalized(counts)
    labels = matrix_record["classes"]
    size = len(labels)
    side = max(6.0, 0.42 * size + 2)
    figure, axis = plt.subplots(figsize=(side, side * 0.85))
    image = axis.imshow(np.where(share > 0.005, share, np.nan), cmap="Blues", vmin=0, vmax=1)
    if size <= 31:
        font = 8 if size <= 12 else 6
        for row in range(size):
            for column in range(size):
                if share[row, column] > 0.005:
                    axis.text(column, row, f"{share[row, column]:.2f}", ha="center", va="center", fontsize=font,
                              color="white" if share[row, column] > 0.6 else "black")  # fmt: skip
    axis.set_xticks(range(size), labels, rotation=90, fontsize=8)
    axis.set_yticks(range(size), labels, fontsize=8)
    axis.set_xlabel("true")
    axis.set_ylabel("predicted")
    axis.set_title(f"confusion matrix, normalised by true class (min score {matrix_record['threshold']:.3f}, "
                   f"IoU {matrix_record['iou_threshold']})", fontsize=10)  # fmt: skip
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def plot_errors(errors: dict, path: str) -> None:
    plt = _pyplot()
    kinds = list(tide.ERRORS)
    values = [errors["errors"][kind]["dAP50"] for kind in kinds]
    labels = [f"{tide.LABELS[kind]} ({errors['errors'][kind]['count']})" for kind in kinds]
    figure, axis = plt.subplots(figsize=(7, 3.2))
    bars = axis.barh(labels[::-1], values[::-1], color=["#4477aa", "#66ccee", "#228833", "#ccbb44", "#ee6677", "#aa3377"][::-1])
    for bar, value in zip(bars, values[::-1]):
        axis.text(bar.get_width() + 0.002, bar.get_y() + bar.get_height() / 2, f"{value:.3f}", va="center", fontsize=8)
    axis.set_xlim(0, max(values + [0.05]) * 1.25)
    axis.set_xlabel("dAP50: mAP@0.5 gained if every error of this kind alone were fixed")
    axis.set_title(f"where the errors come from (TIDE), base mAP@0.5 {errors['base_AP50']:.3f}; (count)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
