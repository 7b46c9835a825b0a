"""`vocdet evaluate`: pycocotools' numbers for any detector's COCO files; one-line errors for bad ones."""

import json

import pytest

from vocdet.pipeline import cli
from tests.coco_cases import random_case, reference_scores


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_scores_equal_pycocotools_and_report_is_written(tmp_path, capsys):
    ground_truth, detections = random_case(5)
    expected = reference_scores(ground_truth, detections, tmp_path)
    gt = _write(tmp_path, "gt.json", ground_truth)
    dt = _write(tmp_path, "dt.json", detections)
    assert cli.main(["evaluate", "--gt", gt, "--dt", dt, "--out", str(tmp_path / "out")]) == 0
    assert f"COCO mAP@[.5:.95] {expected['AP']:.4f}" in capsys.readouterr().out
    with open(tmp_path / "out" / "metrics.json") as handle:
        metrics = json.load(handle)["metrics"]
    for name, value in expected.items():
        assert metrics[f"coco/{name}"] == pytest.approx(value, abs=1e-6)
    assert (tmp_path / "out" / "pr_curves.png").exists() and (tmp_path / "out" / "report.md").exists()


GT = {
    "images": [{"id": 1, "width": 100, "height": 100}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}],
    "categories": [{"id": 1, "name": "cat"}],
}
DETECTION = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}


@pytest.mark.parametrize(
    "gt, dt, message",
    [
        ("{not json", [DETECTION], "gt.json: not valid JSON"),
        ({"images": [], "categories": []}, [DETECTION], "gt.json: missing key 'annotations'"),
        (GT, [{**DETECTION, "image_id": 7}], "dt.json: detection 0 is for image_id 7, which"),
        (GT, [{**DETECTION, "category_id": 3}], "dt.json: detection 0 has category_id 3, which"),
        (GT, [{**DETECTION, "bbox": [10, 10, -5, 20]}], "dt.json: detection 0 bbox has a negative width or height"),
        (GT, [{"image_id": 1, "bbox": [1, 1, 2, 2], "score": 1}], "dt.json: detection 0 is missing key 'category_id'"),
        (GT, {"oops": 1}, "dt.json: expected a list of detections"),
    ],
    ids=["not-json", "missing-key", "unknown-image", "unknown-category", "negative-width", "missing-category", "not-a-list"],
)
def test_bad_files_give_one_line_naming_file_and_problem(tmp_path, capsys, gt, dt, message):
    gt_path, dt_path = _write(tmp_path, "gt.json", gt), _write(tmp_path, "dt.json", dt)
    assert cli.main(["evaluate", "--gt", gt_path, "--dt", dt_path, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error and str(tmp_path) in error


def test_predict_takes_files_folders_and_globs(tmp_path):
    from vocdet.pipeline.tools import predict

    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("b.jpg", "a.PNG", "notes.txt"):
        (folder / name).write_bytes(b"x")
    single = tmp_path / "single.jpg"
    single.write_bytes(b"x")
    paths = predict.expand_inputs([str(single), str(folder), str(tmp_path / "images" / "*.jpg")])
    assert paths == [str(single), str(folder / "a.PNG"), str(folder / "b.jpg")]  # b.jpg named twice, listed once
    with pytest.raises(predict.PredictError, match="empty: no images"):
        (tmp_path / "empty").mkdir()
        predict.expand_inputs([str(tmp_path / "empty")])


def test_writes_the_operating_point_confusions_and_errors(tmp_path, capsys):
    ground_truth, detections = random_case(7)
    out = tmp_path / "out"
    gt, dt = _write(tmp_path, "gt.json", ground_truth), _write(tmp_path, "dt.json", detections)
    assert cli.main(["evaluate", "--gt", gt, "--dt", dt, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    with open(out / "metrics.json") as handle:
        metrics = json.load(handle)
    point = metrics["operating_point"]
    assert point["threshold_from"] == "F1-optimal on these detections" and point["threshold"] == point["best"]["threshold"]
    assert f"min score {point['threshold']:.3f} (F1-optimal on these detections)" in said and "errors (TIDE, dAP50): Cls" in said
    assert len(metrics["confusion_matrix"]["counts"]) == 6  # 5 classes and background
    assert metrics["errors"]["base_AP50"] == pytest.approx(metrics["metrics"]["coco/AP50"], abs=1e-6)
    for picture in ("F1_curve.png", "P_curve.png", "R_curve.png", "confusion_matrix.png", "errors.png"):
        assert (out / picture).stat().st_size > 5000
    # A given cut: precision, recall and the confusion matrix there.
    assert cli.main(["evaluate", "--gt", gt, "--dt", dt, "--out", str(out), "--min-score", "0.9"]) == 0
    with open(out / "metrics.json") as handle:
        at = json.load(handle)["operating_point"]
    assert at["threshold"] == 0.9 and at["at_threshold"]["threshold"] == 0.9
    assert "min score 0.900 (given)" in capsys.readouterr().out


def test_predict_falls_back_to_the_display_threshold_for_a_model_without_one():
    from vocdet.components.settings import ModelConfig
    from vocdet.pipeline.tools import predict

    class OlderModel:
        structured_outputs = {"detection_boxes": None, "num_detections": None}

    assert predict.min_score(OlderModel(), None) == (
        ModelConfig.display_confidence_threshold,
        "model.display_confidence_threshold: the model has no recommended min score",
    )
    assert predict.min_score(OlderModel(), 0.3) == (0.3, "--min-score")
