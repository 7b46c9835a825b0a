"""Datasets as labelling tools and hubs export them: each layout, built from the same generated images,
ingests box for box like the VOCdevkit it was made from; data without lists gets a stable derived split."""

import os
import shutil

import numpy as np
import pytest

from vocdet.pipeline import cli
from vocdet.pipeline.data import layout as data_layout
from tests.examples_io import ingest, read_examples

VOC_LISTS = {"train": "train", "validation": "val", "test": "test"}


def _voc_ids(small_voc_root):
    lists = os.path.join(small_voc_root, "VOC2007", "ImageSets", "Main")
    return {split: open(os.path.join(lists, f"{name}.txt")).read().split() for split, name in VOC_LISTS.items()}


def _copy_pair(voc, image_id, xml_dir, image_dir, cvat_tags=False):
    xml = open(os.path.join(voc, "Annotations", f"{image_id}.xml")).read()
    if cvat_tags:  # what CVAT adds: float coordinates, <occluded> and <attributes>
        for key in ("xmin", "ymin", "xmax", "ymax"):
            xml = xml.replace(f"</{key}>", f".00</{key}>")
        xml = xml.replace("</difficult>", "</difficult>\n\t\t<occluded>0</occluded>\n\t\t<attributes><attribute><name>x</name><value>1</value></attribute></attributes>")
    os.makedirs(xml_dir, exist_ok=True)
    os.makedirs(image_dir, exist_ok=True)
    with open(os.path.join(xml_dir, f"{image_id}.xml"), "w") as handle:
        handle.write(xml)
    shutil.copy(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"), image_dir)


def build_layout(small_voc_root, layout, target):
    """The small sample re-laid out as `layout` writes it; returns the folder to give --data."""
    voc = os.path.join(small_voc_root, "VOC2007")
    ids = _voc_ids(small_voc_root)
    every_id = sorted(set().union(*ids.values()))
    target = str(target)
    if layout in ("CVAT", "CVAT subsets"):
        for image_id in every_id:
            _copy_pair(voc, image_id, os.path.join(target, "Annotations"), os.path.join(target, "JPEGImages"), cvat_tags=True)
        lists = os.path.join(target, "ImageSets", "Main")
        os.makedirs(lists)
        subsets = {"Train": ids["train"], "Validation": ids["validation"], "TEST": ids["test"]}
        for name, subset in (subsets if layout == "CVAT subsets" else {"default": every_id}).items():
            with open(os.path.join(lists, f"{name}.txt"), "w") as handle:
                handle.write("\n".join(subset) + "\n")
        with open(os.path.join(target, "labelmap.txt"), "w") as handle:
            handle.write("# label:color_rgb:parts:actions\nbackground:0,0,0::\n")
    elif layout == "LabelImg":
        for image_id in every_id:
            _copy_pair(voc, image_id, target, target)
    elif layout == "Label Studio":
        for image_id in every_id:
            _copy_pair(voc, image_id, os.path.join(target, "Annotations"), os.path.join(target, "images"))
    elif layout == "Roboflow":
        for split, folder in (("train", "train"), ("validation", "valid"), ("test", "test")):
            for image_id in ids[split]:
                _copy_pair(voc, image_id, os.path.join(target, folder), os.path.join(target, folder))
    else:
        raise ValueError(layout)
    return target


LAYOUTS = {  # layout -> (name detect_source gives, split made from)
    "CVAT": ("CVAT", data_layout.SPLIT_BY_HASH),
    "CVAT subsets": ("CVAT", data_layout.SPLIT_BY_LISTS),
    "LabelImg": ("LabelImg", data_layout.SPLIT_BY_HASH),
    "Label Studio": ("Label Studio", data_layout.SPLIT_BY_HASH),
    "Roboflow": ("Roboflow", data_layout.SPLIT_BY_LISTS),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_is_recognised_and_linked_without_touching_the_data(small_voc_root, tmp_path, layout):
    folder = build_layout(small_voc_root, layout, tmp_path / "export")
    before = sorted(os.listdir(folder))
    source = data_layout.detect_source(folder)
    assert (source.format, source.layout) == (data_layout.VOC, LAYOUTS[layout][0])
    built = data_layout.make_data_root([folder], str(tmp_path / "root"))
    assert built.split_by == LAYOUTS[layout][1]
    assert built.descriptions[0].startswith(f"{folder}: {LAYOUTS[layout][0]} layout")
    annotations = data_layout.annotations_pattern()
    import glob

    assert len(glob.glob(os.path.join(tmp_path, "root", annotations))) == 40
    assert sorted(os.listdir(folder)) == before  # nothing written into the user's folder


def test_flat_folder_notes_images_without_annotation(small_voc_root, tmp_path):
    folder = build_layout(small_voc_root, "LabelImg", tmp_path / "flat")
    shutil.copy(os.path.join(folder, "000001.jpg"), os.path.join(folder, "unlabelled.jpg"))
    (source_line,) = data_layout.make_data_root([folder], str(tmp_path / "root")).descriptions
    assert "1 images in" in source_line and "have no .xml beside them and are not used (e.g. unlabelled.jpg)" in source_line


@pytest.mark.e2e
@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_ingests_box_for_box_like_the_vocdevkit(small_voc_root, tmp_path, capsys, layout):
    folder = build_layout(small_voc_root, layout, tmp_path / "export")
    reference_uri, _ = ingest(capsys, "--data", small_voc_root, "--output", str(tmp_path / "voc"))
    uri, out = ingest(capsys, "--data", folder, "--output", str(tmp_path / "out"))
    assert f"{folder}: {LAYOUTS[layout][0]} layout" in out
    assert " 0 rejected" in out and "repaired" in out
    reference, ingested = read_examples(reference_uri), read_examples(uri)
    assert set(ingested) == set(reference) and len(ingested) == 40  # every image, none rejected
    for filename, (split, boxes, labels, difficult) in ingested.items():
        reference_split, reference_boxes, reference_labels, reference_difficult = reference[filename]
        np.testing.assert_allclose(boxes, reference_boxes, rtol=1e-6, err_msg=filename)
        assert (labels, difficult) == (reference_labels, reference_difficult), filename
        if LAYOUTS[layout][1] == data_layout.SPLIT_BY_LISTS:
            assert split == reference_split, filename
    if LAYOUTS[layout][1] == data_layout.SPLIT_BY_HASH:
        assert "split: derived (no usable ImageSets lists): SHA-256 of the image id into train 80% / validation 10% / test 10%" in out
        assert {split for split, *_ in ingested.values()} == {"train", "validation", "test"}
    else:
        assert "split: from the ImageSets lists" in out


@pytest.mark.e2e
def test_derived_split_is_stable_when_images_are_added(small_voc_root, tmp_path, capsys):
    folder = build_layout(small_voc_root, "LabelImg", tmp_path / "flat")
    later = sorted(name for name in os.listdir(folder) if name.endswith(".xml"))[-12:]
    held_back = tmp_path / "held-back"
    held_back.mkdir()
    for name in later:  # the first drop lacks 12 images
        for path in (name, name.replace(".xml", ".jpg")):
            shutil.move(os.path.join(folder, path), held_back / path)
    first_uri, _ = ingest(capsys, "--data", folder, "--output", str(tmp_path / "first"))
    for path in os.listdir(held_back):
        shutil.move(held_back / path, os.path.join(folder, path))
    second_uri, _ = ingest(capsys, "--data", folder, "--output", str(tmp_path / "second"))
    first, second = read_examples(first_uri), read_examples(second_uri)
    assert len(first) == 28 and len(second) == 40
    assert {name: first[name][0] for name in first} == {name: second[name][0] for name in first}


@pytest.mark.e2e
def test_run_trains_and_evaluates_on_a_labelimg_folder(small_voc_root, tmp_path, capsys):
    folder = build_layout(small_voc_root, "LabelImg", tmp_path / "flat")
    argv = ["run", "--data", folder, "--output", str(tmp_path / "out"), "--epochs", "1", "--steps-per-epoch", "2",
            "--batch-size", "4", "--blessing-threshold", "0"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"{folder}: LabelImg layout, no split lists" in out
    assert "evaluation: COCO mAP@[.5:.95]" in out
    assert "data split: derived (no usable ImageSets lists)" in out
    assert "data test: " in out and "(0 repaired, 0 rejected)" in out
