"""Where the pipeline's input lives, and which files feed each split.

Two formats come in, recognised from their layout:

- `voc`: VOC annotation XML and images, read by our Beam ExampleGen executor,
  in any of the layouts datasets and labelling tools write (`LAYOUTS`):
  VOCdevkit, CVAT's "PASCAL VOC 1.1" export, Label Studio's VOC export,
  LabelImg's flat folder, Roboflow's `train/ valid/ test/` folders;
- `tfds`: TensorFlow Datasets' `voc` build, `<year>/<version>/voc-<split>.tfrecord-*`,
  read by TFX's ImportExampleGen as they are.

Both give tfds's split names: `train`, `validation` and `test` (VOC's
`train.txt`, `val.txt`, `test.txt`; other tools' list or folder names map to
them case-insensitively, `SPLIT_ALIASES`). Data with no usable lists is split
by ExampleGen, by a hash of the image id (`split_by: hash`).

The pipeline reads one data root laid out as `<root>/<group>/VOC<name>/`,
where a group is a source folder or a span (`span-<N>`, for scheduled
retraining: ExampleGen takes the newest span unless a range is asked for).
`make_data_root` builds such a root of symbolic links from any number of
`--data` folders, whatever their layouts, so VOC2007, VOC2012 and a team's own
labels train together; the links keep reports naming the user's own files.
"""

from __future__ import annotations

import dataclasses
import glob
import os

from vocdet.components import safe_files, voc_example_gen, voc_format
from vocdet.components.voc_format import ANNOTATIONS_DIR, IMAGE_SETS_DIR, IMAGES_DIR
from vocdet.pipeline.data import link_tree

VOC = "voc"
TFDS = "tfds"
FORMATS = (VOC, TFDS)
SPLITS = ("train", "validation", "test")
# tfds split -> VOC ImageSets/Main list.
VOC_IMAGE_SETS = {"train": "train", "validation": "val", "test": "test"}
# List names (ImageSets/Main/<name>.txt) and split folder names other tools write -> our split.
SPLIT_ALIASES = {"train": "train", "val": "validation", "valid": "validation", "validation": "validation", "test": "test"}
SPAN_GROUP = "span-{SPAN}"
# How the splits are made: from the lists the data carries, or by ExampleGen from a hash of the image id.
SPLIT_BY_LISTS = "lists"
SPLIT_BY_HASH = "hash"
# "auto": lists when the data's lists give every split, else hash (`prepare_data_root` decides).
SPLIT_BY_AUTO = "auto"
SPLIT_BY_CHOICES = (SPLIT_BY_AUTO, SPLIT_BY_LISTS, SPLIT_BY_HASH)

# The layouts recognised, as the error for an unrecognised folder lists them.
LAYOUTS = {
    "VOCdevkit": "VOC<year>/Annotations, JPEGImages, ImageSets/Main",
    "CVAT": "Annotations, JPEGImages, ImageSets/Main/<subset>.txt",
    "Label Studio": "Annotations, images",
    "LabelImg": "images and their .xml side by side",
    "Roboflow": "train, valid, test folders of images and .xml",
    "tfds": "voc/<year>/<version>/voc-<split>.tfrecord-*",
}


class DataLayoutError(ValueError):
    """A --data folder whose layout is none of `LAYOUTS`."""


@dataclasses.dataclass(frozen=True)
class VocFolder:
    """One VOC-shaped folder of the data root: `Annotations/`, `JPEGImages/` and `ImageSets/Main/` lists.

    `annotations` and `images` are a folder to link, or {file name in the data root: file} to link one
    by one. `image_sets` maps our split names to a list file to link, or to the ids to write.
    """

    annotations: str | dict[str, str]
    images: str | dict[str, str]
    image_sets: dict[str, str | list[str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DataSource:
    """One recognised input folder: its format, layout, and VOC-shaped folders (tfds: version folders)."""

    format: str
    # name -> VocFolder for voc (`VOC<name>/` in the data root); year -> version folder for tfds.
    years: dict[str, "VocFolder | str"]
    layout: str = "VOCdevkit"
    # Things the layout leaves out, for the person to read (e.g. images without annotations).
    notes: tuple[str, ...] = ()

    def splits_listed(self) -> set[str]:
        """Our split names this source's lists (or split folders) give."""
        if self.format == TFDS:
            return set(SPLITS)
        return {split for folder in self.years.values() for split in folder.image_sets}


@dataclasses.dataclass(frozen=True)
class DataRoot:
    """What `make_data_root` built: the format, how to split, and a line per source for the person."""

    format: str
    split_by: str
    descriptions: tuple[str, ...]
    root: str = ""


def detect_source(path: str) -> DataSource:
    """Recognises any of `LAYOUTS` from the folder itself (or its usual parent levels)."""
    path = os.path.abspath(os.path.expanduser(path))
    if not _is_folder(path):
        raise DataLayoutError(f"{path}: {'not a folder' if os.path.lexists(path) else 'no such directory'}")
    for detect in (_vocdevkit, _voc_like_folder, _roboflow, _labelimg):
        source = detect(path)
        if source:
            return source
    tfds_years = _tfds_years(path)
    if tfds_years:
        for version in tfds_years.values():  # read by TFX's ImportExampleGen, which would block on a FIFO
            for record_file in glob.glob(os.path.join(version, "voc-*.tfrecord*")):
                try:
                    safe_files.check_file(record_file)
                except safe_files.UnsafeFileError as error:
                    raise DataLayoutError(str(error)) from None
        return DataSource(TFDS, tfds_years, layout="tfds")
    raise DataLayoutError(
        f"{path}: not a dataset layout vocdet reads; accepted: " + "; ".join(f"{name} ({shape})" for name, shape in LAYOUTS.items())
    )


def make_data_root(paths: list[str], root: str, splits: tuple[str, ...] = SPLITS) -> DataRoot:
    """Builds `<root>/<i>/VOC<name>/` (tfds: `<root>/<i>/<year>/`) links to the given folders.

    The split is `lists` when the sources' lists give every one of `splits`, else `hash`. The root is
    vocdet's own folder (`link_tree`): rebuilt touching only what vocdet made and recorded there, and
    refused, before anything is written, when it holds anything else (someone's data, say).
    """
    sources = [detect_source(path) for path in paths]
    formats = {source.format for source in sources}
    if len(formats) > 1:
        raise DataLayoutError(f"--data folders mix formats {sorted(formats)}; give one format per run")
    # A group left from an earlier run's longer --data list would be read too: the tree holds only these.
    wanted: dict[str, link_tree.Entry] = {}
    for index, source in enumerate(sources):
        group = str(index)
        wanted[group] = link_tree.folder()
        for year, folder in source.years.items():
            if source.format == VOC:
                _plan_voc_folder(folder, os.path.join(group, f"VOC{year}"), wanted)
            else:  # read by Beam, whose local file listing does not follow folder links
                wanted[os.path.join(group, year)] = link_tree.folder()
                for path in sorted(glob.glob(os.path.join(folder, "*"))):
                    wanted[os.path.join(group, year, os.path.basename(path))] = link_tree.link(path)
    try:
        link_tree.build(root, wanted, legacy=_made_by_earlier_vocdet)
    except link_tree.NotMadeByVocdet as error:
        raise DataLayoutError(str(error)) from None
    listed = set().union(*(source.splits_listed() for source in sources))
    split_by = SPLIT_BY_LISTS if set(splits) <= listed else SPLIT_BY_HASH
    descriptions = tuple(
        f"{path}: {source.layout} layout"
        + (f", lists for {', '.join(sorted(source.splits_listed()))}" if source.splits_listed() else ", no split lists")
        + "".join(f"; {note}" for note in source.notes)
        for path, source in zip(paths, sources)
    )
    return DataRoot(formats.pop(), split_by, descriptions, root)


def _made_by_earlier_vocdet(path: str, kind: str) -> bool:
    """Whether an entry of a data root without a record has the shape vocdet built before it kept one:
    numbered groups of folders and links, and the ImageSets lists it wrote; a real image or annotation never."""
    parts = path.split(os.sep)
    if not parts[0].isdigit():
        return False
    if kind in (link_tree.FOLDER, link_tree.LINK):
        return True
    return (kind == link_tree.TEXT and len(parts) == 5 and parts[1].startswith("VOC")
            and "/".join(parts[2:4]) == IMAGE_SETS_DIR and parts[4].endswith(".txt"))


def _plan_voc_folder(folder: VocFolder, target: str, wanted: dict[str, link_tree.Entry]) -> None:
    """Links (and, for split folders, lists) only: nothing is ever written through a link into the user's data."""
    wanted[target] = link_tree.folder()
    for name, part in ((ANNOTATIONS_DIR, folder.annotations), (IMAGES_DIR, folder.images)):
        path = os.path.join(target, name)
        if isinstance(part, str):  # read through tf.io.gfile, which follows folder links
            wanted[path] = link_tree.link(part)
        else:
            wanted[path] = link_tree.folder()
            for file_name, file_path in part.items():
                wanted[os.path.join(path, file_name)] = link_tree.link(file_path)
    lists_dir = os.path.join(target, IMAGE_SETS_DIR)
    wanted[os.path.dirname(lists_dir)] = link_tree.folder()
    wanted[lists_dir] = link_tree.folder()
    for split, image_set in folder.image_sets.items():
        list_path = os.path.join(lists_dir, f"{VOC_IMAGE_SETS[split]}.txt")
        if isinstance(image_set, str):
            wanted[list_path] = link_tree.link(image_set)
        else:
            wanted[list_path] = link_tree.text("".join(f"{image_id}\n" for image_id in image_set))


# A labels file is read whole, up to this size: some 500,000 class names (Open Images has 600).
LABELS_FILE_MAX_BYTES = 10_000_000


def class_names_from_data(
    data_root: str,
    data_format: str,
    max_annotation_bytes: int = voc_example_gen.DEFAULT_MAX_ANNOTATION_BYTES,
    max_objects_per_image: int = voc_example_gen.DEFAULT_MAX_OBJECTS_PER_IMAGE,
) -> list[str]:
    """The class list the data carries: tfds's labels file, or the names in the VOC annotations.

    Annotation names are lower-cased, as tfds's VOC builder does, so 'Dog' and 'dog' are one class.
    Annotations are read as ExampleGen reads them (`convert.read_annotation`: regular files only,
    within the limits); one that cannot be is skipped here, and ExampleGen rejects and reports it.
    """
    from vocdet.components.voc_example_gen import convert  # PIL and TensorFlow: only when scanning

    if data_format == TFDS:
        labels = sorted(glob.glob(os.path.join(data_root, "*", "*", "objects-label.labels.txt")))
        if not labels:
            raise DataLayoutError(f"{data_root}: tfds build without objects-label.labels.txt")
        return read_labels_file(labels[0])
    names = set()
    for path in glob.glob(os.path.join(data_root, "*", "VOC*", ANNOTATIONS_DIR, "*.xml")):
        try:
            annotation = convert.read_annotation(path, max_annotation_bytes, max_objects_per_image)
        except ValueError:  # UnsafeFileError, VocFormatError: ExampleGen rejects and reports it
            continue
        names.update(voc_format.folded_class_name(obj.name) for obj in annotation.objects)
    if not names:
        raise DataLayoutError(f"{data_root}: no object names in the annotations; give data.labels_file")
    return sorted(names)


def read_labels_file(path: str) -> list[str]:
    """One class name a line, in id order (tfds's *.labels.txt format).

    Two names that differ only in case are refused: annotations are matched to names case-insensitively.
    """
    try:
        text = safe_files.read_bytes(path, LABELS_FILE_MAX_BYTES).decode("utf-8")
    except safe_files.UnsafeFileError as error:
        raise DataLayoutError(str(error)) from None
    except UnicodeDecodeError:
        raise DataLayoutError(f"{path}: not a text file of class names (not UTF-8)") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DataLayoutError(f"{path}: labels file is empty")
    same = voc_format.names_equal_but_for_case(names)
    if same:
        raise DataLayoutError(
            f"{path}: {same[0]!r} and {same[1]!r} differ only in case, and annotations are matched to class names "
            "case-insensitively; keep one"
        )
    return names


def split_pattern(data_format: str, split: str, year: str = "*", spans: bool = False) -> str:
    """The ExampleGen input pattern, relative to the data root, for one split."""
    group = SPAN_GROUP if spans else "*"
    if data_format == VOC:
        return f"{group}/VOC{year}/ImageSets/Main/{VOC_IMAGE_SETS[split]}.txt"
    if data_format == TFDS:
        return f"{group}/{year}/voc-{split}.tfrecord*"
    raise ValueError(f"unknown data format {data_format!r}; expected one of {FORMATS}")


def annotations_pattern(year: str = "*", spans: bool = False) -> str:
    """The ExampleGen input pattern for every annotation, which ExampleGen then splits by hash."""
    return f"{SPAN_GROUP if spans else '*'}/VOC{year}/{ANNOTATIONS_DIR}/*.xml"


def _is_folder(path: str) -> bool:
    """Whether `path` is a folder, links followed; a link that leads nowhere (a loop, a missing target) is one line.

    `os.path.isdir` says False for those, and the layout they belong to would be skipped unsaid.
    """
    if os.path.isdir(path):
        return True
    if os.path.islink(path) and not os.path.exists(path):
        try:
            safe_files.check_file(path)  # raises, saying which
        except safe_files.UnsafeFileError as error:
            raise DataLayoutError(str(error)) from None
    return False


def _vocdevkit(path: str) -> DataSource | None:
    """`VOC<year>/` folders, in `path` or in its `VOCdevkit/`."""
    for parent in (path, os.path.join(path, "VOCdevkit")):
        if not _is_folder(parent):
            continue
        years = {
            name.removeprefix("VOC"): _voc_folder(os.path.join(parent, name), IMAGES_DIR)
            for name in sorted(os.listdir(parent))
            if name.startswith("VOC")
            and _is_folder(os.path.join(parent, name))
            and _is_folder(os.path.join(parent, name, ANNOTATIONS_DIR))
        }
        if years:
            return DataSource(VOC, years, layout="VOCdevkit")
    return None


def _voc_like_folder(path: str) -> DataSource | None:
    """One folder with `Annotations/` and `JPEGImages/` (a VOC year, or CVAT's export) or `images/` (Label Studio)."""
    if not _is_folder(os.path.join(path, ANNOTATIONS_DIR)):
        return None
    images = IMAGES_DIR if _is_folder(os.path.join(path, IMAGES_DIR)) else "images"
    folder = _voc_folder(path, images)
    name = os.path.basename(path)
    if images == "images":
        layout = "Label Studio"
    elif name.startswith("VOC") and set(folder.image_sets) == set(SPLITS):
        layout = "VOCdevkit"
    else:
        layout = "CVAT"
    return DataSource(VOC, {name.removeprefix("VOC"): folder}, layout=layout)


def _voc_folder(path: str, images: str) -> VocFolder:
    """Links to a VOC-shaped folder's parts; lists whose names map to our splits (case-insensitively)."""
    _is_folder(os.path.join(path, images))  # a link loop there would leave every record without its image
    image_sets = {}
    for list_path in sorted(glob.glob(os.path.join(path, IMAGE_SETS_DIR, "*.txt"))):
        split = SPLIT_ALIASES.get(os.path.basename(list_path)[: -len(".txt")].lower())
        if split and (split not in image_sets or os.path.basename(list_path) == f"{VOC_IMAGE_SETS[split]}.txt"):
            image_sets[split] = list_path  # VOC's own name wins over an alias
    return VocFolder(os.path.join(path, ANNOTATIONS_DIR), os.path.join(path, images), image_sets)


def _roboflow(path: str) -> DataSource | None:
    """`train/`, `valid/`, `test/` (any of `SPLIT_ALIASES`), each a flat folder of images and their .xml."""
    split_dirs = {
        SPLIT_ALIASES[name.lower()]: os.path.join(path, name)
        for name in sorted(os.listdir(path))
        if name.lower() in SPLIT_ALIASES
        and _is_folder(os.path.join(path, name))
        and glob.glob(os.path.join(path, name, "*.xml"))
    }
    if not split_dirs:
        return None
    annotations, images, image_sets, notes = {}, {}, {}, []
    for split, split_dir in sorted(split_dirs.items()):
        pairs = _flat_pairs(split_dir, notes)
        image_sets[split] = sorted(pairs)
        for image_id, (xml_path, image_paths) in pairs.items():
            if f"{image_id}.xml" in annotations:
                notes.append(f"{image_id} is in more than one split folder; the report lists it in each")
            annotations[f"{image_id}.xml"] = xml_path
            images.update((os.path.basename(image_path), image_path) for image_path in image_paths)
    return DataSource(VOC, {os.path.basename(path): VocFolder(annotations, images, image_sets)}, "Roboflow", tuple(notes))


def _labelimg(path: str) -> DataSource | None:
    """One flat folder of images with their .xml beside them (LabelImg's default)."""
    if not glob.glob(os.path.join(path, "*.xml")):
        return None
    notes = []
    pairs = _flat_pairs(path, notes)
    annotations = {f"{image_id}.xml": xml_path for image_id, (xml_path, _) in pairs.items()}
    images = {os.path.basename(image): image for _, image_paths in pairs.values() for image in image_paths}
    return DataSource(VOC, {os.path.basename(path): VocFolder(annotations, images)}, "LabelImg", tuple(notes))


def _flat_pairs(folder: str, notes: list[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """image id -> (its .xml, every image of that id) in one folder; images without an .xml noted.

    An id's images are those of any image extension in any case (`convert.image_id_of`): phones
    write `IMG_1.jpg` beside `IMG_1.JPG`. All are linked, and ExampleGen pairs the annotation with
    the one it describes (`convert.choose_image`, as for every layout), naming the others in the
    record's reasons.
    """
    from vocdet.components.voc_example_gen import convert  # PIL: only when a flat folder is read

    files = sorted(os.listdir(folder))
    images_by_id: dict[str, list[str]] = {}
    for name in files:
        image_id = convert.image_id_of(name)
        if image_id:
            images_by_id.setdefault(image_id, []).append(os.path.join(folder, name))
    pairs = {
        name[: -len(".xml")]: (os.path.join(folder, name), tuple(images_by_id.get(name[: -len(".xml")], ())))
        for name in files
        if name.endswith(".xml")
    }
    unannotated = [path for image_id in sorted(set(images_by_id) - set(pairs)) for path in images_by_id[image_id]]
    if unannotated:
        notes.append(
            f"{len(unannotated)} images in {folder} have no .xml beside them and are not used "
            f"(e.g. {os.path.basename(unannotated[0])})"
        )
    return pairs


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
