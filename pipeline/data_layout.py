"""Where the pipeline's input lives, and which files feed each split.

Two formats come in, recognised from their layout:

- `voc`: VOCdevkit folders, `VOC<year>/{Annotations,JPEGImages,ImageSets/Main}`,
  read by our Beam ExampleGen executor;
- `tfds`: TensorFlow Datasets' `voc` build, `<year>/<version>/voc-<split>.tfrecord-*`,
  read by TFX's ImportExampleGen as they are.

Both give tfds's split names: `train`, `validation` and `test` (VOC's
`train.txt`, `val.txt`, `test.txt`).

The pipeline reads one data root laid out as `<root>/<group>/<year level>`,
where a group is a source folder or a span (`span-<N>`, for scheduled
retraining: ExampleGen takes the newest span unless a range is asked for).
`make_data_root` builds such a root of symbolic links from any number of
`--data` folders, so VOC2007 and VOC2012 from different places train
together.
"""

from __future__ import annotations

import dataclasses
import glob
import os

VOC = "voc"
TFDS = "tfds"
FORMATS = (VOC, TFDS)
SPLITS = ("train", "validation", "test")
# tfds split -> VOC ImageSets/Main list.
VOC_IMAGE_SETS = {"train": "train", "validation": "val", "test": "test"}
SPAN_GROUP = "span-{SPAN}"


class DataLayoutError(ValueError):
    """A --data folder whose layout is neither VOCdevkit nor a tfds VOC build."""


@dataclasses.dataclass(frozen=True)
class DataSource:
    """One recognised input folder: its format and its year-level folders."""

    format: str
    # year -> folder: `VOC<year>/` for voc, `<year>/<version>/` for tfds.
    years: dict[str, str]


def detect_source(path: str) -> DataSource:
    """Recognises a VOCdevkit or tfds VOC folder from any of its usual levels."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        raise DataLayoutError(f"{path}: no such directory")
    voc_years = _voc_years(path) or _voc_years(os.path.join(path, "VOCdevkit"))
    if os.path.isdir(os.path.join(path, "Annotations")):
        voc_years = {os.path.basename(path).removeprefix("VOC"): path}
    if voc_years:
        return DataSource(VOC, voc_years)
    tfds_years = _tfds_years(path)
    if tfds_years:
        return DataSource(TFDS, tfds_years)
    raise DataLayoutError(
        f"{path}: not a VOCdevkit folder (VOC<year>/Annotations, JPEGImages, ImageSets/Main) "
        "nor a tfds VOC build (voc/<year>/<version>/voc-<split>.tfrecord-*)"
    )


def make_data_root(paths: list[str], root: str) -> str:
    """Builds `<root>/<i>/<year level>` links to the given folders; returns the format."""
    sources = [detect_source(path) for path in paths]
    formats = {source.format for source in sources}
    if len(formats) > 1:
        raise DataLayoutError(f"--data folders mix formats {sorted(formats)}; give one format per run")
    os.makedirs(root, exist_ok=True)
    for index, source in enumerate(sources):
        group = os.path.join(root, str(index))
        os.makedirs(group, exist_ok=True)
        for year, folder in source.years.items():
            if source.format == VOC:  # read through tf.io.gfile, which follows folder links
                _link(folder, os.path.join(group, f"VOC{year}"))
            else:  # read by Beam, whose local file listing does not follow folder links
                os.makedirs(os.path.join(group, year), exist_ok=True)
                for path in glob.glob(os.path.join(folder, "*")):
                    _link(path, os.path.join(group, year, os.path.basename(path)))
    return formats.pop()


def _link(target: str, link: str) -> None:
    if os.path.islink(link) and os.readlink(link) != target:
        os.unlink(link)
    if not os.path.islink(link):
        os.symlink(target, link)


def class_names_from_data(data_root: str, data_format: str) -> list[str]:
    """The class list the data carries: tfds's labels file, or the names in the VOC annotations."""
    from vocdet.components import voc_format

    if data_format == TFDS:
        labels = sorted(glob.glob(os.path.join(data_root, "*", "*", "objects-label.labels.txt")))
        if not labels:
            raise DataLayoutError(f"{data_root}: tfds build without objects-label.labels.txt")
        return read_labels_file(labels[0])
    names = set()
    for path in glob.glob(os.path.join(data_root, "*", "VOC*", voc_format.ANNOTATIONS_DIR, "*.xml")):
        with open(path, "rb") as handle:
            try:
                names.update(obj.name for obj in voc_format.parse_annotation_xml(handle.read(), source=path).objects)
            except voc_format.VocFormatError:
                continue  # ExampleGen rejects and reports it
    if not names:
        raise DataLayoutError(f"{data_root}: no object names in the annotations; give data.labels_file")
    return sorted(names)


def read_labels_file(path: str) -> list[str]:
    """One class name a line, in id order (tfds's *.labels.txt format)."""
    with open(path) as handle:
        names = [line.strip() for line in handle if line.strip()]
    if not names:
        raise DataLayoutError(f"{path}: labels file is empty")
    return names


def split_pattern(data_format: str, split: str, year: str = "*", spans: bool = False) -> str:
    """The ExampleGen input pattern, relative to the data root, for one split."""
    group = SPAN_GROUP if spans else "*"
    if data_format == VOC:
        return f"{group}/VOC{year}/ImageSets/Main/{VOC_IMAGE_SETS[split]}.txt"
    if data_format == TFDS:
        return f"{group}/{year}/voc-{split}.tfrecord*"
    raise ValueError(f"unknown data format {data_format!r}; expected one of {FORMATS}")


def _voc_years(path: str) -> dict[str, str]:
    if not os.path.isdir(path):
        return {}
    return {
        name.removeprefix("VOC"): os.path.join(path, name)
        for name in sorted(os.listdir(path))
        if name.startswith("VOC") and os.path.isdir(os.path.join(path, name, "Annotations"))
    }


def _tfds_years(path: str) -> dict[str, str]:
    """Year -> newest version folder, from a tfds data dir, its `voc/`, a year or a version folder."""
    for voc_dir in (os.path.join(path, "voc"), path):
        years = {}
        for year_dir in sorted(glob.glob(os.path.join(voc_dir, "*"))):
            versions = sorted(
                (v for v in glob.glob(os.path.join(year_dir, "*")) if glob.glob(os.path.join(v, "voc-*.tfrecord*"))),
                key=_version_key,
            )
            if versions:
                years[os.path.basename(year_dir)] = versions[-1]
        if years:
            return years
    if glob.glob(os.path.join(path, "voc-*.tfrecord*")):  # a version folder
        return {os.path.basename(os.path.dirname(path)): path}
    versions = sorted((v for v in glob.glob(os.path.join(path, "*")) if glob.glob(os.path.join(v, "voc-*.tfrecord*"))), key=_version_key)
    return {os.path.basename(path): versions[-1]} if versions else {}  # a year folder


def _version_key(path: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in os.path.basename(path).split("."))
    except ValueError:
        return (-1,)
