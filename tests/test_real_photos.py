"""Real photos and real exports (issue 28): EXIF orientation, datasets resized after labelling, class
names as people type them.

Every case is a generated photo holding one coloured object at a known place. The check is on the
pixels: the stored example's box, on its image decoded as training decodes it (`tf.io.decode_jpeg`),
covers the object's colour (IoU >= 0.9 with the box the colour fills).
"""

import dataclasses
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vocdet.components import features, voc_format
from vocdet.components.voc_example_gen import convert, orientation
from vocdet.pipeline import cli
from vocdet.pipeline.data import layout as data_layout
from tests.examples_io import ingest, read_examples, read_images
from tests.images import coloured_box, encoded_with_orientation, photo_with_object, stored_pixels

CLASSES = voc_format.VOC_CLASSES
# The issue's photo: displayed 400x300, the object at relative [0.5, 0.25, 0.75, 0.5] (ymin, xmin, ymax, xmax).
DISPLAYED = (400, 300)
OBJECT = (100, 150, 200, 225)
# Where the labelling tool drew the box: on the picture as viewers show it, or on the stored pixels.
SHOWN, STORED = "displayed frame", "stored frame"


@dataclasses.dataclass(frozen=True)
class Case:
    """A photo, its XML as a tool wrote it, and the repairs the record must be reported with."""

    orientation: int = 1
    labelled_in: str = SHOWN
    # <size>: "frame" (the labelled frame's size), "x2" (labelled at twice the size, the images downscaled
    # after), "rounded" (labelled at 1001x751, resized to 400x300), "missing", "zero", or a (width, height).
    size: "str | tuple[int, int]" = "frame"
    name: str = "dog"
    image_format: str = "JPEG"
    displayed: tuple[int, int] = DISPLAYED
    repairs: frozenset = frozenset()
    grey: int = 128  # the background: another level, another image

    def files(self) -> tuple[bytes, str]:
        """(image bytes, annotation XML)."""
        image, stored_box = photo_with_object(self.displayed, OBJECT, self.orientation, self.image_format, self.grey)
        frame = orientation.displayed_size(self.displayed, self.orientation) if self.labelled_in == STORED else self.displayed
        box = stored_box if self.labelled_in == STORED else OBJECT
        size = {"frame": frame, "x2": (2 * frame[0], 2 * frame[1]), "rounded": (1001, 751), "missing": (0, 0),
                "zero": (0, 0)}.get(self.size, self.size)
        if isinstance(self.size, tuple) or self.size in ("missing", "zero"):
            scale = (1.0, 1.0)  # the coordinates are the image's pixels
        else:
            scale = (size[0] / frame[0], size[1] / frame[1])
        xmin, ymin, xmax, ymax = box
        obj = voc_format.VocObject(self.name, xmin * scale[0], ymin * scale[1], xmax * scale[0], ymax * scale[1])
        extension = ".jpg" if self.image_format == "JPEG" else ".png"
        xml = voc_format.annotation_to_xml(
            voc_format.VocAnnotation(filename=f"photo{extension}", width=size[0], height=size[1], objects=(obj,))
        )
        if self.size == "missing":
            xml = re.sub(r"<size>.*?</size>", "", xml, flags=re.S)
        return image, xml


CASES = {
    "EXIF 6, <size> displayed (browser tools)": Case(6, repairs={convert.TURNED_UPRIGHT}),
    "EXIF 6, <size> stored (a tool that ignored EXIF)": Case(
        6, STORED, repairs={convert.TURNED_UPRIGHT, convert.BOXES_TURNED}
    ),
    **{f"EXIF {o}, <size> displayed": Case(o, repairs={convert.TURNED_UPRIGHT}) for o in (2, 3, 4, 5, 7, 8)},
    **{f"EXIF {o}, <size> stored": Case(o, STORED, repairs={convert.TURNED_UPRIGHT, convert.BOXES_TURNED})
       for o in (5, 7, 8)},
    "EXIF 6, square: the displayed frame, the default": Case(6, displayed=(300, 300), repairs={convert.TURNED_UPRIGHT}),
    "EXIF 8, PNG": Case(8, image_format="PNG", repairs={convert.TURNED_UPRIGHT, convert.REENCODED}),
    "resized 2x after labelling": Case(size="x2", repairs={convert.RESCALED_FROM_SIZE}),
    "resized, <size> rounded": Case(size="rounded", repairs={convert.RESCALED_FROM_SIZE}),
    "EXIF 6, labelled displayed, then resized": Case(
        6, size="x2", repairs={convert.TURNED_UPRIGHT, convert.RESCALED_FROM_SIZE}
    ),
    "EXIF 6, labelled stored, then resized": Case(
        6, STORED, size="x2", repairs={convert.TURNED_UPRIGHT, convert.BOXES_TURNED, convert.RESCALED_FROM_SIZE}
    ),
    "no <size>": Case(size="missing", repairs={convert.SIZE_MISSING}),
    "zero <size>": Case(size="zero", repairs={convert.SIZE_MISSING}),
    "EXIF 6, no <size>": Case(6, size="missing", repairs={convert.TURNED_UPRIGHT, convert.SIZE_MISSING}),
    "<size> the image does not explain": Case(size=(500, 120), repairs={convert.SIZE_UNEXPLAINED}),
    "'Dog' as typed": Case(name="Dog", repairs={convert.CLASS_NAME_CASE}),
}


def _write(folder, image_id, case: Case, flat=False):
    """The case as a VOCdevkit record `<folder>/{Annotations,JPEGImages}/<image_id>.*`, or side by side (`flat`)."""
    image, xml = case.files()
    extension = ".jpg" if case.image_format == "JPEG" else ".png"
    xml_dir, image_dir = (folder, folder) if flat else (
        os.path.join(folder, voc_format.ANNOTATIONS_DIR), os.path.join(folder, voc_format.IMAGES_DIR)
    )
    for sub in (xml_dir, image_dir):
        os.makedirs(sub, exist_ok=True)
    with open(os.path.join(xml_dir, f"{image_id}.xml"), "w") as handle:
        handle.write(xml.replace("photo.", f"{image_id}."))
    with open(os.path.join(image_dir, f"{image_id}{extension}"), "wb") as handle:
        handle.write(image)


def _stored_box_iou(relative_box, pixels):
    """IoU of a stored relative (ymin, xmin, ymax, xmax) box with the object's colour in decoded pixels."""
    import vocdet.components  # noqa: F401  (Keras 3 before TensorFlow's own)
    import keras_cv

    height, width = pixels.shape[:2]
    ymin, xmin, ymax, xmax = relative_box
    stored = np.array([[xmin * width, ymin * height, xmax * width, ymax * height]], np.float32)
    truth = np.array([coloured_box(pixels)], np.float32)
    return float(keras_cv.bounding_box.compute_iou(stored, truth, "xyxy").numpy()[0, 0])


def _feature(example, key):
    feature = example.features.feature[key]
    return list(getattr(feature, feature.WhichOneof("kind")).value)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_stored_box_covers_the_object_in_the_decoded_image(tmp_path, case):
    _write(str(tmp_path), "000001", case)
    outcome = convert.convert_record(str(tmp_path), "000001", CLASSES)
    assert outcome.status == convert.REPAIRED, outcome.reasons
    assert set(outcome.repairs) == case.repairs, outcome.reasons
    pixels = tf.io.decode_jpeg(_feature(outcome.example, features.IMAGE)[0], channels=3).numpy()
    assert pixels.shape[:2] == case.displayed[::-1]  # upright: as the labelling tool showed it
    boxes = np.reshape(_feature(outcome.example, features.BBOX), (-1, 4))
    assert len(boxes) == 1 and _feature(outcome.example, features.LABEL) == [CLASSES.index("dog")]
    assert _stored_box_iou(boxes[0], pixels) >= 0.9, (boxes[0], coloured_box(pixels), outcome.reasons)


def test_the_issues_photo_is_stored_where_its_object_is(tmp_path):
    """The issue's numbers: stored 300x400, EXIF 6, <size> 400x300: the box [0.5, 0.25, 0.75, 0.5], not [0.188, ...]."""
    _write(str(tmp_path), "000001", CASES["EXIF 6, <size> displayed (browser tools)"])
    outcome = convert.convert_record(str(tmp_path), "000001", CLASSES)
    np.testing.assert_allclose(_feature(outcome.example, features.BBOX), [0.5, 0.25, 0.75, 0.5], rtol=1e-6)
    assert outcome.reasons == [
        "image turned upright (EXIF orientation 6) and re-encoded; "
        "boxes taken in the displayed frame: <size> 400x300 is its displayed size"
    ]


def test_boxes_drawn_on_the_stored_pixels_turn_with_them(tmp_path):
    _write(str(tmp_path), "000001", CASES["EXIF 6, <size> stored (a tool that ignored EXIF)"])
    outcome = convert.convert_record(str(tmp_path), "000001", CLASSES)
    np.testing.assert_allclose(_feature(outcome.example, features.BBOX), [0.5, 0.25, 0.75, 0.5], rtol=1e-6)
    assert outcome.reasons == [
        "image turned upright (EXIF orientation 6) and re-encoded",
        "boxes turned with the pixels: <size> 300x400 is its stored frame (a tool that ignored EXIF)",
    ]


def test_a_resized_dataset_is_divided_by_size_as_tfds_does(tmp_path):
    _write(str(tmp_path), "000001", CASES["resized 2x after labelling"])
    outcome = convert.convert_record(str(tmp_path), "000001", CLASSES)
    np.testing.assert_allclose(_feature(outcome.example, features.BBOX), [0.5, 0.25, 0.75, 0.5], rtol=1e-6)
    assert outcome.reasons == [
        "<size> 800x600 differs from the image's 400x300 by a uniform rescale; coordinates rescaled from <size> (x0.5, y0.5)"
    ]


@pytest.mark.parametrize("exif", [2, 3, 4])
def test_where_size_cannot_tell_the_frames_apart_the_displayed_frame_is_the_default(tmp_path, exif):
    _write(str(tmp_path), "000001", Case(exif))
    outcome = convert.convert_record(str(tmp_path), "000001", CLASSES)
    assert outcome.reasons == [
        f"image turned upright (EXIF orientation {exif}) and re-encoded; boxes taken in the displayed frame, the "
        f"default: <size> 400x300 fits both frames (orientation {exif} or a square image)"
    ]


def test_an_unexplained_size_is_said_and_rejected_in_strict_mode(tmp_path):
    _write(str(tmp_path), "000001", CASES["<size> the image does not explain"])
    outcome = convert.convert_record(str(tmp_path), "000001", CLASSES)
    assert outcome.reasons == [
        "<size> 500x120 is neither the image's 400x300 nor a uniform rescale of it; assumed the coordinates are its pixels"
    ]
    strict = convert.convert_record(str(tmp_path), "000001", CLASSES, strict=True)
    assert strict.status == convert.REJECTED and strict.source == str(tmp_path / "Annotations" / "000001.xml")
    assert strict.reasons == [
        "<size> 500x120 is neither the image's 400x300 nor a uniform rescale of it; rejected in strict mode"
    ]


@pytest.mark.parametrize("exif", range(1, 9))
def test_turn_box_moves_a_box_where_pil_moves_its_pixels(exif):
    stored = stored_pixels(Image.fromarray(_picture_with_object()), exif)
    turned = orientation.turn_box(coloured_box(np.asarray(stored)), stored.size, exif)
    assert turned == coloured_box(np.asarray(orientation.upright(stored)))


def _picture_with_object():
    pixels = np.full((DISPLAYED[1], DISPLAYED[0], 3), 128, np.uint8)
    pixels[OBJECT[1] : OBJECT[3], OBJECT[0] : OBJECT[2]] = (230, 20, 30)
    return pixels


def test_an_upright_jpeg_is_still_stored_byte_for_byte(tmp_path):
    _write(str(tmp_path), "000001", Case())
    outcome = convert.convert_record(str(tmp_path), "000001", CLASSES)
    assert outcome.status == convert.WRITTEN and outcome.repairs == []
    assert _feature(outcome.example, features.IMAGE) == [(tmp_path / "JPEGImages" / "000001.jpg").read_bytes()]


@pytest.mark.parametrize(
    "name, class_names, status, reason",
    [
        ("Dog", CLASSES, convert.REPAIRED, "class name 'Dog' read as 'dog'"),
        ("DOG", CLASSES, convert.REPAIRED, "class name 'DOG' read as 'dog'"),
        ("dog", ("Dog", "Cat"), convert.REPAIRED, "class name 'dog' read as 'Dog'"),  # a --labels file's spelling
        ("Dgo", CLASSES, convert.REJECTED, "unknown class name 'Dgo' (closest known name: 'dog')"),
        ("DOG", ("Dog", "dog"), convert.REJECTED, "class name 'DOG' matches 'Dog' and 'dog' but for case: ambiguous"),
    ],
)
def test_class_names_match_but_for_case_when_unambiguous(tmp_path, name, class_names, status, reason):
    _write(str(tmp_path), "000001", Case(name=f"  {name} "))  # spaces as typed, trimmed
    outcome = convert.convert_record(str(tmp_path), "000001", class_names)
    assert (outcome.status, outcome.reasons) == (status, [reason])


def test_a_class_list_from_the_data_has_one_class_for_dog_and_Dog(tmp_path):
    voc = tmp_path / "custom" / "VOC2024"
    for index, name in enumerate(("Dog", "dog", "Cat")):
        _write(str(voc), f"{index:06d}", Case(name=name))
    root = str(tmp_path / "root")
    data_format = data_layout.make_data_root([str(tmp_path / "custom")], root).format
    class_names = data_layout.class_names_from_data(root, data_format)
    assert class_names == ["cat", "dog"]  # lower-cased, as tfds's VOC builder does
    labels = [_feature(convert.convert_record(str(voc), f"{i:06d}", class_names).example, features.LABEL) for i in range(3)]
    assert labels == [[1], [1], [0]]


def test_a_labels_file_with_two_spellings_of_one_name_is_one_line_naming_it(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\nDog\ndog\n")
    with pytest.raises(data_layout.DataLayoutError) as raised:
        data_layout.read_labels_file(str(labels))
    assert str(raised.value) == (
        f"{labels}: 'Dog' and 'dog' differ only in case, and annotations are matched to class names "
        "case-insensitively; keep one"
    )


def test_predict_reads_a_phone_photo_upright(tmp_path):
    from vocdet.pipeline.tools import predict

    image, _ = photo_with_object(DISPLAYED, OBJECT, 6)
    path = tmp_path / "phone.jpg"
    path.write_bytes(image)
    read = predict.read_image(str(path), max_image_pixels=10**8)
    assert read.size == DISPLAYED
    np.testing.assert_allclose(coloured_box(np.asarray(read)), OBJECT, atol=2)  # JPEG's blur at the edges


# The corpus `vocdet ingest` reads, per case: what the report must count.
INGESTED = ("EXIF 6, <size> displayed (browser tools)", "EXIF 6, <size> stored (a tool that ignored EXIF)",
            "resized 2x after labelling", "no <size>", "<size> the image does not explain", "'Dog' as typed")


def _corpus(folder, layout):
    """The ingested cases in train, and one plain photo in each other split, as `layout` lays them out."""
    records = {"train": [(f"case{index:02d}", dataclasses.replace(CASES[name], grey=100 + index))
                         for index, name in enumerate(INGESTED)],
               "validation": [("plain-val", Case(grey=90))], "test": [("plain-test", Case(grey=80))]}
    if layout == "VOCdevkit":
        voc = os.path.join(folder, "VOC2007")
        lists = os.path.join(voc, voc_format.IMAGE_SETS_DIR)
        os.makedirs(lists)
        for split, split_records in records.items():
            for image_id, case in split_records:
                _write(voc, image_id, case)
            with open(os.path.join(lists, f"{data_layout.VOC_IMAGE_SETS[split]}.txt"), "w") as handle:
                handle.write("".join(f"{image_id}\n" for image_id, _ in split_records))
    else:  # Roboflow: train/ valid/ test/ folders of image and .xml pairs
        for split, split_records in records.items():
            for image_id, case in split_records:
                _write(os.path.join(folder, {"validation": "valid"}.get(split, split)), image_id, case, flat=True)
    return folder


@pytest.mark.e2e
@pytest.mark.parametrize("layout", ["VOCdevkit", "Roboflow"])
def test_vocdet_ingest_counts_each_repair_and_stores_boxes_on_the_objects(tmp_path, capsys, layout):
    from vocdet.components.voc_example_gen import executor as voc_executor

    data = _corpus(str(tmp_path / "data"), layout)
    examples_uri, out = ingest(capsys, "--data", data, "--output", str(tmp_path / "out"))
    report = os.path.join(examples_uri, voc_executor.REPORT_DIR)
    assert f"train: {len(INGESTED)} examples ({len(INGESTED)} repaired, 0 rejected)" in out
    assert (
        "repairs train: 2 turned upright, 1 boxes turned with the pixels, 1 rescaled from <size>, 1 no <size>, "
        f"1 <size> unexplained, 1 class name read but for case; see {report}/records-train.jsonl"
    ) in out
    with open(os.path.join(report, voc_executor.REPAIRS_FILE)) as handle:
        repairs = json.load(handle)
    assert repairs["train"][convert.TURNED_UPRIGHT] == 2 and repairs["train"][convert.RESCALED_FROM_SIZE] == 1
    assert not any(repairs["test"].values()) and not any(repairs["validation"].values())

    assert "repeats:" not in out and "leakage:" not in out  # every photo another image
    boxes, images = read_examples(examples_uri), read_images(examples_uri)
    assert len(images) == len(INGESTED) + 2
    for filename, pixels in images.items():
        (_, stored, labels, _) = boxes[filename]
        assert pixels.shape[:2] == DISPLAYED[::-1] and labels == [CLASSES.index("dog")], filename
        assert _stored_box_iou(stored[0], pixels) >= 0.9, (filename, stored, coloured_box(pixels))

    assert cli.main(["ingest", "--data", data, "--output", str(tmp_path / "strict"), "--strict"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    unexplained = f"case{INGESTED.index('<size> the image does not explain'):02d}.xml"
    assert error.startswith("vocdet ingest: error: strict mode: 1 records rejected (first: ")
    assert f"{unexplained}: <size> 500x120 is neither the image's 400x300 nor a uniform rescale of it; rejected in strict mode)" in error


@pytest.mark.e2e
def test_predict_gives_a_phone_photo_the_detections_of_the_upright_image(pipeline_run, small_voc_root, tmp_path, capsys):
    """Each EXIF-turned copy (PNG: the same pixels once turned back) gets the upright image's detections, in its frame."""
    config, _ = pipeline_run
    upright = Image.open(os.path.join(small_voc_root, "VOC2007", "JPEGImages", "000003.jpg")).convert("RGB")
    inputs = [tmp_path / "upright.png"]
    upright.save(inputs[0])
    for exif in range(2, 9):
        inputs.append(tmp_path / f"exif{exif}.png")
        inputs[-1].write_bytes(encoded_with_orientation(stored_pixels(upright, exif), exif, "PNG"))
    out = tmp_path / "out"
    base = os.path.join(config.serving_dir, config.push.model_name)
    assert cli.main(["predict", "--model", base, *map(str, inputs), "--out", str(out), "--min-score", "0"]) == 0
    capsys.readouterr()
    expected = json.loads((out / "upright.json").read_text())
    assert expected["detections"] and (expected["width"], expected["height"]) == upright.size
    for exif in range(2, 9):
        assert json.loads((out / f"exif{exif}.json").read_text()) == expected, exif
        assert (out / f"exif{exif}.png").read_bytes() == (out / "upright.png").read_bytes(), exif
