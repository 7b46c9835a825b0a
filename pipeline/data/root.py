"""The data root a run reads: the one folder ExampleGen's input globs are relative to.

`vocdet run`, `vocdet ingest`, `vocdet run --package`, `make sample-weights` and the benchmarks
all get theirs here, the same way:

- a root laid out as `span-<N>/VOC<name>/...` is used as it is (ExampleGen resolves the span);
- any other `--data` folders, whatever their layouts, are linked VOC-shaped under
  `<output>/data-root` (`layout.make_data_root`);
- with no folders, the generated sample is made (or reused) and linked the same way.
"""

from __future__ import annotations

import glob
import os
from typing import TYPE_CHECKING

from vocdet.components import voc_example_gen
from vocdet.pipeline.data import layout, sample

if TYPE_CHECKING:
    from vocdet.pipeline.config import PipelineConfig

# The folder of links under a run's output folder.
DATA_ROOT_DIR = voc_example_gen.DATA_ROOT_DIR  # the converter names records through its links
# A span's folder: `span-<N>`, ExampleGen's `{SPAN}` pattern (layout.SPAN_GROUP).
_SPAN_GLOB = layout.SPAN_GROUP.replace("{SPAN}", "*")


def span_folders(root: str) -> list[str]:
    """The `span-<N>` folders of a span-laid-out root, oldest first (none for any other folder)."""
    return sorted(glob.glob(os.path.join(root, _SPAN_GLOB)))


def newest_span(root: str) -> tuple[str, layout.DataSource]:
    """(the newest span's folder, its layout) of a span root; a span that holds no VOC<name>/ folders raises."""
    spans = span_folders(root)
    if not spans:
        raise layout.DataLayoutError(f"{root}: no span-<N> folders")
    source = layout.detect_source(spans[-1])
    if source.layout not in ("VOCdevkit", "tfds"):
        raise layout.DataLayoutError(
            f"{spans[-1]}: a span must hold VOC<name>/ folders (Annotations, JPEGImages[, ImageSets/Main])"
        )
    return spans[-1], source


def link_data_root(data_dirs: list[str], output_dir: str, splits: tuple[str, ...] = layout.SPLITS) -> layout.DataRoot:
    """`<output_dir>/data-root`: links to `data_dirs`, VOC-shaped, whatever their layouts."""
    return layout.make_data_root(data_dirs, os.path.abspath(os.path.join(output_dir, DATA_ROOT_DIR)), splits)


def generated_sample(sample_dir: str, spec: sample.SampleSpec) -> str:
    """The generated sample in `sample_dir` (made, or reused when it is there with the same spec)."""
    sample.make_sample(sample_dir, spec)
    print(f"vocdet: sample data in {os.path.abspath(sample_dir)} ({spec.num_images} images)", flush=True)
    return sample_dir


def prepare_data_root(config: PipelineConfig) -> tuple[PipelineConfig, str]:
    """(config with data.format, split_by and class_names set, data root) for the folders the config names.

    With no folders, the generated sample (made or reused under output_dir). A span-laid-out root
    is used as it is; otherwise a root of links to the given folders is built under output_dir.
    """
    data = config.data
    data_dirs = data.data_dirs
    needed = tuple(data.train_splits + [data.eval_split])
    if data.spans:
        if len(data_dirs) != 1:
            raise layout.DataLayoutError("--spans takes exactly one --data root laid out as span-<N>/...")
        span, source = newest_span(data_dirs[0])
        split_by = layout.SPLIT_BY_LISTS if set(needed) <= source.splits_listed() else layout.SPLIT_BY_HASH
        data_format, descriptions = source.format, [f"{span}: {source.layout} layout (the newest span)"]
        root = os.path.abspath(data_dirs[0])
    else:
        if not data_dirs:
            spec = sample.SampleSpec(num_images=data.sample_images, seed=data.sample_seed)
            data_dirs = [generated_sample(config.sample_dir, spec)]
        built = link_data_root(data_dirs, config.output_dir, needed)
        data_format, split_by, descriptions, root = built.format, built.split_by, list(built.descriptions), built.root
    if data.split_by != layout.SPLIT_BY_AUTO:
        split_by = data.split_by
    for line in descriptions:
        print(f"vocdet: {line}", flush=True)
    if split_by == layout.SPLIT_BY_HASH:
        print("vocdet: splits derived by ExampleGen from a hash of each image id (data.derived_split)", flush=True)
    if data.labels_file:
        class_names = layout.read_labels_file(data.labels_file)
    elif data.class_names:
        class_names = data.class_names
    else:
        class_names = layout.class_names_from_data(root, data_format, data.max_annotation_bytes, data.max_objects_per_image)
    overrides = {"format": data_format, "class_names": class_names, "split_by": split_by}
    return config.with_overrides({"data": overrides}), root
