"""The VOCdevkit converter: tfds-identical examples, and every bad-input rule."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vocdet.components import features, voc_format
from vocdet.components.voc_example_gen import convert
from tests.images import png_header_only

CLASSES = voc_format.VOC_CLASSES


def _write_record(voc_dir, image_id, xml=None, image_bytes=None):
    for sub in (voc_format.ANNOTATIONS_DIR, voc_format.IMAGES_DIR):
        os.makedirs(os.path.join(voc_dir, sub), exist_ok=True)
    if xml is not None:
        with open(os.path.join(voc_dir, voc_format.ANNOTATIONS_DIR, f"{image_id}.xml"), "w") as handle:
            handle.write(xml)
    if image_bytes is not None:
        with open(os.path.join(voc_dir, voc_format.IMAGES_DIR, f"{image_id}.jpg"), "wb") as handle:
            handle.write(image_bytes)


def _image(width=100, height=80, image_format="JPEG"):
    noise = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format=image_format)
    return buffer.getvalue()


def _xml(objects, width=100, height=80, filename="000001.jpg"):
    return voc_format.annotation_to_xml(
        voc_format.VocAnnotation(filename=filename, width=width, height=height, objects=tuple(objects))
    )


def _png16(width=100, height=80):
    ramp = np.linspace(0, 65535, width * height).reshape(height, width).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG")
    return buffer.getvalue()


def _feature(example, key):
    feature = example.features.feature[key]
    return list(getattr(feature, feature.WhichOneof("kind")).value)


def test_sample_record_matches_tfds_arithmetic(small_voc_root):
    voc_dir = os.path.join(small_voc_root, "VOC2007")
    outcome = convert.convert_record(voc_dir, "000001", CLASSES)
    assert outcome.status == convert.WRITTEN
    with open(os.path.join(voc_dir, "Annotations", "000001.xml"), "rb") as handle:
        annotation = voc_format.parse_annotation_xml(handle.read())
    expected = []
    for obj in annotation.objects:  # tfds: ymin / height, xmin / width, ...
        expected += [obj.ymin / annotation.height, obj.xmin / annotation.width, obj.ymax / annotation.height, obj.xmax / annotation.width]
    np.testing.assert_allclose(_feature(outcome.example, features.BBOX), expected, rtol=1e-6)
    assert _feature(outcome.example, features.LABEL) == [CLASSES.index(o.name) for o in annotation.objects]
    with open(os.path.join(voc_dir, "JPEGImages", "000001.jpg"), "rb") as handle:
        assert _feature(outcome.example, features.IMAGE) == [handle.read()]  # stored byte for byte


GOOD_OBJECT = voc_format.VocObject("dog", 10, 10, 50, 40)


@pytest.mark.parametrize(
    "case, xml, image, status, reason",
    [
        ("truncated jpeg", _xml([GOOD_OBJECT]), _image()[:-200], convert.REJECTED, "truncated JPEG"),
        ("not an image", _xml([GOOD_OBJECT]), b"hello", convert.REJECTED, "unreadable image"),
        ("xml does not parse", "<annotation><size>", _image(), convert.REJECTED, "XML does not parse"),
        ("missing bndbox", _xml([GOOD_OBJECT]).replace("<bndbox>", "<box>").replace("</bndbox>", "</box>"), _image(), convert.REJECTED, "missing <bndbox>"),
        ("non-numeric coordinate", _xml([GOOD_OBJECT]).replace("<xmin>10</xmin>", "<xmin>ten</xmin>"), _image(), convert.REJECTED, "<xmin> is not a number"),
        ("unknown class", _xml([voc_format.VocObject("unicorn", 1, 1, 5, 5)]), _image(), convert.REJECTED, "unknown class name 'unicorn'"),
        ("box outside the image", _xml([voc_format.VocObject("dog", -5, 10, 150, 40)]), _image(), convert.REPAIRED, "clipped"),
        ("zero-area box", _xml([GOOD_OBJECT, voc_format.VocObject("cat", 20, 20, 20, 30)]), _image(), convert.REPAIRED, "no area; dropped"),
        ("size differs from the jpeg", _xml([GOOD_OBJECT], width=200, height=160), _image(), convert.REPAIRED, "differs from the image's 100x80"),
        ("png in JPEGImages", _xml([GOOD_OBJECT]), _image(image_format="PNG"), convert.REPAIRED, "re-encoded as JPEG"),
        ("no objects", _xml([]), _image(), convert.WRITTEN, None),
        ("nan coordinate", _xml([GOOD_OBJECT]).replace("<xmin>10</xmin>", "<xmin>nan</xmin>"), _image(), convert.REJECTED, "<xmin> is not a finite number: 'nan'"),
        ("infinite coordinate", _xml([GOOD_OBJECT]).replace("<ymax>40</ymax>", "<ymax>-inf</ymax>"), _image(), convert.REJECTED, "<ymax> is not a finite number"),
        ("infinite size", _xml([GOOD_OBJECT]).replace("<width>100</width>", "<width>inf</width>"), _image(), convert.REJECTED, "<width> is not a finite number"),
        ("oversized, header only", _xml([GOOD_OBJECT]), png_header_only(13000, 13000), convert.REJECTED, "image is 13000x13000 (169 megapixels), above the limit of 50"),
        ("filename differs", _xml([GOOD_OBJECT], filename="IMG_0001.JPG"), _image(), convert.REPAIRED, "<filename> 'IMG_0001.JPG' differs from the image on disk '000001.jpg'; used the image on disk"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 40 and "<" not in value else "",
)
def test_bad_input_corpus(tmp_path, case, xml, image, status, reason):
    _write_record(str(tmp_path), "000001", xml=xml, image_bytes=image)
    outcome = convert.convert_record(str(tmp_path), "000001", CLASSES)
    assert outcome.status == status, (case, outcome.reasons)
    if reason:
        assert any(reason in text for text in outcome.reasons), outcome.reasons
    if status != convert.REJECTED:
        encoded = _feature(outcome.example, features.IMAGE)[0]
        assert tf.io.decode_jpeg(encoded).shape[:2] == (80, 100)
        boxes = np.reshape(_feature(outcome.example, features.BBOX), (-1, 4))
        assert ((boxes >= 0) & (boxes <= 1)).all()


def test_16_bit_png_is_scaled_to_8_bits_not_clipped(tmp_path):
    _write_record(str(tmp_path), "000001", _xml([GOOD_OBJECT]), _png16())
    outcome = convert.convert_record(str(tmp_path), "000001", CLASSES)
    assert outcome.status == convert.REPAIRED and outcome.reasons == ["image re-encoded as JPEG"]
    pixels = tf.io.decode_jpeg(_feature(outcome.example, features.IMAGE)[0]).numpy().astype(float)
    assert abs(pixels.mean() - 127.5) < 2  # a 0..65535 ramp: mid-grey on average (PIL's own convert gives 254.5)
    assert pixels[0, 0].max() < 3 and pixels[-1, -1].min() > 252


def test_pixel_limit_is_a_setting(tmp_path):
    _write_record(str(tmp_path), "000001", _xml([GOOD_OBJECT]), _image())
    assert convert.convert_record(str(tmp_path), "000001", CLASSES, max_image_pixels=100 * 80).status == convert.WRITTEN
    outcome = convert.convert_record(str(tmp_path), "000001", CLASSES, max_image_pixels=100 * 80 - 1)
    assert outcome.status == convert.REJECTED and "above the limit" in outcome.reasons[0]


@pytest.mark.parametrize("image_id", ["../../../../outside/secret", "/etc/passwd", "..", "sub/dir", "a\\b"])
def test_image_ids_that_leave_the_dataset_are_rejected(tmp_path, image_id):
    outside = tmp_path / "outside"
    _write_record(str(outside), "secret", _xml([GOOD_OBJECT], filename="secret.jpg"), _image())
    os.makedirs(outside / "Annotations" / "secret", exist_ok=True)
    voc_dir = tmp_path / "data" / "VOC2007"
    _write_record(str(voc_dir), "000001", _xml([GOOD_OBJECT]), _image())
    outcome = convert.convert_record(str(voc_dir), image_id, CLASSES)
    assert outcome.status == convert.REJECTED
    assert outcome.reasons == [f"image id {image_id!r} is not a plain file name (it would read outside the dataset)"]


def test_image_beside_the_annotation_is_found_by_any_usual_extension(tmp_path):
    _write_record(str(tmp_path), "000001", _xml([GOOD_OBJECT], filename="000001.png"))
    with open(tmp_path / "JPEGImages" / "000001.png", "wb") as handle:
        handle.write(_image(image_format="PNG"))
    outcome = convert.convert_record(str(tmp_path), "000001", CLASSES)
    assert outcome.status == convert.REPAIRED and outcome.reasons == ["image re-encoded as JPEG"]
    assert outcome.source == str(tmp_path / "JPEGImages" / "000001.png")


def test_clipping_rule_clips_to_bounds(tmp_path):
    _write_record(str(tmp_path), "000001", _xml([voc_format.VocObject("dog", -5, 10, 150, 40)]), _image())
    outcome = convert.convert_record(str(tmp_path), "000001", CLASSES)
    np.testing.assert_allclose(_feature(outcome.example, features.BBOX), [10 / 80, 0.0, 40 / 80, 1.0], rtol=1e-6)


@pytest.mark.parametrize("missing", ["annotation", "image"])
def test_listed_record_with_a_missing_file_is_rejected(tmp_path, missing):
    _write_record(
        str(tmp_path),
        "000001",
        xml=None if missing == "annotation" else _xml([GOOD_OBJECT]),
        image_bytes=None if missing == "image" else _image(),
    )
    outcome = convert.convert_record(str(tmp_path), "000001", CLASSES)
    assert outcome.status == convert.REJECTED
    assert outcome.reasons == [f"no {missing} file"]
    assert outcome.source.endswith(".xml" if missing == "annotation" else ".jpg")


def test_parse_errors_name_the_file():
    with pytest.raises(voc_format.VocFormatError, match=r"^/data/a\.xml: XML does not parse"):
        voc_format.parse_annotation_xml("<annotation", source="/data/a.xml")


def test_xml_round_trip():
    annotation = voc_format.VocAnnotation(
        filename="a.jpg", width=10, height=20, objects=(voc_format.VocObject("cat", 1, 2, 3, 4, True, False, "left"),)
    )
    assert voc_format.parse_annotation_xml(voc_format.annotation_to_xml(annotation)) == annotation
