"""vocdet writes over nothing it did not write itself: the schema file, and every user file around it."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from vocdet.pipeline import cli
from vocdet.pipeline.data import frozen_schema
from vocdet.pipeline.tools import claimed_folder

VOCDET = os.path.join(os.path.dirname(sys.executable), "vocdet")


def test_freeze_schema_never_overwrites_a_users_file(tmp_path):
    theirs = tmp_path / "schema.pbtxt"
    theirs.write_text("feature { name: 'mine' }\n")
    with pytest.raises(frozen_schema.FreezeError, match="exists and was not written by `vocdet freeze-schema`; not overwritten"):
        frozen_schema.freeze(str(tmp_path / "outputs"), str(theirs))
    assert theirs.read_text() == "feature { name: 'mine' }\n"


def test_freeze_schema_refuses_a_fifo_or_a_folder_at_once(tmp_path):
    fifo = tmp_path / "fifo.pbtxt"
    os.mkfifo(fifo)
    with pytest.raises(frozen_schema.FreezeError, match="is a FIFO .named pipe., not a regular file"):
        frozen_schema.freeze(str(tmp_path / "outputs"), str(fifo))
    with pytest.raises(frozen_schema.FreezeError, match="is a folder, not a regular file"):
        frozen_schema.freeze(str(tmp_path / "outputs"), str(tmp_path))


def test_freeze_schema_replaces_its_own_earlier_file(tmp_path):
    ours = tmp_path / "schema.pbtxt"
    ours.write_text(f"{frozen_schema.FROZEN_HEADER} from somewhere\n")
    with pytest.raises(frozen_schema.FreezeError, match="no ML Metadata store"):  # past the check: on to the store
        frozen_schema.freeze(str(tmp_path / "outputs"), str(ours))


def _coco_pair(folder):
    gt = {"images": [{"id": 1, "width": 100, "height": 100}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0}],
          "categories": [{"id": 1, "name": "dog"}]}
    dt = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9}]
    (folder / "gt.json").write_text(json.dumps(gt))
    (folder / "dt.json").write_text(json.dumps(dt))
    return str(folder / "gt.json"), str(folder / "dt.json")


def test_evaluate_writes_only_into_a_folder_of_its_own(tmp_path, capsys):
    gt, dt = _coco_pair(tmp_path)
    theirs = tmp_path / "notes"
    theirs.mkdir()
    (theirs / "report.md").write_text("my notes")
    assert cli.main(["evaluate", "--gt", gt, "--dt", dt, "--out", str(theirs)]) == 2
    assert "--out holds 1 entries vocdet evaluate did not write (e.g. report.md)" in capsys.readouterr().err
    assert os.listdir(theirs) == ["report.md"] and (theirs / "report.md").read_text() == "my notes"
    assert cli.main(["evaluate", "--gt", gt, "--dt", dt, "--out", str(tmp_path)]) == 2  # beside the inputs
    assert f"--out holds the input {gt}" in capsys.readouterr().err
    ours = tmp_path / "evaluation"
    assert cli.main(["evaluate", "--gt", gt, "--dt", dt, "--out", str(ours)]) == 0
    assert cli.main(["evaluate", "--gt", gt, "--dt", dt, "--out", str(ours)]) == 0  # its own folder, again
    assert (ours / claimed_folder.MARK_FILE).read_text() == "vocdet evaluate\n"


def test_predict_never_writes_beside_its_inputs(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 48), "red").save(photos / "dog.png")
    before = (photos / "dog.png").read_bytes()
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"not loaded: the folder is refused first")
    assert cli.main(["predict", "--model", str(model), str(photos / "dog.png"), "--out", str(photos)]) == 2
    assert f"--out holds the input {photos / 'dog.png'}" in capsys.readouterr().err
    assert os.listdir(photos) == ["dog.png"] and (photos / "dog.png").read_bytes() == before


def test_make_sample_never_writes_over_a_users_voc_folder(tmp_path, capsys):
    theirs = tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages"
    theirs.mkdir(parents=True)
    (theirs / "000001.jpg").write_bytes(b"a real VOC photo")
    assert cli.main(["make-sample", str(tmp_path / "VOCdevkit"), "--num-images", "4"]) == 2
    assert "holds files vocdet's sample did not write" in capsys.readouterr().err
    assert os.listdir(tmp_path / "VOCdevkit" / "VOC2007") == ["JPEGImages"]
    assert (theirs / "000001.jpg").read_bytes() == b"a real VOC photo"
    assert cli.main(["make-sample", str(tmp_path / "mine"), "--num-images", "4"]) == 0
    assert cli.main(["make-sample", str(tmp_path / "mine"), "--num-images", "5"]) == 0  # its own folder, again
    assert len(os.listdir(tmp_path / "mine" / "VOC2007" / "JPEGImages")) == 5


@pytest.mark.parametrize("setting, flag", [("model.init_checkpoint", "init_checkpoint"), ("model.backbone_weights", "backbone_weights"),
                                           ("data.schema_file", "schema_file")])
def test_a_fifo_named_in_the_settings_is_refused_before_the_run(tmp_path, setting, flag):
    fifo = tmp_path / "weights.fifo"
    os.mkfifo(fifo)
    section = setting.split(".")[0]
    (tmp_path / "my.yaml").write_text(f"{section}:\n  {flag}: {fifo}\n")
    result = subprocess.run([VOCDET, "run", "--config", str(tmp_path / "my.yaml"), "--output", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"vocdet run: error: {fifo}: {setting}: is a FIFO (named pipe), not a regular file; only regular files are read"
    ]
    assert not (tmp_path / "out").exists()


def test_freeze_schema_never_turns_an_empty_file_into_a_store(tmp_path):
    output = tmp_path / "outputs"
    output.mkdir()
    (output / "metadata.sqlite").write_bytes(b"")
    with pytest.raises(frozen_schema.FreezeError, match=r"metadata.sqlite: empty \(0 bytes\), not an ML Metadata store"):
        frozen_schema.freeze(str(output), str(tmp_path / "schema.pbtxt"))
    assert (output / "metadata.sqlite").read_bytes() == b"" and sorted(os.listdir(output)) == ["metadata.sqlite"]
