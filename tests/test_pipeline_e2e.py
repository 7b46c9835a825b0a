"""The whole pipeline through `vocdet run` with TFX's LocalDagRunner, on a tiny dataset."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.images import png_header_only
from vocdet.pipeline import cli
from vocdet.pipeline import config as config_lib
from vocdet.pipeline.local import runner as local_runner
from vocdet.pipeline.local import summary as run_summary
from tests.serving_probe import LOAD_AND_PREDICT


@pytest.mark.e2e
def test_evaluation_has_coco_metrics_in_range(pipeline_run):
    _, summary = pipeline_run
    for name in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"):
        assert 0.0 <= summary.metrics[f"coco/{name}"] <= 1.0, name
    assert summary.num_eval_images == 16  # the 40-image sample: 24 trainval, 16 test
    assert summary.ingest_summary["train"]["written"] + summary.ingest_summary["validation"]["written"] == 24
    assert summary.ingest_summary["train"]["rejected"] == 0


@pytest.mark.e2e
def test_blessed_model_is_pushed_in_tf_serving_layout(pipeline_run):
    config, summary = pipeline_run
    assert summary.blessed
    versions = glob.glob(os.path.join(config.serving_dir, config.push.model_name, "*", "saved_model.pb"))
    assert len(versions) == 1
    assert os.path.dirname(versions[0]) == summary.pushed_model_dir
    assert os.path.basename(summary.pushed_model_dir).isdigit()


@pytest.mark.e2e
def test_pushed_model_loads_in_a_fresh_process_and_detects(pipeline_run, small_voc_root):
    _, summary = pipeline_run
    image_path = os.path.join(small_voc_root, "VOC2007", "JPEGImages", "000001.jpg")
    completed = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, summary.pushed_model_dir, image_path],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["decoded_images_signature_agrees"]
    assert result["num_detections"] > 0
    from PIL import Image

    width, height = Image.open(image_path).size
    for x0, y0, x1, y1 in result["boxes"]:  # in the original image's pixels
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert set(result["names"]) <= set(config_lib.demo().data.class_names)
    # The demo starts from the shipped sample checkpoint: a confident box of the right class on an object.
    from vocdet.components import voc_format

    with open(os.path.join(small_voc_root, "VOC2007", "Annotations", "000001.xml"), "rb") as handle:
        objects = voc_format.parse_annotation_xml(handle.read(), source="000001.xml").objects
    confident = [(box, name) for box, name, score in zip(result["boxes"], result["names"], result["scores"]) if score >= 0.5]
    assert any(
        name == obj.name and _iou(box, (obj.xmin - 1, obj.ymin - 1, obj.xmax, obj.ymax)) >= 0.5
        for box, name in confident
        for obj in objects
    ), (confident, [(obj.name, obj.xmin, obj.ymin, obj.xmax, obj.ymax) for obj in objects])


def _iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _data_bytes(artifact_glob):
    """Bytes of the example files (Split-*/) of the newest artefact matching the glob."""
    artifact = max(glob.glob(artifact_glob), key=lambda path: int(os.path.basename(path)))
    return sum(os.path.getsize(path) for path in glob.glob(os.path.join(artifact, "Split-*", "*")))


@pytest.mark.e2e
def test_transformed_examples_stay_compact(pipeline_run):
    """Images stay encoded: Transform's output is within 1.2x ExampleGen's."""
    config, _ = pipeline_run
    raw = _data_bytes(os.path.join(config.pipeline_root, "FileBasedExampleGen", "examples", "*"))
    transformed = _data_bytes(os.path.join(config.pipeline_root, "Transform", "transformed_examples", "*"))
    assert raw > 0 and transformed <= 1.2 * raw, (transformed, raw)


@pytest.mark.e2e
def test_data_profile_comes_from_transform_analyzers(pipeline_run, small_voc_root):
    _, summary = pipeline_run
    assert summary.data_profile and os.path.exists(summary.data_profile)
    with open(os.path.join(os.path.dirname(summary.data_profile), "data_profile.json")) as handle:
        profile = json.load(handle)
    from vocdet.components import voc_format

    expected = {}
    for split in ("train", "val"):  # Transform analyses the training splits
        with open(os.path.join(small_voc_root, "VOC2007", "ImageSets", "Main", f"{split}.txt")) as handle:
            for image_id in handle.read().split():
                with open(os.path.join(small_voc_root, "VOC2007", "Annotations", f"{image_id}.xml"), "rb") as xml:
                    for obj in voc_format.parse_annotation_xml(xml.read()).objects:
                        expected[obj.name] = expected.get(obj.name, 0) + 1
    assert profile["histograms"]["class_objects"] == expected
    assert profile["anchors"]["boxes"] == sum(expected.values())


@pytest.mark.e2e
def test_evaluation_report_is_complete(pipeline_run):
    from vocdet.components.coco_evaluator import report

    _, summary = pipeline_run
    with open(os.path.join(summary.evaluation_dir, report.METRICS_FILE)) as handle:
        metrics = json.load(handle)
    assert 0.0 <= metrics["metrics"]["voc/mAP50_11point"] <= 1.0
    assert set(metrics["per_class"]) == set(config_lib.demo().data.class_names)
    with open(os.path.join(summary.evaluation_dir, report.REPORT_FILE)) as handle:
        text = handle.read()
    assert "COCO mAP@[.5:.95]" in text and "| aeroplane |" in text and "blessed" in text
    from PIL import Image

    for name in (report.PR_CURVES_FILE, report.GALLERY_FILE, "F1_curve.png", "P_curve.png", "R_curve.png",
                 "confusion_matrix.png", "errors.png"):  # fmt: skip
        with Image.open(os.path.join(summary.evaluation_dir, name)) as picture:
            assert picture.width > 300 and picture.height > 200
    # How to deploy it: the model's cut (tuned on the training splits), what it gives on test, the errors.
    tuning = metrics["tuning"]
    assert tuning["splits"] == ["train", "validation"] and tuning["images"] == 24
    assert metrics["splits"] == {"tuned_on": ["train", "validation"], "scored_on": "test (16 images)"}
    assert metrics["operating_point"]["threshold"] == pytest.approx(tuning["min_score"], abs=1e-6)
    assert metrics["operating_point"]["threshold_from"] == "model"
    assert metrics["metrics"]["operating/min_score"] == pytest.approx(tuning["min_score"], abs=1e-6)
    counts = np.array(metrics["confusion_matrix"]["counts"])
    assert counts.shape == (len(config_lib.demo().data.class_names) + 1,) * 2
    assert set(metrics["errors"]["errors"]) == {"cls", "loc", "both", "dupe", "bkg", "miss"}
    assert metrics["errors"]["base_AP50"] == pytest.approx(metrics["metrics"]["coco/AP50"], abs=1e-6)
    assert "## How to deploy it" in text and "tuned on **train+validation**" in text and "### Decoder sweep" in text
    assert f"recommended min score {tuning['min_score']:.2f} (P " in "\n".join(summary.lines())


@pytest.mark.e2e
def test_serving_check_passed_before_the_push(pipeline_run):
    config, _ = pipeline_run
    checks = glob.glob(os.path.join(config.pipeline_root, "ServingCheck", "blessing", "*", "serving_check.json"))
    with open(max(checks)) as handle:
        result = json.load(handle)
    assert result["passed"] and "fresh process" in result["reason"]


@pytest.mark.e2e
def test_predict_draws_and_lists_detections_for_any_image(pipeline_run, small_voc_root, tmp_path, capsys):
    from PIL import Image

    config, _ = pipeline_run
    jpeg = os.path.join(small_voc_root, "VOC2007", "JPEGImages", "000003.jpg")
    grey = tmp_path / "grey.png"
    Image.open(jpeg).convert("L").save(grey)
    rgba = tmp_path / "wide_rgba.png"
    Image.open(jpeg).convert("RGBA").resize((901, 157)).save(rgba)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    huge = tmp_path / "huge.png"  # 13000x13000 in its header; refused before any decoding
    huge.write_bytes(png_header_only(13000, 13000))
    deep = tmp_path / "deep16.png"
    Image.fromarray((np.asarray(Image.open(jpeg).convert("L"), dtype=np.uint16) * 257)).save(deep)
    out = tmp_path / "out"
    base = os.path.join(config.serving_dir, config.push.model_name)
    inputs = [jpeg, str(grey), str(huge), str(rgba), str(broken), str(deep)]
    code = cli.main(["predict", "--model", base, *inputs, "--out", str(out), "--min-score", "0"])
    assert code == 1  # two inputs failed, the others were processed
    err = capsys.readouterr().err
    assert f"{broken}: cannot read image" in err and err.count("\n") == 2
    assert f"{huge}: image is 13000x13000 (169 megapixels), above the limit of 50 (--max-image-pixels); skipped" in err
    for stem, path in (("000003", jpeg), ("grey", str(grey)), ("wide_rgba", str(rgba)), ("deep16", str(deep))):
        with open(out / f"{stem}.json") as handle:
            listing = json.load(handle)
        width, height = Image.open(path).size
        assert (listing["width"], listing["height"]) == (width, height)
        assert listing["detections"], stem
        for detection in listing["detections"]:
            x0, y0, x1, y1 = detection["box"]
            assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height
        assert Image.open(out / f"{stem}.png").size == (width, height)
    # Without --min-score, predict cuts at the model's recommended min score.
    assert cli.main(["predict", "--model", base, jpeg, "--out", str(tmp_path / "cut")]) == 0
    said = capsys.readouterr().out
    threshold = float(said.split("min score ")[1].split()[0])
    assert "(the model's recommended min score)" in said
    with open(tmp_path / "cut" / "000003.json") as handle:
        cut = json.load(handle)["detections"]
    with open(out / "000003.json") as handle:
        everything = json.load(handle)["detections"]
    assert [d for d in everything if d["score"] >= threshold] == cut and len(cut) < len(everything)
    # The 16-bit copy of the grey image is scaled back to the same 8-bit levels, not clipped to white:
    # the model sees the same image and gives the same detections.
    for suffix in (".json", ".png"):
        assert (out / f"deep16{suffix}").read_bytes() == (out / f"grey{suffix}").read_bytes()


@pytest.mark.e2e
def test_tfds_data_through_the_whole_pipeline_on_the_beam_runner(tfds_data_dir, tmp_path):
    output = tmp_path / "run"
    overrides = tmp_path / "tiny.yaml"
    overrides.write_text(yaml.safe_dump({"model": {"eval_confidence_threshold": 0.0}}))
    argv = ["run", "--runner", "beam", "--data", tfds_data_dir, "--output", str(output), "--config", str(overrides),
            "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "4", "--blessing-threshold", "0"]
    assert cli.main(argv) == 0
    summary = run_summary.summarize(config_lib.load("demo", str(overrides), {"output_dir": str(output)}))
    assert summary.num_eval_images == 16 and summary.pushed_model_dir
    assert summary.ingest_summary["train"]["written"] + summary.ingest_summary["validation"]["written"] == 24
    assert os.path.exists(os.path.join(summary.pushed_model_dir, "saved_model.pb"))


@pytest.mark.e2e
def test_scheduled_runs_train_on_the_newest_spans_and_warm_start(small_voc_root, tmp_path):
    """Run 1 sees span 1; span 2 arrives; run 2 ingests it and trains on spans 1 and 2.

    With --warm-start, run 1 (no blessed model yet) trains from the backbone
    weights and run 2 starts from run 1's blessed model.
    """
    import shutil

    root = tmp_path / "drops"
    shutil.copytree(os.path.join(small_voc_root, "VOC2007"), root / "span-1" / "VOC2007")
    overrides = tmp_path / "spans.yaml"
    overrides.write_text(yaml.safe_dump({"data": {"train_on_last_spans": 2}, "model": {"eval_confidence_threshold": 0.0}}))
    argv = ["run", "--spans", "--data", str(root), "--output", str(tmp_path / "run"), "--config", str(overrides),
            "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "4", "--blessing-threshold", "0", "--warm-start"]
    config = config_lib.load("demo", str(overrides), {"output_dir": str(tmp_path / "run"), "data": {"spans": True}})

    def boxes_trained_on(summary):
        with open(os.path.join(os.path.dirname(summary.data_profile), "data_profile.json")) as handle:
            return json.load(handle)["anchors"]["boxes"]

    assert cli.main(argv) == 0
    first = run_summary.summarize(config)
    assert first.blessed and first.warm_started_from is None
    first_model = max(_store(config).get_artifacts_by_type("Model"), key=lambda artifact: artifact.id).uri
    shutil.copytree(root / "span-1", root / "span-2")
    assert cli.main(argv) == 0
    second = run_summary.summarize(config)
    assert boxes_trained_on(second) == 2 * boxes_trained_on(first)
    # Run 2's Trainer consumed run 1's blessed model, whose Keras weights sit beside its SavedModel.
    assert second.warm_started_from == first_model
    from vocdet.components.trainer import warm_start

    assert os.path.exists(warm_start.weights_path(os.path.join(first_model, "Format-Serving")))


def _store(config):
    from ml_metadata.metadata_store import metadata_store

    return metadata_store.MetadataStore(local_runner.metadata_config(config))
