"""Beam executor that reads VOCdevkit folders for TFX's FileBasedExampleGen.

Records are found in one of two ways, from the input pattern (relative to
`input_base`):

- ImageSets lists (`VOC*/ImageSets/Main/train.txt`): one input split per list
  pattern; the ids they list are the records;
- annotation files (`VOC*/Annotations/*.xml`), for data without usable lists:
  one input split, and ExampleGen's `output_config` hash buckets name the
  output splits and their shares. The bucket is a hash of the image id (not of
  the record, as TFX's default partition does), so an image stays in its
  split when images are added or its boxes are corrected.

Each record is converted with `convert.convert_record` on whatever Beam runner
`beam_pipeline_args` selects. TFX's base executor does the writing (gzipped
TFRecords per split), so span/version handling and fingerprints are TFX's own.

Every record's outcome goes to a report beside the examples, `<examples>/ingest_report/`:
`summary.json` (counts per split and status), `repairs.json` (per split, the
records of each kind of repair, `convert.REPAIR_KINDS`: turned upright,
rescaled from `<size>`, ...), `records-<split>.jsonl` (file, status, reasons,
repair kinds, image digest: one row per listed image), `split.json` (how the
split was made) and `duplicates.json` (the same image twice in a split, or in
several splits: leakage). The counts are also custom properties of the
Examples artefact, so they are visible in ML Metadata. A split with no example
fails the run, naming it; with `strict`, so do any rejection (naming the first
file) and any leakage.
"""

from __future__ import annotations

import bisect
import collections
import hashlib
import itertools
import json
import logging
import os
from typing import Any

import apache_beam as beam
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs

from vocdet.components.voc_example_gen import (
    DEFAULT_MAX_ANNOTATION_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_OBJECTS_PER_IMAGE,
    convert,
)

_logger = logging.getLogger(__name__)

REPORT_DIR = "ingest_report"
SUMMARY_FILE = "summary.json"
REPAIRS_FILE = "repairs.json"
SPLIT_FILE = "split.json"
DUPLICATES_FILE = "duplicates.json"
# Like tfds's objects-label.labels.txt: one class name a line, in id order.
LABELS_FILE = "objects-label.labels.txt"
CLASS_NAMES_KEY = "class_names"
STRICT_KEY = "strict"
MAX_IMAGE_PIXELS_KEY = "max_image_pixels"
MAX_ANNOTATION_BYTES_KEY = "max_annotation_bytes"
MAX_OBJECTS_PER_IMAGE_KEY = "max_objects_per_image"
_REPORT_URI_KEY = "_vocdet_report_uri"


def make_custom_config(
    class_names: list[str],
    strict: bool = False,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_annotation_bytes: int = DEFAULT_MAX_ANNOTATION_BYTES,
    max_objects_per_image: int = DEFAULT_MAX_OBJECTS_PER_IMAGE,
) -> example_gen_pb2.CustomConfig:
    """The ExampleGen `custom_config` this executor reads."""
    struct = struct_pb2.Struct()
    struct.update({
        CLASS_NAMES_KEY: list(class_names),
        STRICT_KEY: strict,
        MAX_IMAGE_PIXELS_KEY: max_image_pixels,
        MAX_ANNOTATION_BYTES_KEY: max_annotation_bytes,
        MAX_OBJECTS_PER_IMAGE_KEY: max_objects_per_image,
    })
    custom_config = example_gen_pb2.CustomConfig()
    custom_config.custom_config.Pack(struct)
    return custom_config


def read_custom_config(exec_properties: dict[str, Any]) -> dict[str, Any]:
    serialized = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not serialized:
        raise ValueError("VOC ExampleGen needs custom_config with class_names (see make_custom_config)")
    custom_config = example_gen_pb2.CustomConfig()
    json_format.Parse(serialized, custom_config)
    struct = struct_pb2.Struct()
    custom_config.custom_config.Unpack(struct)
    return json_format.MessageToDict(struct)


class _ConvertRecords(beam.DoFn):
    """(voc_dir, image_id) -> tf.Example, with every outcome reported on a side output."""

    def __init__(
        self,
        class_names: list[str],
        max_image_pixels: int,
        strict: bool = False,
        max_annotation_bytes: int = DEFAULT_MAX_ANNOTATION_BYTES,
        max_objects_per_image: int = DEFAULT_MAX_OBJECTS_PER_IMAGE,
    ):
        self._class_names = class_names
        self._max_image_pixels = max_image_pixels
        self._strict = strict
        self._max_annotation_bytes = max_annotation_bytes
        self._max_objects_per_image = max_objects_per_image
        self._counters = {
            status: beam.metrics.Metrics.counter("vocdet", f"records_{status}")
            for status in convert.OUTCOMES
        }

    def process(self, record: tuple[str, str]):
        voc_dir, image_id = record
        outcome = convert.convert_record(
            voc_dir,
            image_id,
            self._class_names,
            self._max_image_pixels,
            self._strict,
            max_annotation_bytes=self._max_annotation_bytes,
            max_objects_per_image=self._max_objects_per_image,
        )
        self._counters[outcome.status].inc()
        if outcome.status == convert.REJECTED:
            _logger.warning("rejected %s: %s", outcome.source, "; ".join(outcome.reasons))
        else:
            # Serialized here once: TFX's WriteSplit takes bytes as they are.
            yield outcome.example.SerializeToString()
        yield beam.pvalue.TaggedOutput("report", outcome.report_row())


def list_records(input_base: str, pattern: str) -> list[tuple[str, str]]:
    """(VOC folder, image id) for every record the pattern finds: ids in ImageSets lists, or annotation files."""
    files = sorted(tf.io.gfile.glob(os.path.join(input_base, pattern)))
    if pattern.endswith(".xml"):
        if not files:
            raise FileNotFoundError(f"{os.path.join(input_base, pattern)}: no annotation file matches")
        return [(os.path.dirname(os.path.dirname(path)), os.path.basename(path)[: -len(".xml")]) for path in files]
    if not files:
        raise FileNotFoundError(f"{os.path.join(input_base, pattern)}: no ImageSets list matches")
    return [(convert.voc_dir_of(path), image_id) for path in files for image_id in convert.read_image_set(path)]


def derived_split(image_id: str, split_config: example_gen_pb2.SplitConfig) -> str:
    """The output split of an image: its id's SHA-256 in the hash buckets, as TFX's `_PartitionFn` does with a record."""
    boundaries = list(itertools.accumulate(split.hash_buckets for split in split_config.splits))
    bucket = int(hashlib.sha256(image_id.encode()).hexdigest(), 16) % boundaries[-1]
    return split_config.splits[bisect.bisect(boundaries, bucket)].name


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _VocToExample(pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str):
    """TFX's per-input-split entry: the records of one ImageSets list pattern."""
    records = list_records(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
    _logger.info("VOC ExampleGen: %d records listed by %s", len(records), split_pattern)
    return pipeline | _ConvertSplit(exec_properties, records, _split_name_for(exec_properties, split_pattern))


@beam.ptransform_fn
def _ConvertSplit(pipeline: beam.Pipeline, exec_properties: dict[str, Any], records: list, split_name: str):
    """Converts one split's records; writes their report rows to `records-<split>.jsonl`."""
    custom_config = read_custom_config(exec_properties)
    convert_records = _ConvertRecords(
        custom_config[CLASS_NAMES_KEY],
        int(custom_config.get(MAX_IMAGE_PIXELS_KEY, DEFAULT_MAX_IMAGE_PIXELS)),
        bool(custom_config.get(STRICT_KEY, False)),
        max_annotation_bytes=int(custom_config.get(MAX_ANNOTATION_BYTES_KEY, DEFAULT_MAX_ANNOTATION_BYTES)),
        max_objects_per_image=int(custom_config.get(MAX_OBJECTS_PER_IMAGE_KEY, DEFAULT_MAX_OBJECTS_PER_IMAGE)),
    )
    results = (
        pipeline
        | f"ListRecords[{split_name}]" >> beam.Create(records)
        # Spread the records over workers before the expensive reads.
        | f"Reshuffle[{split_name}]" >> beam.Reshuffle()
        | f"Convert[{split_name}]" >> beam.ParDo(convert_records).with_outputs("report", main="examples")
    )
    report_dir = os.path.join(exec_properties[_REPORT_URI_KEY], REPORT_DIR)
    _ = (
        results.report
        | f"ReportRows[{split_name}]" >> beam.Map(lambda row: json.dumps(row, sort_keys=True))
        | f"WriteReport[{split_name}]"
        >> beam.io.WriteToText(
            os.path.join(report_dir, f"records-{split_name}"), file_name_suffix=".jsonl", shard_name_template=""
        )
    )
    return results.examples


def _split_name_for(exec_properties: dict[str, Any], split_pattern: str) -> str:
    input_config = example_gen_pb2.Input()
    json_format.Parse(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    return next(split.name for split in input_config.splits if split.pattern == split_pattern)


def _output_split_config(exec_properties: dict[str, Any]) -> example_gen_pb2.SplitConfig:
    output_config = example_gen_pb2.Output()
    json_format.Parse(exec_properties.get(standard_component_specs.OUTPUT_CONFIG_KEY) or "{}", output_config)
    return output_config.split_config


def summarize_report(report_dir: str) -> dict[str, dict[str, int]]:
    """Counts per split and status from the per-record report files."""
    summary = {}
    for split, rows in _report_rows(report_dir):
        counts = {status: 0 for status in convert.OUTCOMES}
        for row in rows:
            counts[row["status"]] += 1
        summary[split] = counts
    return summary


def count_repairs(report_dir: str) -> dict[str, dict[str, int]]:
    """Per split, the records of each kind of repair (`convert.REPAIR_KINDS`, every kind, 0 included)."""
    counts = {}
    for split, rows in _report_rows(report_dir):
        kinds = collections.Counter(kind for row in rows for kind in row.get("repairs", []))
        counts[split] = {kind: kinds[kind] for kind in convert.REPAIR_KINDS}
    return counts


def repair_lines(examples_uri: str) -> list[str]:
    """A line per split with repairs, for a person: `repairs train: 3 turned upright, 2 rescaled from <size>`.

    No lines for examples without a VOC ingest report (tfds data, read by ImportExampleGen).
    """
    path = os.path.join(examples_uri, REPORT_DIR, REPAIRS_FILE)
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as handle:
        counts = json.load(handle)
    return [
        f"repairs {split}: "
        + ", ".join(f"{by_kind[kind]} {words}" for kind, words in convert.REPAIR_KINDS.items() if by_kind.get(kind))
        + f"; see {os.path.join(examples_uri, REPORT_DIR)}/records-{split}.jsonl"
        for split, by_kind in sorted(counts.items())
        if any(by_kind.values())
    ]


def _report_rows(report_dir: str):
    """(split, its report rows) for each `records-<split>.jsonl`."""
    for path in sorted(tf.io.gfile.glob(os.path.join(report_dir, "records-*.jsonl"))):
        with tf.io.gfile.GFile(path) as handle:
            yield os.path.basename(path)[len("records-") : -len(".jsonl")], [json.loads(line) for line in handle]


def first_rejection(report_dir: str) -> str | None:
    """`file: reason` of the first rejected record (splits in name order), or None."""
    for _, rows in _report_rows(report_dir):
        for row in rows:
            if row["status"] == convert.REJECTED:
                return f"{row['file']}: {'; '.join(row['reasons'])}"
    return None


def find_duplicates(report_dir: str) -> dict[str, Any]:
    """Images (by content digest) twice in one split, or in several splits, from the per-record reports."""
    files_by_digest = collections.defaultdict(lambda: collections.defaultdict(list))
    for split, rows in _report_rows(report_dir):
        for row in rows:
            if row.get("image_sha256"):
                files_by_digest[row["image_sha256"]][split].append(row["file"])
    repeated = [
        {"split": split, "files": sorted(files)}
        for by_split in files_by_digest.values()
        for split, files in by_split.items()
        if len(files) > 1
    ]
    in_several_splits = [
        {split: sorted(files) for split, files in sorted(by_split.items())}
        for by_split in files_by_digest.values()
        if len(by_split) > 1
    ]
    return {
        "repeated_within_split": sorted(repeated, key=str),
        "in_several_splits": sorted(in_several_splits, key=str),
    }


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """FileBasedExampleGen executor for VOCdevkit folders."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _VocToExample

    def GenerateExamplesByBeam(self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]):
        """TFX's own, except that hash-bucket output splits are keyed by image id (see the module docstring)."""
        split_config = _output_split_config(exec_properties)
        if not split_config.splits:
            return super().GenerateExamplesByBeam(pipeline, exec_properties)
        input_config = example_gen_pb2.Input()
        json_format.Parse(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        pattern = input_config.splits[0].pattern
        records = list_records(exec_properties[standard_component_specs.INPUT_BASE_KEY], pattern)
        by_split = {split.name: [] for split in split_config.splits}
        for record in records:
            by_split[derived_split(record[1], split_config)].append(record)
        _logger.info(
            "VOC ExampleGen: %d records found by %s, split by image id: %s",
            len(records), pattern, ", ".join(f"{name} {len(split)}" for name, split in by_split.items()),
        )
        return {
            name: pipeline | f"InputToRecord[{name}]" >> _ConvertSplit(exec_properties, split_records, name)
            for name, split_records in by_split.items()
        }

    def Do(self, input_dict, output_dict, exec_properties):
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        exec_properties = dict(exec_properties, **{_REPORT_URI_KEY: examples.uri})
        strict = bool(read_custom_config(exec_properties).get(STRICT_KEY, False))
        super().Do(input_dict, output_dict, exec_properties)

        # The class list travels with the data: ids in the examples index this file.
        class_names = read_custom_config(exec_properties)[CLASS_NAMES_KEY]
        with tf.io.gfile.GFile(os.path.join(examples.uri, LABELS_FILE), "w") as handle:
            handle.write("".join(f"{name}\n" for name in class_names))
        examples.set_string_custom_property(CLASS_NAMES_KEY, ",".join(class_names))

        report_dir = os.path.join(examples.uri, REPORT_DIR)
        summary = summarize_report(report_dir)
        split_method = describe_split(exec_properties)
        duplicates = find_duplicates(report_dir)
        repairs = count_repairs(report_dir)
        for name, content in (
            (SUMMARY_FILE, summary), (REPAIRS_FILE, repairs), (SPLIT_FILE, split_method), (DUPLICATES_FILE, duplicates)
        ):
            with tf.io.gfile.GFile(os.path.join(report_dir, name), "w") as handle:
                json.dump(content, handle, indent=2, sort_keys=True)
        totals = {status: sum(counts[status] for counts in summary.values()) for status in convert.OUTCOMES}
        for status, count in totals.items():
            examples.set_int_custom_property(f"records_{status}", count)
        for kind in convert.REPAIR_KINDS:
            examples.set_int_custom_property(f"records_{kind}", sum(counts[kind] for counts in repairs.values()))
        examples.set_string_custom_property("split_method", split_method["description"])
        examples.set_int_custom_property("images_repeated_within_split", len(duplicates["repeated_within_split"]))
        examples.set_int_custom_property("images_in_several_splits", len(duplicates["in_several_splits"]))
        lines = [
            f"  {split}: {counts[convert.WRITTEN] + counts[convert.REPAIRED]} written "
            f"({counts[convert.REPAIRED]} repaired), {counts[convert.REJECTED]} rejected"
            for split, counts in summary.items()
        ]
        lines += [f"  {line}" for line in repair_lines(examples.uri)]
        _logger.info("VOC ExampleGen finished; report in %s\n%s", report_dir, "\n".join(lines))
        _check_outcome(summary, duplicates, report_dir, strict)


def describe_split(exec_properties: dict[str, Any]) -> dict[str, Any]:
    """How the splits were made, for the report and the run summary."""
    split_config = _output_split_config(exec_properties)
    input_config = example_gen_pb2.Input()
    json_format.Parse(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    if not split_config.splits:
        patterns = {split.name: split.pattern for split in input_config.splits}
        return {"method": "lists", "patterns": patterns, "description": "from the ImageSets lists"}
    total = sum(split.hash_buckets for split in split_config.splits)
    shares = {split.name: split.hash_buckets / total for split in split_config.splits}
    return {
        "method": "hash",
        "key": "image id",
        "shares": shares,
        "description": "derived (no usable ImageSets lists): SHA-256 of the image id into "
        + " / ".join(f"{name} {share:.0%}" for name, share in shares.items())
        + "; an image keeps its split when others are added",
    }


def _check_outcome(summary: dict, duplicates: dict, report_dir: str, strict: bool) -> None:
    """Fails the run, in one line, on an empty split; under `strict`, on rejections and on leakage."""
    for split, counts in summary.items():
        if counts[convert.WRITTEN] + counts[convert.REPAIRED] == 0:
            listed = sum(counts.values())
            raise ValueError(
                f"split {split!r} has no examples ({listed} listed, {counts[convert.REJECTED]} rejected); "
                f"see {report_dir}/records-{split}.jsonl"
            )
    rejected = sum(counts[convert.REJECTED] for counts in summary.values())
    if strict and rejected:
        raise ValueError(
            f"strict mode: {rejected} records rejected (first: {first_rejection(report_dir)}); "
            f"see {report_dir}/records-*.jsonl"
        )
    leaked = duplicates["in_several_splits"]
    if leaked:
        example = "; ".join(f"{split}: {files[0]}" for split, files in leaked[0].items())
        message = f"{len(leaked)} images are in more than one split (e.g. {example}); see {report_dir}/{DUPLICATES_FILE}"
        if strict:
            raise ValueError(f"strict mode: {message}")
        _logger.warning(message)
