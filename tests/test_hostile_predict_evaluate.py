"""`vocdet predict` and `vocdet evaluate` on hostile inputs (issue 33): never hang, never score silently wrong.

predict: a FIFO, a device or a dangling link is one "skipped" line and the other images are still
predicted; `**` over `-> .` links ends and lists each image once; an image file too large in bytes
is refused from its size. evaluate: NaN boxes, repeated ids, booleans where numbers are due, ids
that are not whole numbers, no ground truth, deep nesting, FIFOs and files over the limits are each
one line naming the file and the entry. Everything that could block runs in a subprocess with a timeout.
"""

import json
import os
import subprocess
import sys
import time

import pytest
from PIL import Image

from vocdet.components.voc_example_gen import convert
from vocdet.components.coco_evaluator import coco_files
from vocdet.pipeline import cli
from vocdet.pipeline.tools import predict

VOCDET = os.path.join(os.path.dirname(sys.executable), "vocdet")


def _run(*command, cwd, timeout=60):
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _error_lines(stderr: str) -> list[str]:
    """stderr's `vocdet <cmd>: error:` lines, after checking there is no traceback."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if ": error: " in line]


def _image(path, size=(32, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


@pytest.fixture
def hostile_folder(tmp_path):
    """dir/ with two images, a FIFO, a device link and a dangling link named as images, two `-> .` loops."""
    folder = tmp_path / "dir"
    _image(folder / "a.jpg")
    _image(folder / "sub" / "b.png")
    os.mkfifo(folder / "fifo.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (folder / "loop").symlink_to(".")
    (folder / "sub" / "loop").symlink_to(".")
    return folder


# --- predict: input expansion and reading (the library, each bounded by a subprocess) ---


def _in_subprocess(code: str, cwd) -> object:
    """The JSON `code` prints, run in a fresh interpreter that is killed if it blocks."""
    result = _run(sys.executable, "-c", f"import json\nfrom vocdet.pipeline.tools import predict\n{code}", cwd=cwd, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_recursive_glob_over_two_self_links_ends_and_lists_each_image_once(hostile_folder, tmp_path):
    started = time.time()
    listed = _in_subprocess("print(json.dumps(predict.expand_inputs(['dir/**/*.jpg', 'dir/**/*.png', 'dir/a.jpg'])))", tmp_path)
    # Non-folders are listed whatever they are, to be reported; each real file once, by its own path.
    assert listed == ["dir/a.jpg", "dir/fifo.jpg", "dir/gone.jpg", "dir/zero.jpg", "dir/sub/b.png"]
    assert time.time() - started < 30


def test_a_folder_with_a_fifo_lists_it_and_reading_it_is_one_skipped_line(hostile_folder, tmp_path):
    said = _in_subprocess(
        "said = {}\n"
        "for path in predict.expand_inputs(['dir']):\n"
        "    try:\n"
        "        said[path] = 'read %dx%d' % predict.read_image(path, 10**6).size\n"
        "    except predict.PredictError as error:\n"
        "        said[path] = str(error)\n"
        "print(json.dumps(said))",
        tmp_path,
    )
    assert said == {
        "dir/a.jpg": "read 32x24",
        "dir/fifo.jpg": "dir/fifo.jpg: is a FIFO (named pipe), not a regular file; only regular files are read; skipped",
        "dir/gone.jpg": "dir/gone.jpg: no such file (or a link to a missing file); skipped",
        "dir/zero.jpg": "dir/zero.jpg: is a character device, not a regular file; only regular files are read; skipped",
    }


def test_an_image_file_too_large_in_bytes_is_refused_from_its_size(tmp_path):
    big = tmp_path / "huge.tif"
    with open(big, "wb") as handle:  # sparse: its size says 2 MB over the limit, nothing is written
        handle.truncate(convert.image_bytes_limit(1000) + 2_000_000)
    for refuse in (predict.check_input, predict.read_image):
        with pytest.raises(predict.PredictError) as refused:
            refuse(str(big), 1000)
        assert str(refused.value) == (
            f"{big}: 66.0 MB, above the limit of 64.0 MB (8 bytes a pixel of --max-image-pixels, at least 64.0 MB); skipped"
        )
    assert convert.image_bytes_limit(50_000_000) == 400_000_000  # the default, 50 MP: ingest's limit


def test_outputs_of_images_with_the_same_stem_do_not_overwrite_each_other():
    assert predict.output_stems(["a/x.jpg", "b/x.jpg", "x.PNG", "x-2.jpg", "y.jpg"]) == {
        "a/x.jpg": "x", "b/x.jpg": "x-2", "x.PNG": "x-3", "x-2.jpg": "x-2-2", "y.jpg": "y",
    }  # fmt: skip


def test_cli_refuses_a_fifo_before_loading_any_model(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"not a model: loading it would fail")
    os.mkfifo(tmp_path / "photo.jpg")
    started = time.time()
    result = _run(VOCDET, "predict", "--model", str(model), "photo.jpg", "--out", "out", cwd=tmp_path)
    assert result.returncode == 1
    assert _error_lines(result.stderr) == [
        "vocdet predict: error: photo.jpg: is a FIFO (named pipe), not a regular file; only regular files are read; skipped"
    ]
    assert time.time() - started < 30 and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A SavedModel with vocdet's serving signature that finds one `cat` in any image: predict's plumbing, no training."""
    import tensorflow as tf

    class OneCat(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serve(self, images):
            batch = tf.shape(images)[0]
            return {
                "num_detections": tf.fill([batch], 1),
                "detection_boxes": tf.tile(tf.constant([[[2.0, 2.0, 12.0, 10.0]]]), [batch, 1, 1]),
                "detection_class_names": tf.fill([batch, 1], "cat"),
                "detection_scores": tf.fill([batch, 1], 0.9),
            }

    folder = str(tmp_path_factory.mktemp("tiny-model"))
    module = OneCat()
    tf.saved_model.save(module, folder, signatures={"serving_default": module.serve})
    return folder


def test_cli_predicts_the_images_and_skips_the_rest_over_self_links(hostile_folder, tmp_path, tiny_model):
    result = _run(
        VOCDET, "predict", "--model", tiny_model, "dir/**/*.jpg", "dir/**/*.png", "dir/sub/b.png", "--out", "out",
        "--min-score", "0", cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert sorted(_error_lines(result.stderr)) == [
        f"vocdet predict: error: dir/{name}; skipped"
        for name in (
            "fifo.jpg: is a FIFO (named pipe), not a regular file; only regular files are read",
            "gone.jpg: no such file (or a link to a missing file)",
            "zero.jpg: is a character device, not a regular file; only regular files are read",
        )
    ]
    predicted = [line for line in result.stdout.splitlines() if "detections ->" in line]
    assert predicted == ["dir/a.jpg: 1 detections -> out/a.png", "dir/sub/b.png: 1 detections -> out/b.png"]
    assert json.loads((tmp_path / "out" / "b.json").read_text())["detections"][0]["class_name"] == "cat"


# --- evaluate ---

GT = {
    "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [30, 30, 20, 20]},
    ],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
}
DETECTION = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}


def _with(section, index, **changes):
    """GT with one entry of one section changed (a deep enough copy)."""
    changed = json.loads(json.dumps(GT))
    changed[section][index].update(changes)
    return changed


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))  # json writes NaN, Infinity
    return str(path)


NESTED = "[" * 100_000 + "]" * 100_000

CASES = {
    "nan-detection": (GT, [DETECTION, {**DETECTION, "bbox": [float("nan"), 10, 20, 20]}],
                      "dt.json: detection 1 bbox has a non-finite value (nan): [nan, 10, 20, 20]"),
    "infinite-detection": (GT, [{**DETECTION, "bbox": [10, 10, float("inf"), 20]}],
                           "dt.json: detection 0 bbox has a non-finite value (inf): [10, 10, inf, 20]"),
    "nan-ground-truth": (_with("annotations", 1, bbox=[30, 30, 20, float("nan")]), [DETECTION],
                         "gt.json: annotations[1] bbox has a non-finite value (nan): [30, 30, 20, nan]"),
    "duplicate-category-id": (_with("categories", 1, id=1), [DETECTION],
                              "gt.json: categories[1] has id 1, as categories[0] does; category ids must be unique"),
    "duplicate-category-name": (_with("categories", 1, name="cat"), [DETECTION],
                                "gt.json: categories[1] has the name 'cat', as categories[0] does; category names must be unique"),
    "duplicate-image-id": (_with("images", 1, id=1), [DETECTION],
                           "gt.json: images[1] has id 1, as images[0] does; image ids must be unique"),
    "duplicate-annotation-id": (_with("annotations", 1, id=1), [DETECTION],
                                "gt.json: annotations[1] has id 1, as annotations[0] does; annotation ids must be unique"),
    "boolean-score": (GT, [{**DETECTION, "score": True}], "dt.json: detection 0 score is not a number: True"),
    "boolean-in-box": (GT, [{**DETECTION, "bbox": [10, False, 20, 20]}],
                       "dt.json: detection 0 bbox must be [x, y, width, height] numbers, got [10, False, 20, 20]"),
    "boolean-image-id": (GT, [{**DETECTION, "image_id": True}], "dt.json: detection 0 image_id must be a whole number, got True"),
    "list-image-id": (GT, [{**DETECTION, "image_id": [1]}], "dt.json: detection 0 image_id must be a whole number, got [1]"),
    "float-image-id": (_with("images", 0, id=1.5), [DETECTION], "gt.json: images[0] id must be a whole number, got 1.5"),
    "object-category-id": (_with("categories", 0, id={"id": 1}), [DETECTION],
                           "gt.json: categories[0] id must be a whole number, got {'id': 1}"),
    "null-category-name": (_with("categories", 0, name=None), [DETECTION],
                           "gt.json: categories[0] name must be a non-empty string, got None"),
    "boolean-iscrowd": (_with("annotations", 0, iscrowd=True), [DETECTION],
                        "gt.json: annotations[0] iscrowd must be 0 or 1, got True"),
    "nan-area": (_with("annotations", 0, area=float("nan")), [DETECTION],
                 "gt.json: annotations[0] area must be a number >= 0, got nan"),
    "no-annotations": ({**GT, "annotations": []}, [DETECTION],
                       "gt.json: no annotations, so no object to score against: every AP would be undefined"),
    "only-crowd": ({**GT, "annotations": [{**a, "iscrowd": 1} for a in GT["annotations"]]}, [DETECTION],
                   "gt.json: only iscrowd annotations (all ignored), so no object to score against"),
    "unknown-image": (GT, [{**DETECTION, "image_id": 9}], "dt.json: detection 0 is for image_id 9, which"),
    "unknown-category": (GT, [{**DETECTION, "category_id": 9}], "dt.json: detection 0 has category_id 9, which"),
    "nested-ground-truth": (NESTED, [DETECTION], "gt.json: JSON nested too deeply to read"),
    "nested-detection": (GT, '[{"image_id": 1, "bbox": ' + NESTED + "}]", "dt.json: JSON nested too deeply to read"),
    "detections-not-json": (GT, '[{"image_id": 1}, oops]', "dt.json: not valid JSON (Expecting value: line 1 column 19"),
}  # fmt: skip


@pytest.mark.parametrize("gt, dt, message", CASES.values(), ids=CASES.keys())
def test_evaluate_refuses_each_in_one_line_naming_file_and_entry(tmp_path, capsys, gt, dt, message):
    gt_path, dt_path = _write(tmp_path, "gt.json", gt), _write(tmp_path, "dt.json", dt)
    assert cli.main(["evaluate", "--gt", gt_path, "--dt", dt_path, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"vocdet evaluate: error: {tmp_path}/") and message in error and "\n" not in error, error
    assert not (tmp_path / "out").exists()


def test_evaluate_still_scores_a_good_pair_and_no_detections(tmp_path, capsys):
    gt = _write(tmp_path, "gt.json", GT)
    both = [DETECTION, {**DETECTION, "image_id": 2, "category_id": 2, "bbox": [30, 30, 20, 20]}]
    for detections, ap in ((both, "1.0000"), ([], "0.0000")):
        dt = _write(tmp_path, "dt.json", detections)
        assert cli.main(["evaluate", "--gt", gt, "--dt", dt, "--out", str(tmp_path / "out")]) == 0
        assert f"COCO mAP@[.5:.95] {ap}" in capsys.readouterr().out


@pytest.mark.parametrize("which", ["gt", "dt"])
def test_evaluate_refuses_a_fifo_without_blocking(tmp_path, which):
    files = {"gt": _write(tmp_path, "gt.json", GT), "dt": _write(tmp_path, "dt.json", [DETECTION])}
    os.remove(files[which])
    os.mkfifo(files[which])
    result = _run(VOCDET, "evaluate", "--gt", files["gt"], "--dt", files["dt"], "--out", "out", cwd=tmp_path)
    assert result.returncode == 2
    assert _error_lines(result.stderr) == [
        f"vocdet evaluate: error: {files[which]}: is a FIFO (named pipe), not a regular file; only regular files are read"
    ]


def test_evaluate_refuses_a_file_over_the_byte_limit_before_reading_it(tmp_path, capsys):
    gt = _write(tmp_path, "gt.json", GT)
    dt = tmp_path / "dt.json"
    with open(dt, "wb") as handle:  # sparse: 1 GB by its size, nothing to read
        handle.truncate(1_000_000_000)
    assert coco_files.MAX_JSON_BYTES < 1_000_000_000
    started = time.time()
    assert cli.main(["evaluate", "--gt", gt, "--dt", str(dt), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"vocdet evaluate: error: {dt}: 1.0 GB, above the limit of 256.0 MB (raise it with --max-json-bytes)"
    )
    assert time.time() - started < 5


def test_evaluate_refuses_two_million_detections_within_seconds_and_bounded_memory(tmp_path):
    """Refused at the first detection past --max-detections: memory follows the limit, not the file (json.load
    of this file alone takes about 1 GB and 10 s). Max RSS measured in a wrapper process, for this command alone."""
    gt = _write(tmp_path, "gt.json", GT)
    one = json.dumps(DETECTION)
    dt = _write(tmp_path, "dt.json", "[" + ", ".join([one] * 2_000_000) + "]")
    assert os.path.getsize(dt) >= 150_000_000
    measure = (
        "import resource, subprocess, sys\n"
        "result = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(result.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
        "print(result.stderr, file=sys.stderr)\n"
    )
    started = time.time()
    result = _run(sys.executable, "-c", measure, VOCDET, "evaluate", "--gt", gt, "--dt", dt, "--out", "out",
                  "--max-detections", "100000", cwd=tmp_path)  # fmt: skip
    seconds = time.time() - started
    returncode, max_rss = map(int, result.stdout.split())
    assert returncode == 2
    assert _error_lines(result.stderr) == [
        f"vocdet evaluate: error: {dt}: more than 100,000 detections, the limit; raise it with --max-detections, "
        "or keep the top 100 detections an image, as COCO scores them"
    ]
    # The file read whole and decoded to text (2 x 170 MB), the interpreter, and 100,000 detections.
    assert max_rss < 600_000_000, max_rss
    assert seconds < 30, seconds
