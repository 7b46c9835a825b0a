"""The evaluation artefact a person reads: metrics.json, report.md and two pictures.

- `metrics.json`: every number (COCO's 12, VOC mAP50 both ways, per class);
- `report.md`: the headline numbers, the blessing decision and the per-class table;
- `pr_curves.png`: VOC precision-recall curve (IoU 0.5) for every class, its AP
  in the panel's title, and "no detections" / "no objects" on empty panels;
- `gallery.png`: eval images with ground truth (green, class name) and the
  predictions at the model's recommended min score (red, class name and score),
  under a legend: the guide's `plot_bounding_box_gallery` view;
- with a deployment analysis (`deployment`): `F1_curve.png`, `P_curve.png`,
  `R_curve.png`, `confusion_matrix.png`, `errors.png` (`deployment_plots`), and
  in `metrics.json` the keys `operating_point`, `confusion_matrix`, `errors`,
  `tuning` and `splits`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

from vocdet.components import visualization
from vocdet.components.coco_evaluator import deployment, deployment_plots

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PR_CURVES_FILE = "pr_curves.png"
GALLERY_FILE = "gallery.png"

HEADLINE = (
    ("coco/AP", "COCO mAP@[.5:.95]"),
    ("coco/AP50", "COCO mAP@0.5"),
    ("coco/AP75", "COCO mAP@0.75"),
    ("coco/APs", "COCO AP small"),
    ("coco/APm", "COCO AP medium"),
    ("coco/APl", "COCO AP large"),
    ("coco/AR100", "COCO AR@100"),
    ("voc/mAP50_11point", "VOC2007 mAP@0.5 (11-point)"),
    ("voc/mAP50_area", "VOC2010+ mAP@0.5 (area)"),
)


@dataclasses.dataclass
class GalleryImage:
    """One image to draw: encoded bytes, ground truth and predictions in pixel xyxy."""

    encoded: bytes
    truth: list[tuple[list[float], str]]
    predictions: list[tuple[list[float], str, float]]


def write_report(
    directory: str,
    scores: dict,
    curves: dict,
    num_images: int,
    decision: dict | None = None,
    baseline_metrics: dict | None = None,
    gallery: list[GalleryImage] | None = None,
    gallery_min_score: float = 0.5,
    analysis: dict | None = None,
    tuning: dict | None = None,
    scored_on: str = "the evaluation data",
) -> None:
    """Writes metrics.json, report.md and the pictures; `analysis` is `deployment.analyse`'s, `tuning` the model's record."""
    os.makedirs(directory, exist_ok=True)
    content = {"num_images": num_images, **scores, "baseline_metrics": baseline_metrics}
    deployment_lines = []
    if analysis is not None:
        content["metrics"] = {**scores["metrics"], **deployment.flat_metrics(analysis)}
        content.update(analysis)
        content["tuning"] = tuning
        content["splits"] = {"tuned_on": tuning["splits"] if tuning else None, "scored_on": scored_on}
        pictures = deployment_plots.plot_curves(analysis["operating_point"], directory)
        deployment_plots.plot_confusion(analysis["confusion_matrix"], os.path.join(directory, deployment_plots.CONFUSION_FILE))
        deployment_plots.plot_errors(analysis["errors"], os.path.join(directory, deployment_plots.ERRORS_FILE))
        pictures.update({"confusion matrix": deployment_plots.CONFUSION_FILE, "errors": deployment_plots.ERRORS_FILE})
        deployment_lines = deployment.markdown(analysis, tuning, scored_on, pictures)
    with open(os.path.join(directory, METRICS_FILE), "w") as handle:
        json.dump(content, handle, indent=2, sort_keys=True)
    with open(os.path.join(directory, REPORT_FILE), "w") as handle:
        handle.write(markdown(scores, num_images, decision, baseline_metrics, has_gallery=bool(gallery),
                              deployment_lines=deployment_lines, gallery_min_score=gallery_min_score))  # fmt: skip
    plot_pr_curves(curves, scores["per_class"], os.path.join(directory, PR_CURVES_FILE))
    if gallery:
        draw_gallery(gallery, os.path.join(directory, GALLERY_FILE), min_score=gallery_min_score)


def markdown(scores: dict, num_images: int, decision: dict | None, baseline: dict | None, has_gallery: bool,
             deployment_lines: list[str] = (), gallery_min_score: float = 0.5) -> str:  # fmt: skip
    metrics = scores["metrics"]
    lines = [f"# Evaluation on {num_images} images", ""]
    if decision is not None:
        verdict = "**blessed**" if decision["blessed"] else "**not blessed**"
        lines += [f"Model {verdict}: " + "; ".join(decision["reasons"]) + ".", ""]
    lines += ["| metric | value |" + (" baseline |" if baseline else ""), "|---|---|" + ("---|" if baseline else "")]
    for key, label in HEADLINE:
        row = f"| {label} | {metrics[key]:.4f} |"
        if baseline:
            row += f" {baseline.get(key, float('nan')):.4f} |"
        lines.append(row)
    lines += [
        "",
        "## Per class",
        "",
        "| class | objects | COCO AP | COCO AP50 | VOC AP50 (11-point) | VOC AP50 (area) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in scores["per_class"].items():
        values = " | ".join(_cell(row[key]) for key in ("coco_AP", "coco_AP50", "voc_AP50_11point", "voc_AP50_area"))
        lines.append(f"| {name} | {row['objects']} | {values} |")
    lines += ["", f"![precision-recall curves]({PR_CURVES_FILE})", ""]
    lines += list(deployment_lines)
    if has_gallery:
        lines += [f"Ground truth (green) and predictions at min score {gallery_min_score:.3f} (red):", "",
                  f"![ground truth (green) and predictions (red)]({GALLERY_FILE})", ""]  # fmt: skip
    lines += ["-1 (shown as -) means the class has no objects in the evaluation data.", ""]
    return "\n".join(lines)


def plot_pr_curves(curves: dict, per_class: dict, path: str) -> None:
    """One panel per class: raw and interpolated precision over recall at IoU 0.5, AP in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_class) or list(curves) or ["(no objects)"]
    columns = min(5, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.flat[len(names) :]:
        axis.axis("off")
    for axis, name in zip(axes.flat, names):
        recall, precision = curves.get(name, (np.zeros(0), np.zeros(0)))
        row = per_class.get(name, {})
        if len(recall):
            envelope = np.maximum.accumulate(precision[::-1])[::-1]
            axis.plot(recall, precision, color="#bbbbbb", linewidth=0.8, label="precision")
            axis.step(recall, envelope, where="post", color="#4477aa", linewidth=1.5, label="interpolated (VOC)")
        else:
            empty = "no objects" if row.get("objects", 1) == 0 else "no detections"
            axis.text(0.5, 0.5, empty, ha="center", va="center", fontsize=9, color="#aa3333", transform=axis.transAxes)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1.02)
        ap = row.get("voc_AP50_area", -1)
        axis.set_title(f"{name}  AP50 {ap:.2f}" if ap >= 0 else name, fontsize=9)
        axis.tick_params(labelsize=7)
    handles = [matplotlib.lines.Line2D([], [], color="#bbbbbb", linewidth=0.8),
               matplotlib.lines.Line2D([], [], color="#4477aa", linewidth=1.5)]
    figure.legend(handles, ["precision", "interpolated precision (VOC, area = AP50)"], loc="upper center",
                  ncol=2, fontsize=8, frameon=False)
    figure.supxlabel("recall (IoU 0.5)", fontsize=9)
    figure.supylabel("precision", fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.35 / figure.get_figheight()))
    figure.savefig(path, dpi=80)
    plt.close(figure)


def draw_gallery(images: list[GalleryImage], path: str, min_score: float, tile: int = 320, columns: int = 3) -> None:
    tiles = []
    for item in images:
        image = visualization.open_image(item.encoded)
        tiles.append(visualization.draw_boxes(image, item.truth, item.predictions, scale=tile / max(image.size)))
    sheet = visualization.contact_sheet(tiles, tile=tile, columns=columns)
    visualization.legend(sheet, min_score).save(path)


def _cell(value: float) -> str:
    return "-" if value < 0 else f"{value:.3f}"
