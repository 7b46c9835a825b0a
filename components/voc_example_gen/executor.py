"""Beam executor that reads VOCdevkit folders for TFX's FileBasedExampleGen.

Each split's `pattern` (relative to `input_base`) names ImageSets list files,
e.g. `VOC*/ImageSets/Main/trainval.txt`; the executor reads the ids they list
and converts each record with `convert.convert_record` on whatever Beam runner
`beam_pipeline_args` selects. TFX's base executor does the writing
(gzipped TFRecords per split), so span/version handling and fingerprints are
TFX's own.

Every record's outcome goes to a report beside the examples:
`<examples>/ingest_report/summary.json` (counts per split and status) and
`records-<split>.jsonl` (file, status, reasons: one row per listed image). The
counts are also set as custom properties on the Examples artefact, so they
are visible in ML Metadata. With `strict`, any rejection fails the run.
"""

from __future__ import annotations

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

from vocdet.components.voc_example_gen import convert

_logger = logging.getLogger(__name__)

REPORT_DIR = "ingest_report"
SUMMARY_FILE = "summary.json"
# Like tfds's objects-label.labels.txt: one class name a line, in id order.
LABELS_FILE = "objects-label.labels.txt"
CLASS_NAMES_KEY = "class_names"
STRICT_KEY = "strict"
_REPORT_URI_KEY = "_vocdet_report_uri"


def make_custom_config(class_names: list[str], strict: bool = False) -> example_gen_pb2.CustomConfig:
    """The ExampleGen `custom_config` this executor reads."""
    struct = struct_pb2.Struct()
    struct.update({CLASS_NAMES_KEY: list(class_names), STRICT_KEY: strict})
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

    def __init__(self, class_names: list[str]):
        self._class_names = class_names
        self._counters = {
            status: beam.metrics.Metrics.counter("vocdet", f"records_{status}")
            for status in (convert.WRITTEN, convert.REPAIRED, convert.REJECTED)
        }

    def process(self, record: tuple[str, str]):
        voc_dir, image_id = record
        outcome = convert.convert_record(voc_dir, image_id, self._class_names)
        self._counters[outcome.status].inc()
        if outcome.status == convert.REJECTED:
            _logger.warning("rejected %s: %s", outcome.source, "; ".join(outcome.reasons))
        else:
            # Serialized here once: TFX's WriteSplit takes bytes as they are.
            yield outcome.example.SerializeToString()
        yield beam.pvalue.TaggedOutput("report", outcome.report_row())


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _VocToExample(pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str):
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    class_names = read_custom_config(exec_properties)[CLASS_NAMES_KEY]
    list_files = sorted(tf.io.gfile.glob(os.path.join(input_base, split_pattern)))
    if not list_files:
        raise FileNotFoundError(f"{os.path.join(input_base, split_pattern)}: no ImageSets list matches")
    records = [(convert.voc_dir_of(path), image_id) for path in list_files for image_id in convert.read_image_set(path)]
    _logger.info("VOC ExampleGen: %d records listed by %s", len(records), ", ".join(list_files))

    results = (
        pipeline
        | "ListRecords" >> beam.Create(records)
        # Spread the records over workers before the expensive reads.
        | "Reshuffle" >> beam.Reshuffle()
        | "Convert" >> beam.ParDo(_ConvertRecords(class_names)).with_outputs("report", main="examples")
    )
    split_name = _split_name_for(exec_properties, split_pattern)
    report_dir = os.path.join(exec_properties[_REPORT_URI_KEY], REPORT_DIR)
    _ = (
        results.report
        | "ReportRows" >> beam.Map(lambda row: json.dumps(row, sort_keys=True))
        | "WriteReport"
        >> beam.io.WriteToText(
            os.path.join(report_dir, f"records-{split_name}"), file_name_suffix=".jsonl", shard_name_template=""
        )
    )
    return results.examples


def _split_name_for(exec_properties: dict[str, Any], split_pattern: str) -> str:
    input_config = example_gen_pb2.Input()
    json_format.Parse(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    return next(split.name for split in input_config.splits if split.pattern == split_pattern)


def summarize_report(report_dir: str) -> dict[str, dict[str, int]]:
    """Counts per split and status from the per-record report files."""
    summary = {}
    for path in sorted(tf.io.gfile.glob(os.path.join(report_dir, "records-*.jsonl"))):
        split = os.path.basename(path)[len("records-") : -len(".jsonl")]
        counts = {convert.WRITTEN: 0, convert.REPAIRED: 0, convert.REJECTED: 0}
        with tf.io.gfile.GFile(path) as handle:
            for line in handle:
                counts[json.loads(line)["status"]] += 1
        summary[split] = counts
    return summary


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """FileBasedExampleGen executor for VOCdevkit folders."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _VocToExample

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
        with tf.io.gfile.GFile(os.path.join(report_dir, SUMMARY_FILE), "w") as handle:
            json.dump(summary, handle, indent=2, sort_keys=True)
        totals = {status: sum(counts[status] for counts in summary.values()) for status in convert.OUTCOMES}
        for status, count in totals.items():
            examples.set_int_custom_property(f"records_{status}", count)
        lines = [
            f"  {split}: {counts[convert.WRITTEN] + counts[convert.REPAIRED]} written "
            f"({counts[convert.REPAIRED]} repaired), {counts[convert.REJECTED]} rejected"
            for split, counts in summary.items()
        ]
        _logger.info("VOC ExampleGen finished; report in %s\n%s", report_dir, "\n".join(lines))
        if strict and totals[convert.REJECTED]:
            raise ValueError(
                f"strict mode: {totals[convert.REJECTED]} records rejected; see {report_dir}/records-*.jsonl"
            )
