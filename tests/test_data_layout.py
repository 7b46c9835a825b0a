import os

import pytest

from vocdet.pipeline.data import layout as data_layout


def test_voc_folder_is_recognised_from_every_usual_level(small_voc_root, tmp_path):
    voc2007 = os.path.join(small_voc_root, "VOC2007")
    devkit_parent = tmp_path / "download"
    (devkit_parent / "VOCdevkit").mkdir(parents=True)
    os.symlink(voc2007, devkit_parent / "VOCdevkit" / "VOC2007")
    for path in (small_voc_root, voc2007, str(devkit_parent), str(devkit_parent / "VOCdevkit")):
        source = data_layout.detect_source(path)
        assert source.format == data_layout.VOC
        assert list(source.years) == ["2007"]


def test_tfds_build_is_recognised_and_newest_version_wins(tmp_path):
    for version in ("3.0.0", "4.0.0"):
        folder = tmp_path / "voc" / "2007" / version
        folder.mkdir(parents=True)
        (folder / "voc-train.tfrecord-00000-of-00001").write_bytes(b"")
    for path in (tmp_path, tmp_path / "voc", tmp_path / "voc" / "2007"):
        source = data_layout.detect_source(str(path))
        assert source.format == data_layout.TFDS
        assert source.years == {"2007": str(tmp_path / "voc" / "2007" / "4.0.0")}


def test_unrecognised_folder_gets_one_clear_line(tmp_path):
    with pytest.raises(data_layout.DataLayoutError, match=r": not a dataset layout vocdet reads; accepted: VOCdevkit \(.*LabelImg"):
        data_layout.detect_source(str(tmp_path))


def test_data_root_combines_folders_and_patterns_match_them(small_voc_root, tmp_path):
    import glob

    root = str(tmp_path / "root")
    built = data_layout.make_data_root([small_voc_root, small_voc_root], root)
    assert (built.format, built.split_by) == (data_layout.VOC, data_layout.SPLIT_BY_LISTS)
    assert data_layout.make_data_root([small_voc_root, small_voc_root], root) == built  # idempotent
    for split in data_layout.SPLITS:
        matches = glob.glob(os.path.join(root, data_layout.split_pattern(data_layout.VOC, split)))
        assert len(matches) == 2, split


def test_span_patterns_use_tfx_span_placeholder():
    assert data_layout.split_pattern("voc", "validation", spans=True) == "span-{SPAN}/VOC*/ImageSets/Main/val.txt"
    assert data_layout.split_pattern("tfds", "test", year="2007") == "*/2007/voc-test.tfrecord*"


def test_custom_dataset_class_list_comes_from_annotations_or_labels_file(tmp_path):
    from vocdet.components import voc_format

    voc = tmp_path / "custom" / "VOC2024" / "Annotations"
    voc.mkdir(parents=True)
    for index, names in enumerate((["widget", "gadget"], ["widget"])):
        annotation = voc_format.VocAnnotation(
            filename=f"{index}.jpg", width=10, height=10, objects=tuple(voc_format.VocObject(n, 1, 1, 5, 5) for n in names)
        )
        (voc / f"{index}.xml").write_text(voc_format.annotation_to_xml(annotation))
    root = str(tmp_path / "root")
    data_format = data_layout.make_data_root([str(tmp_path / "custom")], root).format
    assert data_layout.class_names_from_data(root, data_format) == ["gadget", "widget"]

    labels = tmp_path / "labels.txt"
    labels.write_text("widget\ngadget\n")
    assert data_layout.read_labels_file(str(labels)) == ["widget", "gadget"]


def test_rebuilding_a_data_root_never_writes_into_the_data_and_drops_stale_groups(small_voc_root, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(small_voc_root, data)
    before = sorted(str(path.relative_to(data)) for path in data.rglob("*"))
    root = tmp_path / "root"
    data_layout.make_data_root([str(data), str(data)], str(root))  # a longer --data list, as an earlier run gave
    kept = os.lstat(root / "0" / "VOC2007" / "Annotations").st_mtime_ns

    data_layout.make_data_root([str(data)], str(root))
    assert sorted(os.listdir(root)) == [".vocdet-made.json", "0"]
    voc = root / "0" / "VOC2007"
    assert voc.is_dir() and not voc.is_symlink()
    assert os.path.realpath(voc / "Annotations") == str(data / "VOC2007" / "Annotations")
    assert os.lstat(voc / "Annotations").st_mtime_ns == kept  # unchanged entries are left as they are
    assert sorted(str(path.relative_to(data)) for path in data.rglob("*")) == before  # nothing written there

    # A root as an earlier vocdet left it, with no record of what it made: adopted, since it holds only
    # numbered groups of folders and links and the lists vocdet wrote; the stale group goes, its link's target stays.
    legacy = tmp_path / "legacy"
    (legacy / "1" / "VOC2007" / "ImageSets" / "Main").mkdir(parents=True)
    os.symlink(data / "VOC2007" / "Annotations", legacy / "1" / "VOC2007" / "Annotations")
    (legacy / "1" / "VOC2007" / "ImageSets" / "Main" / "train.txt").write_text("000001\n")
    data_layout.make_data_root([str(data)], str(legacy))
    assert sorted(os.listdir(legacy)) == [".vocdet-made.json", "0"]
    assert sorted(str(path.relative_to(data)) for path in data.rglob("*")) == before

    # One real file in it (an annotation, say) and it is somebody's: refused, nothing touched.
    theirs = tmp_path / "theirs"
    (theirs / "1" / "VOC2007" / "Annotations").mkdir(parents=True)
    os.symlink(data / "VOC2007" / "JPEGImages", theirs / "1" / "VOC2007" / "JPEGImages")
    (theirs / "1" / "VOC2007" / "Annotations" / "000001.xml").write_text("<annotation/>")
    with pytest.raises(data_layout.DataLayoutError, match=r"theirs: holds 5 entries vocdet did not make"):
        data_layout.make_data_root([str(data)], str(theirs))
    assert (theirs / "1" / "VOC2007" / "Annotations" / "000001.xml").read_text() == "<annotation/>"
    assert os.path.islink(theirs / "1" / "VOC2007" / "JPEGImages") and not (theirs / ".vocdet-made.json").exists()
