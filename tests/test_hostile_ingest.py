"""Hostile data at ingest: FIFOs, devices, link loops, links out of the dataset, oversized annotations.

Every case ends as one rejected record (or one line for a folder the layout needs), within seconds and
without reading more than the limits allow; none may hang the suite: calls that would block on a FIFO
if the guard broke run in a daemon thread with a deadline (`bounded`), and `vocdet ingest` in a
subprocess with `timeout=`.
"""

import io
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from vocdet.components import features, voc_format
from vocdet.components.voc_example_gen import (
    DEFAULT_MAX_ANNOTATION_BYTES,
    DEFAULT_MAX_OBJECTS_PER_IMAGE,
    convert,
    executor,
)
from vocdet.pipeline.config import sections
from vocdet.pipeline.data import layout
from vocdet.pipeline.data import root as data_root

CLASSES = voc_format.VOC_CLASSES
VOCDET = os.path.join(os.path.dirname(sys.executable), "vocdet")
NOT_REGULAR = "not a regular file; only regular files are read"
FIFO = f"is a FIFO (named pipe), {NOT_REGULAR}"
LOOP = "a symbolic link loop (the link points back at itself); fix or remove the link"
DOG = voc_format.VocObject("dog", 10, 10, 50, 40)


def bounded(function, *args, seconds=30, **kwargs):
    """`function(*args)`, failing the test (not hanging it) when it has not returned within `seconds`.

    A FIFO opened for reading blocks until a writer comes: on a timeout, every FIFO under the test's
    folders is opened for writing, which lets the stuck reader go.
    """
    result = {}

    def call():
        try:
            result["value"] = function(*args, **kwargs)
        except BaseException as error:  # re-raised in the test's thread
            result["error"] = error

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in _fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        pytest.fail(f"{function.__name__} did not return within {seconds} s (blocked on a FIFO?)")
    if "error" in result:
        raise result["error"]
    return result["value"]


_fifos: list[str] = []


def _mkfifo(path):
    os.mkfifo(path)
    _fifos.append(str(path))


def _jpeg(width=100, height=80):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _xml(objects=(DOG,), filename="000001.jpg"):
    return voc_format.annotation_to_xml(voc_format.VocAnnotation(filename, 100, 80, objects=tuple(objects)))


def _crowd_xml(count, name="person"):
    """An annotation of `count` objects, made by repeating one (ElementTree would take seconds to write 80,000)."""
    box = "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox>"
    size = "<size><width>100</width><height>80</height></size>"
    return f"<annotation><filename>000001.jpg</filename>{size}{f'<object><name>{name}</name>{box}</object>' * count}</annotation>"


def _voc(folder, image_id="000001", xml=None, image=None):
    """A VOC folder holding one record; `xml`/`image` None writes a good one, a callable makes the entry itself."""
    annotations, images = folder / voc_format.ANNOTATIONS_DIR, folder / voc_format.IMAGES_DIR
    annotations.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)
    xml_path, image_path = annotations / f"{image_id}.xml", images / f"{image_id}.jpg"
    if callable(xml):
        xml(xml_path)
    else:
        xml_path.write_text(xml or _xml(filename=f"{image_id}.jpg"))
    if callable(image):
        image(image_path)
    else:
        image_path.write_bytes(image or _jpeg())
    return folder


HOSTILE = {  # case -> (annotation maker, image maker, which file the record names, its one reason)
    "FIFO image": (None, _mkfifo, "image", FIFO),
    "FIFO annotation": (_mkfifo, None, "xml", FIFO),
    "annotation linked to /dev/zero": (
        lambda path: os.symlink("/dev/zero", path), None, "xml",
        f"is a character device, {NOT_REGULAR} (through the symbolic link to /dev/zero)",
    ),
    "image linked to /dev/zero": (
        None, lambda path: os.symlink("/dev/zero", path), "image",
        f"is a character device, {NOT_REGULAR} (through the symbolic link to /dev/zero)",
    ),
    "folder named as annotation": (lambda path: path.mkdir(), None, "xml", f"is a folder, {NOT_REGULAR}"),
    "annotation a link loop": (lambda path: os.symlink(path.name, path), None, "xml", LOOP),
    "image a link loop": (None, lambda path: os.symlink(path.name, path), "image", LOOP),
    "annotation a link to a missing file": (
        lambda path: os.symlink("gone.xml", path), None, "xml", "no such file (or a link to a missing file)"
    ),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_file_that_is_not_a_regular_file_is_one_rejected_record_named_by_the_users_path(tmp_path, case):
    make_xml, make_image, named, reason = HOSTILE[case]
    voc = _voc(tmp_path / "VOC2007", xml=make_xml, image=make_image)
    outcome = bounded(convert.convert_record, str(voc), "000001", CLASSES)
    assert outcome.status == convert.REJECTED and outcome.reasons == [reason]
    folder, extension = (voc_format.ANNOTATIONS_DIR, "xml") if named == "xml" else (voc_format.IMAGES_DIR, "jpg")
    assert outcome.source == str(voc / folder / f"000001.{extension}")


def test_an_annotation_above_the_byte_limit_is_refused_from_its_size_before_reading(tmp_path):
    def huge(path):  # 12 MB, sparse: made at once, and never read
        with open(path, "wb") as handle:
            handle.write(_xml().encode())
            handle.truncate(12_000_000)

    voc = _voc(tmp_path, xml=huge)
    outcome = convert.convert_record(str(voc), "000001", CLASSES)
    assert outcome.status == convert.REJECTED
    assert outcome.reasons == ["12.0 MB, above the limit of 10.0 MB (data.max_annotation_bytes)"]
    assert DEFAULT_MAX_ANNOTATION_BYTES == 10_000_000
    small = convert.convert_record(str(_voc(tmp_path / "small")), "000001", CLASSES, max_annotation_bytes=100)
    assert small.status == convert.REJECTED and small.reasons[0].endswith("above the limit of 100 B (data.max_annotation_bytes)")


def test_too_many_objects_are_refused_while_parsing_and_the_limit_is_a_setting(tmp_path):
    voc = _voc(tmp_path, xml=_crowd_xml(DEFAULT_MAX_OBJECTS_PER_IMAGE + 1))
    outcome = convert.convert_record(str(voc), "000001", CLASSES)
    assert outcome.status == convert.REJECTED
    assert outcome.reasons == ["over the limit of 5,000 objects (data.max_objects_per_image)"]

    three = _voc(tmp_path / "three", xml=_xml([DOG] * 3))
    assert convert.convert_record(str(three), "000001", CLASSES, max_objects_per_image=3).status == convert.WRITTEN
    over = convert.convert_record(str(three), "000001", CLASSES, max_objects_per_image=2)
    assert over.reasons == ["over the limit of 2 objects (data.max_objects_per_image)"]


def test_the_object_count_stops_the_parse_early():
    # 80,000 objects in 9 MB (under the byte limit): refused once the 5,001st starts, the rest never built.
    import tracemalloc

    content = _crowd_xml(80_000).encode()
    assert len(content) < DEFAULT_MAX_ANNOTATION_BYTES
    tracemalloc.start()
    try:
        with pytest.raises(voc_format.VocFormatError, match=r"^a\.xml: over the limit of 5,000 objects"):
            voc_format.parse_annotation_xml(content, "a.xml", max_objects=DEFAULT_MAX_OBJECTS_PER_IMAGE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40_000_000  # the whole tree takes about 90 MB


def _outside(tmp_path):
    """An image and an annotation outside the dataset, for links to point at."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "photo.jpg").write_bytes(_jpeg())
    (elsewhere / "labels.xml").write_text(_xml())
    return elsewhere


def test_links_out_of_the_dataset_are_followed_noted_and_named_by_the_users_path(tmp_path):
    elsewhere = _outside(tmp_path)
    data = tmp_path / "data"
    voc = _voc(
        data / "VOC2007",
        xml=lambda path: os.symlink(elsewhere / "labels.xml", path),
        image=lambda path: os.symlink(elsewhere / "photo.jpg", path),
    )
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for list_name in ("train", "val", "test"):
        (voc / "ImageSets" / "Main" / f"{list_name}.txt").write_text("000001\n")
    built = data_root.link_data_root([str(data)], str(tmp_path / "out"))
    linked_voc = os.path.join(built.root, "0", "VOC2007")
    outcome = convert.convert_record(linked_voc, "000001", CLASSES)
    # The user's path: not the data root's link, nor where the user's link leads.
    assert outcome.status == convert.WRITTEN and outcome.source == str(voc / "JPEGImages" / "000001.jpg")
    assert outcome.reasons == [
        f"000001.xml is a symbolic link out of its folder, to {elsewhere / 'labels.xml'}; read from there",
        f"000001.jpg is a symbolic link out of its folder, to {elsewhere / 'photo.jpg'}; read from there",
    ]
    example_name = outcome.example.features.feature[features.FILENAME].bytes_list.value[0]
    assert example_name == b"000001.jpg"  # the user's name, not the target's


def test_labelimg_links_are_named_by_the_users_path_and_a_fifo_there_is_rejected(tmp_path):
    elsewhere = _outside(tmp_path)
    flat = tmp_path / "labelimg"
    flat.mkdir()
    (flat / "a.xml").write_text(_xml(filename="a.jpg"))
    os.symlink(elsewhere / "photo.jpg", flat / "a.jpg")
    (flat / "b.xml").write_text(_xml(filename="b.jpg"))
    _mkfifo(flat / "b.jpg")
    built = bounded(data_root.link_data_root, [str(flat)], str(tmp_path / "out"))
    voc = os.path.join(built.root, "0", "VOClabelimg")
    linked = bounded(convert.convert_record, voc, "a", CLASSES)
    assert linked.status == convert.WRITTEN and linked.source == str(flat / "a.jpg")
    assert linked.reasons == [f"a.jpg is a symbolic link out of its folder, to {elsewhere / 'photo.jpg'}; read from there"]
    fifo = bounded(convert.convert_record, voc, "b", CLASSES)
    assert (fifo.status, fifo.source, fifo.reasons) == (convert.REJECTED, str(flat / "b.jpg"), [FIFO])


def test_the_class_name_scan_skips_what_cannot_be_read_within_the_limits(tmp_path):
    voc = _voc(tmp_path / "data" / "VOC2007")
    annotations = voc / voc_format.ANNOTATIONS_DIR
    _mkfifo(annotations / "fifo.xml")
    os.symlink("/dev/zero", annotations / "zero.xml")
    os.symlink("loop.xml", annotations / "loop.xml")
    with open(annotations / "huge.xml", "wb") as handle:
        handle.write(_xml([voc_format.VocObject("giant", 1, 1, 2, 2)]).encode())
        handle.truncate(DEFAULT_MAX_ANNOTATION_BYTES + 1)
    (annotations / "crowd.xml").write_text(_crowd_xml(4, name="crowd"))
    root = tmp_path / "root" / "0"
    root.mkdir(parents=True)
    os.symlink(voc, root / "VOC2007")
    names = bounded(layout.class_names_from_data, str(tmp_path / "root"), layout.VOC, max_objects_per_image=3)
    assert names == ["dog"]


def test_a_fifo_labels_file_or_image_set_is_one_line(tmp_path):
    _mkfifo(tmp_path / "labels.txt")
    with pytest.raises(layout.DataLayoutError) as raised:
        bounded(layout.read_labels_file, str(tmp_path / "labels.txt"))
    assert str(raised.value) == f"{tmp_path}/labels.txt: {FIFO}"
    voc = _voc(tmp_path / "data" / "VOC2007")
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    _mkfifo(voc / "ImageSets" / "Main" / "train.txt")
    built = bounded(data_root.link_data_root, [str(tmp_path / "data")], str(tmp_path / "out"))
    with pytest.raises(ValueError) as raised:  # named by the user's path, not the data root's link
        bounded(convert.read_image_set, os.path.join(built.root, "0", "VOC2007", "ImageSets", "Main", "train.txt"))
    assert str(raised.value) == f"{voc}/ImageSets/Main/train.txt: {FIFO}"


@pytest.mark.parametrize("where", ["--data itself", "a VOC year folder", "JPEGImages", "a Roboflow split folder"])
def test_a_link_loop_the_layout_detection_meets_is_one_line(tmp_path, where):
    data = tmp_path / "data"
    if where == "--data itself":
        os.symlink("data", data)
        looped = data
    elif where == "a VOC year folder":
        _voc(data / "VOC2007")
        looped = data / "VOC2012"
        os.symlink("VOC2012", looped)
    elif where == "JPEGImages":
        voc = _voc(data / "VOC2007")
        looped = voc / "JPEGImages"
        for name in os.listdir(looped):
            os.remove(looped / name)
        looped.rmdir()
        os.symlink("JPEGImages", looped)
    else:
        (data / "train").mkdir(parents=True)
        (data / "train" / "a.xml").write_text(_xml(filename="a.jpg"))
        looped = data / "valid"
        os.symlink("valid", looped)
    with pytest.raises(layout.DataLayoutError) as raised:
        layout.detect_source(str(data))
    assert str(raised.value) == f"{looped}: {LOOP}"


def test_a_fifo_in_a_tfds_build_is_one_line(tmp_path):
    version = tmp_path / "voc" / "2007" / "4.0.0"
    version.mkdir(parents=True)
    _mkfifo(version / "voc-train.tfrecord-00000-of-00001")
    with pytest.raises(layout.DataLayoutError, match=r"voc-train\.tfrecord-00000-of-00001: is a FIFO"):
        bounded(layout.detect_source, str(tmp_path))


def test_the_limits_are_settings_carried_to_the_executor():
    config = executor.make_custom_config(["dog"], max_annotation_bytes=1234, max_objects_per_image=56)
    from google.protobuf import json_format

    carried = executor.read_custom_config({"custom_config": json_format.MessageToJson(config)})
    assert (carried[executor.MAX_ANNOTATION_BYTES_KEY], carried[executor.MAX_OBJECTS_PER_IMAGE_KEY]) == (1234, 56)
    defaults = sections.DataConfig()
    assert (defaults.max_annotation_bytes, defaults.max_objects_per_image) == (10_000_000, 5_000)
    for key in ("max_annotation_bytes", "max_objects_per_image"):
        with pytest.raises(ValueError, match=rf"^data\.{key} must be positive, got 0$"):
            sections.DataConfig(**{key: 0}).validate()


def test_vocdet_ingest_rejects_a_fifo_image_and_a_fifo_annotation_in_one_line_each(small_voc_root, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(os.path.join(small_voc_root, "VOC2007"), data / "VOC2007")
    voc = data / "VOC2007"
    train_ids = (voc / "ImageSets" / "Main" / "train.txt").read_text().split()
    fifo_image, fifo_xml = voc / "JPEGImages" / f"{train_ids[0]}.jpg", voc / "Annotations" / f"{train_ids[1]}.xml"
    for path in (fifo_image, fifo_xml):
        os.remove(path)
        _mkfifo(path)
    config = tmp_path / "scan.yaml"
    config.write_text("data:\n  class_names: []\n")  # the class names are scanned from the annotations too
    result = subprocess.run(
        [VOCDET, "ingest", "--data", str(data), "--output", str(tmp_path / "out"), "--config", str(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"train: {len(train_ids) - 2} examples (0 repaired, 2 rejected)" in result.stdout
    assert f"rejected {fifo_image}: {FIFO}" in result.stdout
    assert f"rejected {fifo_xml}: {FIFO}" in result.stdout
    report = next(
        os.path.join(folder, name)
        for folder, _, names in os.walk(tmp_path / "out")
        for name in names
        if name == "records-train.jsonl"
    )
    with open(report) as handle:
        rejected = {row["file"]: row["reasons"] for row in map(json.loads, handle) if row["status"] == "rejected"}
    assert rejected == {str(fifo_image): [FIFO], str(fifo_xml): [FIFO]}
