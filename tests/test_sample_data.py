import os

from vocdet.components import voc_format
from vocdet.pipeline.data import sample as sample_data


def test_layout_and_image_sets(small_voc_root):
    voc_dir = os.path.join(small_voc_root, "VOC2007")
    sets = {}
    for name in ("train", "val", "trainval", "test"):
        with open(os.path.join(voc_dir, "ImageSets", "Main", f"{name}.txt")) as handle:
            sets[name] = handle.read().split()
    assert sets["trainval"] == sets["train"] + sets["val"]
    assert not set(sets["trainval"]) & set(sets["test"])
    for image_id in sets["trainval"] + sets["test"]:
        assert os.path.exists(os.path.join(voc_dir, "JPEGImages", f"{image_id}.jpg"))
        assert os.path.exists(os.path.join(voc_dir, "Annotations", f"{image_id}.xml"))


def test_same_spec_gives_identical_files(tmp_path):
    spec = sample_data.SampleSpec(num_images=6, seed=3)
    first = sample_data.make_sample(str(tmp_path / "a"), spec)
    second = sample_data.make_sample(str(tmp_path / "b"), spec)
    for sub in ("JPEGImages", "Annotations"):
        for name in os.listdir(os.path.join(first, sub)):
            with open(os.path.join(first, sub, name), "rb") as a, open(os.path.join(second, sub, name), "rb") as b:
                assert a.read() == b.read(), name


def test_default_sample_is_honest():
    """All 20 classes, small objects, truncation and a few difficult ones, as the brief asks."""
    spec = sample_data.SampleSpec()
    objects, sizes = [], []
    for index in range(spec.num_images):
        _, annotation = sample_data.render_image(f"{index + 1:06d}", spec)
        assert 240 <= annotation.width <= 500 and 240 <= annotation.height <= 500
        objects.extend(annotation.objects)
        sizes.extend(min(o.xmax - o.xmin, o.ymax - o.ymin) for o in annotation.objects)
    assert {o.name for o in objects} == set(voc_format.VOC_CLASSES)
    assert sum(o.difficult for o in objects) >= 5
    assert sum(o.truncated for o in objects) >= 20
    assert sum(size < 32 for size in sizes) >= 0.2 * len(sizes)  # COCO "small"
    assert len(objects) / spec.num_images > 2.5


def test_annotations_parse_back(small_voc_root):
    path = os.path.join(small_voc_root, "VOC2007", "Annotations", "000001.xml")
    with open(path, "rb") as handle:
        annotation = voc_format.parse_annotation_xml(handle.read(), source=path)
    assert annotation.filename == "000001.jpg"
    assert annotation.objects and all(o.xmax > o.xmin and o.ymax > o.ymin for o in annotation.objects)
