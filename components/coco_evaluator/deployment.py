"""How to deploy the model, beside how good it is: the cut, the confusions, the errors, the tuning.

`analyse` matches the detections once at IoU 0.5 (`matching`) and derives the operating point
(`operating_point`), the confusion matrix at the model's recommended threshold, or at the
F1-optimal one for detections without a model (`confusion`), and TIDE's error breakdown (`tide`).
`flat_metrics` names the numbers a dashboard compares run by run (`operating/...`, `tide/...`);
`markdown` is the report's deployment sections. The model's threshold and its tuning record come
from the SavedModel (`read_tuning_record`): chosen by the Trainer on its tuning splits, never on
the split that scores the model, and the report says which split did what.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from vocdet.components import features
from vocdet.components.coco_evaluator import confusion, matching, operating_point, tide

MODEL_THRESHOLD = "model"  # the cut came from the model (its recommended_min_score)
BEST_THRESHOLD = "F1-optimal on these detections"  # no model threshold: the best cut of the scored data itself


def read_tuning_record(saved_model_dir: str) -> dict | None:
    """The Trainer's tuning record in the SavedModel's assets.extra/, or None (a model from before it)."""
    path = os.path.join(saved_model_dir, features.ASSETS_EXTRA_DIR, features.TUNING_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def analyse(ground_truth: dict, detections: list[dict], class_names: list[str], model_threshold: float | None) -> dict:
    """The operating point, the confusion matrix and the error breakdown, as metrics.json keeps them."""
    matches = matching.match(ground_truth, detections, len(class_names))
    point = operating_point.operating_point(matches, class_names, model_threshold)
    threshold = model_threshold if model_threshold is not None else operating_point.rounded_down(point.best.threshold)
    matrix = confusion.confusion_matrix(matches, threshold)
    return {
        "operating_point": {
            **point.to_dict(),
            "threshold": threshold,
            "threshold_from": MODEL_THRESHOLD if model_threshold is not None else BEST_THRESHOLD,
            "at_threshold": (point.at_model_threshold or point.best).to_dict(),
        },
        "confusion_matrix": {
            "classes": list(class_names) + ["background"],
            "rows": "predicted",
            "columns": "true",
            "threshold": threshold,
            "iou_threshold": confusion.IOU_THRESHOLD,
            "counts": matrix.tolist(),
            "top_confusions": confusion.top_confusions(matrix, class_names),
        },
        "errors": tide.breakdown(matches),
    }


def flat_metrics(analysis: dict) -> dict[str, float]:
    """The deployment numbers by name, for metrics.json's `metrics` and KFP's Metrics artefact."""
    point = analysis["operating_point"]
    at = point["at_threshold"]
    flat = {
        "operating/min_score": point["threshold"],
        "operating/precision": at["precision"],
        "operating/recall": at["recall"],
        "operating/f1": at["f1"],
        "operating/best_min_score": point["best"]["threshold"],
        "operating/best_f1": point["best"]["f1"],
    }
    for kind, row in analysis["errors"]["errors"].items():
        flat[f"tide/{kind}_dAP50"] = row["dAP50"]
    return flat


def markdown(analysis: dict, tuning: dict | None, scored_on: str, pictures: dict[str, str]) -> list[str]:
    """The report's sections: splits, the cut, the decoder sweep, per-class cuts, confusions, errors."""
    point, errors = analysis["operating_point"], analysis["errors"]
    at, best = point["at_threshold"], point["best"]
    lines = ["## How to deploy it", ""]
    if tuning:
        tuned_on = f"{'+'.join(tuning['splits'])} ({tuning['images']} images, {tuning['objects']} objects)"
        lines += [
            f"- **Recommended min score {point['threshold']:.3f}** (the model's `{features.RECOMMENDED_MIN_SCORE}`, "
            f"F1-optimal on {tuned_on}): on {scored_on}, precision {at['precision']:.3f}, recall {at['recall']:.3f}, "
            f"F1 {at['f1']:.3f}.",
            f"- Decoder: NMS IoU {tuning['nms_iou_threshold']:.2f}, chosen by {tuning['metric']} on {tuned_on}.",
            f"- Splits: the decoder and the threshold were tuned on **{'+'.join(tuning['splits'])}**; "
            f"the model is scored on **{scored_on}**, which tuned nothing.",
        ]
    elif point["threshold_from"] == MODEL_THRESHOLD:
        lines += [f"- Min score {point['threshold']:.3f} (the model's, untuned): precision {at['precision']:.3f}, "
                  f"recall {at['recall']:.3f}, F1 {at['f1']:.3f} on {scored_on}."]  # fmt: skip
    else:
        lines += [f"- **Min score {point['threshold']:.3f}**, F1-optimal on these detections themselves "
                  f"(tuned and scored on the same data, so optimistic): precision {at['precision']:.3f}, "
                  f"recall {at['recall']:.3f}, F1 {at['f1']:.3f}."]  # fmt: skip
    if point["threshold_from"] == MODEL_THRESHOLD:
        lines.append(
            f"- For information, the F1-optimal cut on {scored_on} itself is {best['threshold']:.3f} "
            f"(P {best['precision']:.3f}, R {best['recall']:.3f}, F1 {best['f1']:.3f}); choosing it there would "
            "overstate the score."
        )
    lines += ["", "Precision, recall and F1 by score threshold, at IoU 0.5 (COCO's matching, difficult objects ignored):", ""]
    lines += [f"![{name}]({file})" for name, file in pictures.items() if name != "confusion matrix" and name != "errors"]
    if tuning:
        metric = tuning["metric"]
        lines += ["", "### Decoder sweep", "", f"| NMS IoU | {metric} |", "|---|---|"]
        for row in tuning["sweep"]:
            chosen = row["nms_iou_threshold"] == tuning["nms_iou_threshold"]
            value = f"**{row[metric]:.4f}** (chosen)" if chosen else f"{row[metric]:.4f}"
            lines.append(f"| {row['nms_iou_threshold']:.2f} | {value} |")
    lines += ["", "### Per class", "", "| class | objects | P at the cut | R at the cut | F1-optimal cut | its F1 |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for name, cut in point["per_class_best"].items():
        at_cut, objects = point["per_class_at_cut"][name], point["objects"].get(name, 0)
        lines.append(
            f"| {name} | {objects} | {at_cut['precision']:.3f} | {at_cut['recall']:.3f} | "
            f"{cut['threshold']:.3f} | {cut['f1']:.3f} |"
            if objects else f"| {name} | 0 | - | - | - | - |"
        )
    matrix = analysis["confusion_matrix"]
    lines += ["", "### Confusions", "",
              f"At min score {matrix['threshold']:.3f}, detections and objects matched whatever their class at IoU >= "
              f"{matrix['iou_threshold']}; columns are true classes, normalised (the diagonal is recall).", ""]  # fmt: skip
    if matrix["top_confusions"]:
        lines += ["| true | predicted as | objects | share of the true class |", "|---|---|---|---|"]
        lines += [f"| {c['true']} | {c['predicted']} | {c['objects']} | {c['share_of_true']:.3f} |" for c in matrix["top_confusions"]]
    else:
        lines.append("No object is predicted as another class at this cut.")
    if "confusion matrix" in pictures:
        lines += ["", f"![confusion matrix]({pictures['confusion matrix']})"]
    lines += ["", "### Where the errors come from (TIDE)", "",
              "Each false positive at IoU 0.5, at every score, gets one kind; an object nobody found, and no "
              "Loc or Cls error points at, is missed. dAP50: how much mAP@0.5 rises if every error of that kind "
              f"alone is fixed (from {errors['base_AP50']:.4f}).", "",
              "| error | what | count | dAP50 |", "|---|---|---|---|"]  # fmt: skip
    for kind in tide.ERRORS:
        row = errors["errors"][kind]
        lines.append(f"| {tide.LABELS[kind]} | {_ERROR_MEANING[kind]} | {row['count']} | {row['dAP50']:.4f} |")
    lines += [
        f"| all false positives | removed | | {errors['special']['false_positives']:.4f} |",
        f"| all missed objects | found | | {errors['special']['false_negatives']:.4f} |",
    ]
    if "errors" in pictures:
        lines += ["", f"![errors]({pictures['errors']})"]
    return lines + [""]


_ERROR_MEANING = {
    tide.CLS: "right place, wrong class",
    tide.LOC: "right class, boxed badly (IoU 0.1-0.5)",
    tide.BOTH: "wrong class and boxed badly",
    tide.DUPE: "a second box on an object already found",
    tide.BKG: "nothing there (IoU <= 0.1 with every object)",
    tide.MISS: "an object no detection found",
}
