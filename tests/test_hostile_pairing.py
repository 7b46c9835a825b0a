"""An annotation is paired with the photo it describes, and good phone photos are kept (issue 33).

Phones and cameras write `IMG_1.jpg` beside `IMG_1.JPG`: the annotation's image is chosen by
`<filename>`, then `<size>`, for every layout, the other named as not used, and a pair neither tells
apart is rejected naming both. Motion Photos (an MP4 after the JPEG's end) and Samsung trailers are
stored as their JPEG alone, a counted repair; a JPEG cut short is still rejected. Every input is
generated here: photos with PIL, trailers and case pairs by hand.
"""

import glob
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vocdet.components import features, safe_files, voc_format
from vocdet.components.voc_example_gen import convert
from vocdet.pipeline.data import layout as data_layout

CLASSES = ("cat", "dog")
VOCDET = os.path.join(os.path.dirname(sys.executable), "vocdet")
# What a Google Motion Photo appends after the JPEG's end: an MP4, whose first box is `ftyp`.
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00\x00\x00\x08free" + bytes(range(256)) * 40
# What a Samsung phone appends: tagged blocks, a directory (SEFH) and the trailer's own end tag (SEFT).
SAMSUNG_TRAILER = (
    b"\x00\x00\x01\x0aMotionPhoto_Data" + b"\xff\xd9\xff\xd8" * 50 + b"SEFH" + bytes(16) + b"\x20\x00\x00\x00SEFT"
)


def _photo(size, seed, **save_options) -> bytes:
    """A noisy RGB JPEG (noise, so its scan data holds FF00 stuffing), `size` = (width, height)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", **save_options)
    return buffer.getvalue()


def _xml(filename, size) -> str:
    annotation = voc_format.VocAnnotation(
        filename=filename,
        width=size[0],
        height=size[1],
        objects=(voc_format.VocObject("cat", 10, 10, 60, 50),),
    )
    return voc_format.annotation_to_xml(annotation)


def _stored_jpeg(outcome) -> bytes:
    return outcome.example.features.feature[features.IMAGE].bytes_list.value[0]


def _decoded_size(jpeg: bytes) -> tuple[int, int]:
    height, width, _ = tf.io.decode_jpeg(jpeg, channels=3).shape  # as training decodes it
    return width, height


def _voc_record(tmp_path, images: dict[str, bytes], xml: str, image_id="IMG_1") -> str:
    """A VOC folder holding one annotation and the given images in JPEGImages; returns the folder."""
    voc = tmp_path / "VOC"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    (voc / "Annotations" / f"{image_id}.xml").write_text(xml)
    for name, content in images.items():
        (voc / "JPEGImages" / name).write_bytes(content)
    return str(voc)


# --- several images with one id -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filename, size, chosen, rule",
    [
        ("IMG_1.jpg", (160, 120), "IMG_1.jpg", "<filename> 'IMG_1.jpg' names this image"),
        ("IMG_1.JPG", (160, 120), "IMG_1.JPG", "<filename> 'IMG_1.JPG' names this image"),  # filename before size
        ("C:\\phone\\img_1.jpeg", (160, 120), "IMG_1.JPEG", "<filename> 'img_1.jpeg' names this image but for case"),
        ("renamed.jpg", (96, 64), "IMG_1.JPG", "<size> 96x64 is this image's size"),
    ],
)
def test_the_image_the_annotation_describes_is_chosen_and_the_others_listed(tmp_path, filename, size, chosen, rule):
    photos = {"IMG_1.jpg": _photo((160, 120), 1), "IMG_1.JPG": _photo((96, 64), 2), "IMG_1.JPEG": _photo((80, 80), 3)}
    voc = _voc_record(tmp_path, photos, _xml(filename, size))
    outcome = convert.convert_record(voc, "IMG_1", CLASSES)
    assert outcome.status == convert.REPAIRED, outcome.reasons
    assert outcome.source == os.path.join(voc, "JPEGImages", chosen)
    assert hashlib.sha256(_stored_jpeg(outcome)).hexdigest() == hashlib.sha256(photos[chosen]).hexdigest()
    assert outcome.image_sha256 == hashlib.sha256(photos[chosen]).hexdigest()
    others = ", ".join(os.path.join(voc, "JPEGImages", name) for name in sorted(photos) if name != chosen)
    assert f"{rule}, one of 3 images with its id; not used: {others}" in outcome.reasons
    assert convert.SAME_ID_IMAGE_UNUSED in outcome.repairs


def test_size_in_either_frame_of_an_exif_turned_photo_picks_it(tmp_path):
    turned = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 160x120, displayed 120x160
    Image.fromarray(np.zeros((120, 160, 3), np.uint8)).save(turned, format="JPEG", exif=exif.tobytes())
    photos = {"IMG_1.jpg": _photo((160, 100), 1), "IMG_1.JPG": turned.getvalue()}
    for size in ((120, 160), (160, 120)):  # the displayed frame, and the stored one (a tool that ignored EXIF)
        record = tmp_path / f"{size[0]}x{size[1]}"
        voc = _voc_record(record, photos, _xml("DSC_0001.jpg", size))
        outcome = convert.convert_record(voc, "IMG_1", CLASSES)
        assert outcome.source.endswith("IMG_1.JPG") and convert.TURNED_UPRIGHT in outcome.repairs, outcome.reasons
        assert _decoded_size(_stored_jpeg(outcome)) == (120, 160)


def test_a_pair_neither_filename_nor_size_tells_apart_is_rejected_naming_both(tmp_path):
    photos = {"IMG_1.jpg": _photo((160, 120), 1), "IMG_1.JPG": _photo((160, 120), 2)}
    voc = _voc_record(tmp_path, photos, _xml("other.jpg", (160, 120)))
    outcome = convert.convert_record(voc, "IMG_1", CLASSES)
    images = os.path.join(voc, "JPEGImages")
    assert (outcome.status, outcome.source) == (convert.REJECTED, os.path.join(voc, "Annotations", "IMG_1.xml"))
    assert outcome.reasons == [
        "2 images have the annotation's id and neither <filename> 'other.jpg' nor <size> 160x120 tells which it "
        f"describes: {images}/IMG_1.JPG, {images}/IMG_1.jpg; name one in <filename>, or rename the others"
    ]


def test_the_only_image_of_an_id_is_used_whatever_filename_says(tmp_path):
    voc = _voc_record(tmp_path, {"IMG_1.Jpg": _photo((160, 120), 1)}, _xml("IMG_0001.JPG", (160, 120)))
    outcome = convert.convert_record(voc, "IMG_1", CLASSES)  # a mixed-case extension is found too
    assert outcome.status == convert.REPAIRED and outcome.repairs == [convert.FILENAME_DIFFERS]


def test_flat_folder_links_every_image_of_an_id_and_notes_only_unannotated_ones(tmp_path):
    folder = tmp_path / "labelimg"
    folder.mkdir()
    for name, seed in (("IMG_1.jpg", 1), ("IMG_1.JPG", 2), ("IMG_9.jpg", 3)):
        (folder / name).write_bytes(_photo((64, 48), seed))
    (folder / "IMG_1.xml").write_text(_xml("IMG_1.jpg", (64, 48)))
    root = tmp_path / "out" / "data-root"  # where a run builds it: records are named by the user's files
    built = data_layout.make_data_root([str(folder)], str(root))
    assert "1 images in" in built.descriptions[0] and "not used (e.g. IMG_9.jpg)" in built.descriptions[0]
    (voc,) = [os.path.join(root, "0", name) for name in os.listdir(root / "0")]
    assert sorted(os.listdir(os.path.join(voc, "JPEGImages"))) == ["IMG_1.JPG", "IMG_1.jpg"]
    outcome = convert.convert_record(voc, "IMG_1", CLASSES)
    assert outcome.source == str(folder / "IMG_1.jpg")  # the user's file, not the data root's link
    assert outcome.reasons[0].endswith(f"not used: {folder / 'IMG_1.JPG'}")


# --- data after the JPEG's end ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trailer, says",
    [
        (MP4, "a video: a Motion Photo's MP4"),
        (SAMSUNG_TRAILER, "a Samsung trailer (SEFH/SEFT)"),
        (_photo((32, 24), 9), "another JPEG: an MPO's next image, a depth or gain map"),
    ],
)
def test_a_phone_photo_with_data_after_its_end_is_stored_as_its_jpeg_alone(trailer, says):
    jpeg = _photo((160, 120), 1)
    image = convert.stored_image(jpeg + trailer)
    assert image.jpeg == jpeg
    size = safe_files.describe_size(len(trailer))
    assert image.trailer_stripped == f"{size} after the JPEG's end-of-image marker ({says}) stripped"
    assert _decoded_size(image.jpeg) == (160, 120)


def test_the_end_is_found_by_walking_segments_and_scans():
    options = [{}, {"progressive": True}, {"restart_marker_blocks": 1}, {"restart_marker_rows": 1}, {"quality": 100}]
    for save_options in options:
        jpeg = _photo((160, 120), 4, **save_options)
        scan = jpeg[jpeg.index(b"\xff\xda") :]
        assert b"\xff\x00" in scan, save_options  # stuffed FF bytes in the scan data
        if "restart_marker_blocks" in save_options or "restart_marker_rows" in save_options:
            assert b"\xff\xd0" in scan and b"\xff\xd6" in scan  # RST0 to RST6 at least
        assert convert.jpeg_end(jpeg + MP4) == len(jpeg), save_options
    # An EXIF thumbnail is a whole JPEG (with its own end marker) inside APP1: not the photo's end.
    thumbnail = io.BytesIO()
    Image.new("RGB", (16, 12), "red").save(thumbnail, format="JPEG")
    exif = Image.Exif()
    exif[0x010F] = "vocdet test camera"
    with_thumbnail = io.BytesIO()
    Image.open(io.BytesIO(_photo((160, 120), 5))).save(
        with_thumbnail, format="JPEG", exif=exif.tobytes() + thumbnail.getvalue()
    )
    data = with_thumbnail.getvalue()
    assert data.find(b"\xff\xd9") < len(data) - 2  # the thumbnail's end marker comes first
    assert convert.jpeg_end(data) == len(data)


def test_an_upright_jpeg_is_still_kept_byte_for_byte_and_zero_padding_too():
    jpeg = _photo((160, 120), 1)
    assert convert.stored_image(jpeg).jpeg == jpeg and not convert.stored_image(jpeg).trailer_stripped
    assert convert.stored_image(jpeg + bytes(100)).jpeg == jpeg + bytes(100)


@pytest.mark.parametrize("cut", ["mid-scan", "end marker only", "mid-scan, then a video", "before the scan"])
def test_a_truncated_jpeg_is_still_rejected(cut):
    jpeg = _photo((160, 120), 1, restart_marker_rows=1)
    scan = jpeg.index(b"\xff\xda")
    truncated = {
        "mid-scan": jpeg[: (scan + len(jpeg)) // 2],
        "end marker only": jpeg[:-2],
        "mid-scan, then a video": jpeg[: (scan + len(jpeg)) // 2] + MP4,
        "before the scan": jpeg[:scan],  # PIL finds no image in it
    }[cut]
    message = "unreadable image" if cut == "before the scan" else "truncated JPEG (no end-of-image marker)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        convert.stored_image(truncated)


def test_a_turned_motion_photo_is_turned_and_its_video_counted_as_stripped(tmp_path):
    turned = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((120, 160, 3), np.uint8)).save(turned, format="JPEG", exif=exif.tobytes())
    voc = _voc_record(tmp_path, {"IMG_1.jpg": turned.getvalue() + MP4}, _xml("IMG_1.jpg", (120, 160)))
    outcome = convert.convert_record(voc, "IMG_1", CLASSES)
    assert {convert.TURNED_UPRIGHT, convert.TRAILER_STRIPPED} <= set(outcome.repairs), outcome.reasons
    assert _decoded_size(_stored_jpeg(outcome)) == (120, 160)


def test_predict_reads_a_motion_photo(tmp_path):
    from vocdet.pipeline.tools import predict

    path = tmp_path / "motion.jpg"
    path.write_bytes(_photo((160, 120), 1) + MP4)
    assert predict.read_image(str(path), 10**6).size == (160, 120)


# --- the real command -------------------------------------------------------------------------------------------


def test_ingest_pairs_a_labelimg_case_pair_and_strips_phone_trailers(small_voc_root, tmp_path):
    voc = os.path.join(small_voc_root, "VOC2007")
    folder = tmp_path / "phone"
    folder.mkdir()
    for name in os.listdir(os.path.join(voc, "Annotations")):
        shutil.copy(os.path.join(voc, "Annotations", name), folder)
        shutil.copy(os.path.join(voc, "JPEGImages", name.replace(".xml", ".jpg")), folder)
    photos = {"IMG_1.jpg": _photo((160, 120), 1), "IMG_1.JPG": _photo((96, 64), 2)}
    ambiguous = {"IMG_2.jpg": _photo((160, 120), 3), "IMG_2.JPG": _photo((160, 120), 4)}
    motion, samsung = _photo((160, 120), 5), _photo((160, 120), 6)
    files = {**photos, **ambiguous, "IMG_3.jpg": motion + MP4, "IMG_4.jpg": samsung + SAMSUNG_TRAILER}
    for name, content in files.items():
        (folder / name).write_bytes(content)
    for image_id, filename in (("IMG_1", "IMG_1.jpg"), ("IMG_2", "x.jpg"), ("IMG_3", "IMG_3.jpg"), ("IMG_4", "")):
        (folder / f"{image_id}.xml").write_text(_xml(filename, (160, 120)))

    result = subprocess.run(
        [VOCDET, "ingest", "--data", str(folder), "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,  # about 15 s; a hang fails instead of blocking the suite
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    examples_uri = next(line.split(": ", 1)[1] for line in lines if line.strip().startswith("examples:"))
    report = os.path.join(examples_uri, "ingest_report")
    rows = {}
    for name in glob.glob(os.path.join(report, "records-*.jsonl")):
        with open(name) as handle:
            rows.update((os.path.basename(row["file"]), row) for row in map(json.loads, handle))
    assert rows["IMG_1.jpg"]["repairs"] == [convert.SAME_ID_IMAGE_UNUSED]
    assert rows["IMG_1.jpg"]["reasons"][0].endswith(f"not used: {folder / 'IMG_1.JPG'}")
    assert rows["IMG_2.xml"]["status"] == convert.REJECTED
    assert f"{folder}/IMG_2.JPG, {folder}/IMG_2.jpg" in rows["IMG_2.xml"]["reasons"][0]
    assert rows["IMG_3.jpg"]["repairs"] == rows["IMG_4.jpg"]["repairs"] == [convert.TRAILER_STRIPPED]
    with open(os.path.join(report, "repairs.json")) as handle:
        repairs = json.load(handle)
    assert sum(counts[convert.TRAILER_STRIPPED] for counts in repairs.values()) == 2
    assert sum(counts[convert.SAME_ID_IMAGE_UNUSED] for counts in repairs.values()) == 1
    printed = [line for line in lines if line.strip().startswith("repairs ")]
    assert any("trailer after the JPEG's end stripped" in line for line in printed), result.stdout
    assert any("1 other image with the same id not used" in line for line in printed), result.stdout

    stored = {}  # file name -> the JPEG bytes its example stores
    for record in tf.data.TFRecordDataset(glob.glob(os.path.join(examples_uri, "Split-*", "*")), compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        stored[feature[features.FILENAME].bytes_list.value[0].decode()] = feature[features.IMAGE].bytes_list.value[0]
    assert "IMG_1.JPG" not in stored and "IMG_2.jpg" not in stored and "IMG_2.JPG" not in stored
    assert (stored["IMG_1.jpg"], stored["IMG_3.jpg"], stored["IMG_4.jpg"]) == (photos["IMG_1.jpg"], motion, samsung)
    assert _decoded_size(stored["IMG_3.jpg"]) == (160, 120)
