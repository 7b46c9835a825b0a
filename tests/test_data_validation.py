"""A data drop that breaks the schema kept with the project stops the run before Transform."""

import os
import shutil

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
import yaml
from ml_metadata.metadata_store import metadata_store
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.orchestration import metadata
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs

from vocdet.components import voc_format
from vocdet.components.example_validation import executor
from vocdet.pipeline import cli
from vocdet.pipeline.data import frozen_schema
from vocdet.pipeline.local import summary as run_summary


def _statistics_artifact(tmp_path, split_examples):
    """A real ExampleStatistics artefact: TFDV's statistics of the given tf.Examples, per split."""
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(tmp_path / "statistics")
    artifact.split_names = artifact_utils.encode_split_names(list(split_examples))
    for split, examples in split_examples.items():
        records = tmp_path / f"{split}.tfrecord"
        with tf.io.TFRecordWriter(str(records)) as writer:
            for example in examples:
                writer.write(example.SerializeToString())
        statistics = tfdv.generate_statistics_from_tfrecord(str(records))
        split_dir = artifact_utils.get_split_uri([artifact], split)
        os.makedirs(split_dir, exist_ok=True)
        with open(os.path.join(split_dir, "FeatureStats.pb"), "wb") as handle:
            handle.write(statistics.SerializeToString())
    return artifact


def _example(labels, filename=True):
    feature = {"objects/label": tf.train.Feature(int64_list=tf.train.Int64List(value=labels))}
    if filename:
        feature["image/filename"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a.jpg"]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _run_validator(tmp_path, split_examples, schema):
    schema_artifact = standard_artifacts.Schema()
    schema_artifact.uri = str(tmp_path / "schema")
    os.makedirs(schema_artifact.uri)
    tfdv.write_schema_text(schema, os.path.join(schema_artifact.uri, "schema.pbtxt"))
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(tmp_path / "anomalies")
    executor.Executor().Do(
        {standard_component_specs.STATISTICS_KEY: [_statistics_artifact(tmp_path, split_examples)],
         standard_component_specs.SCHEMA_KEY: [schema_artifact]},
        {standard_component_specs.ANOMALIES_KEY: [anomalies]},
        {standard_component_specs.EXCLUDE_SPLITS_KEY: "[]"},
    )


def _frozen(tmp_path, num_classes=3):
    good = [_example([0, 1]), _example([2])]
    schema = tfdv.infer_schema(tfdv.generate_statistics_from_tfrecord(_write(tmp_path / "good.tfrecord", good)))
    frozen_schema.curate(schema, num_classes)
    return schema


def _write(path, examples):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example.SerializeToString())
    return str(path)


def test_data_that_keeps_the_schema_passes(tmp_path):
    _run_validator(tmp_path, {"train": [_example([0, 2]), _example([1])]}, _frozen(tmp_path))


@pytest.mark.parametrize(
    "case, examples, expected",
    [
        ("a new class id", [_example([0, 3]), _example([1])], "objects/label: Out-of-range values"),
        ("a missing feature", [_example([0], filename=False), _example([1], filename=False)], "image/filename: Column dropped"),
    ],
)
def test_a_drop_that_breaks_the_schema_stops_in_one_line(tmp_path, case, examples, expected):
    with pytest.raises(executor.DataAnomaliesError) as raised:
        _run_validator(tmp_path, {"train": examples}, _frozen(tmp_path))
    message = str(raised.value)
    assert "\n" not in message and message.startswith("the examples break the schema (train: ")
    assert expected in message, message
    assert f"Anomalies: {tmp_path}/anomalies/Split-*/SchemaDiff.pb" in message
    assert os.path.exists(tmp_path / "anomalies" / "Split-train" / "SchemaDiff.pb")


def test_curation_closes_the_class_list():
    schema = schema_pb2.Schema()
    for name in ("objects/label", "labels", "image/filename"):
        schema.feature.add(name=name)
    frozen_schema.curate(schema, 20)
    domains = {feature.name: (feature.int_domain.min, feature.int_domain.max) for feature in schema.feature}
    assert domains == {"objects/label": (0, 19), "labels": (0, 19), "image/filename": (0, 0)}
    assert schema.dataset_constraints.min_examples_count == 1


@pytest.mark.e2e
def test_a_span_with_a_new_class_stops_before_transform(pipeline_run, small_voc_root, tmp_path, capsys):
    config, _ = pipeline_run
    schema = tmp_path / "schema.pbtxt"
    assert cli.main(["freeze-schema", str(schema), "--output", config.output_dir]) == 0
    assert "int_domain" in schema.read_text() and "# Classes (20, ids 0..19)" in schema.read_text()

    root = tmp_path / "drops"
    for span in (1, 2):
        shutil.copytree(os.path.join(small_voc_root, "VOC2007"), root / f"span-{span}" / "VOC2007")
    # Span 2 brings a 21st class: one training annotation's object is a unicorn, and the class list grows.
    train_id = (root / "span-2" / "VOC2007" / "ImageSets" / "Main" / "train.txt").read_text().split()[0]
    xml = root / "span-2" / "VOC2007" / "Annotations" / f"{train_id}.xml"
    first_name = voc_format.parse_annotation_xml(xml.read_bytes()).objects[0].name
    xml.write_text(xml.read_text().replace(f"<name>{first_name}</name>", "<name>unicorn</name>", 1))
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join([*voc_format.VOC_CLASSES, "unicorn"]) + "\n")

    settings = tmp_path / "frozen.yaml"
    settings.write_text(yaml.safe_dump({"data": {"schema_file": str(schema)}, "model": {"eval_confidence_threshold": 0.0}}))
    span1 = tmp_path / "span1.yaml"
    span1.write_text(yaml.safe_dump({"data": {"schema_file": str(schema), "span": 1},
                                     "model": {"eval_confidence_threshold": 0.0}}))
    output = tmp_path / "out"
    common = ["run", "--data", str(root), "--spans", "--output", str(output), "--epochs", "1",
              "--steps-per-epoch", "2", "--batch-size", "4", "--blessing-threshold", "0"]

    # The first span keeps the schema: validated, then trained with the imported schema.
    assert cli.main([*common, "--config", str(span1)]) == 0
    capsys.readouterr()
    nodes = _newest_run_nodes(output)
    assert {"ImportSchemaGen", "ExampleValidator", "Transform", "Pusher"} <= set(nodes) and "SchemaGen" not in nodes

    # The drift stops at ExampleValidator, in one line naming the anomaly and its report.
    assert cli.main([*common, "--config", str(settings), "--labels", str(labels)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("vocdet run: error: the examples break the schema (")
    assert "objects/label: Out-of-range values" in error and "SchemaDiff.pb" in error
    nodes = _newest_run_nodes(output)
    assert nodes["ExampleValidator"].last_known_state == nodes["ExampleValidator"].FAILED
    assert "Transform" not in nodes and "Trainer" not in nodes


def _newest_run_nodes(output):
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(str(output / "metadata.sqlite")))
    run = max(store.get_contexts_by_type("pipeline_run"), key=lambda context: context.id)
    return run_summary.run_nodes(store, run)
