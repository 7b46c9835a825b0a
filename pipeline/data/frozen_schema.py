"""`vocdet freeze-schema`: the schema a run inferred, curated and written to a file kept with the project.

TFX's way for recurring pipelines: infer the schema once (SchemaGen), review
it, keep it under version control, and from then on import it (ImportSchemaGen)
and validate every data drop against it (ExampleValidator). Inference alone
cannot know the class list is closed, so the curation adds it: the label
features' values must be class ids of that run's class list. A drop whose
labels leave that range (a new class), that lacks a feature, or that is empty
then stops the run (`data.schema_file`).
"""

from __future__ import annotations

import os

import tensorflow as tf
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from vocdet.components import features, safe_files
from vocdet.pipeline import config as config_lib
from vocdet.pipeline.operations import source as store_source
from vocdet.components.voc_example_gen.executor import LABELS_FILE  # the class list beside the examples

SCHEMA_FILE = "schema.pbtxt"  # SchemaGen's file name in its output
LABEL_FEATURES = (features.LABEL, features.LABELS, features.LABELS_NO_DIFFICULT)
# The first line of every file `freeze` writes: the only kind of existing file it overwrites.
FROZEN_HEADER = "# Frozen by `vocdet freeze-schema`"


class FreezeError(ValueError):
    """Nothing to freeze; the message says what to run first."""


def freeze(output_dir: str, schema_path: str) -> tuple[str, list[str]]:
    """Writes the newest inferred schema in `output_dir`'s ML Metadata, curated; returns (source, class names).

    An existing `schema_path` is replaced only if an earlier freeze wrote it (`FROZEN_HEADER`), through a
    rename, so a file of the user's is never overwritten and a failed write never leaves half a schema.
    """
    _check_replaceable(schema_path)
    metadata_path = config_lib.metadata_path(output_dir)
    if not os.path.exists(metadata_path):
        raise FreezeError(f"{metadata_path}: no ML Metadata store; run `vocdet run --output {output_dir}` first")
    try:  # read-only checks first: ML Metadata would write its schema into an empty or foreign file
        store, _ = store_source.open_store(output_dir)
    except ValueError as error:
        raise FreezeError(str(error)) from None
    inferred = [artifact for artifact in store.get_artifacts_by_type("Schema") if "SchemaGen" in artifact.uri]
    if not inferred:
        raise FreezeError(f"{output_dir}: no schema inferred by SchemaGen yet; run `vocdet run` without data.schema_file")
    source = max(inferred, key=lambda artifact: artifact.id).uri
    schema = schema_pb2.Schema()
    text_format.Parse(tf.io.gfile.GFile(os.path.join(source, SCHEMA_FILE)).read(), schema)
    ingested = [artifact for artifact in store.get_artifacts_by_type("Examples") if "class_names" in artifact.custom_properties]
    if not ingested:
        raise FreezeError(f"{output_dir}: no examples from vocdet's VOC ExampleGen, whose class list the schema closes")
    class_names = _class_names(max(ingested, key=lambda artifact: artifact.id).uri)
    curate(schema, len(class_names))
    with open(f"{schema_path}.tmp", "w") as handle:
        handle.write(
            f"{FROZEN_HEADER} from {source}\n"
            f"# Classes ({len(class_names)}, ids 0..{len(class_names) - 1}): {', '.join(class_names)}\n"
            + text_format.MessageToString(schema)
        )
    os.replace(f"{schema_path}.tmp", schema_path)
    return source, class_names


def _check_replaceable(schema_path: str) -> None:
    """Refuses a path that holds anything but a schema an earlier freeze wrote."""
    if not os.path.lexists(schema_path):
        return
    try:
        head = safe_files.read_bytes(schema_path, 10_000_000, "a schema's size")[: len(FROZEN_HEADER)]
    except safe_files.UnsafeFileError as error:
        raise FreezeError(f"{error}; give the path of a new file") from None
    if head != FROZEN_HEADER.encode():
        raise FreezeError(
            f"{schema_path}: exists and was not written by `vocdet freeze-schema`; not overwritten: move it aside "
            "or give another path"
        )


def curate(schema: schema_pb2.Schema, num_classes: int) -> None:
    """Label features hold class ids of a closed list; every split has examples."""
    for feature in schema.feature:
        if feature.name in LABEL_FEATURES:
            feature.int_domain.min = 0
            feature.int_domain.max = num_classes - 1
    schema.dataset_constraints.min_examples_count = 1


def _class_names(examples_uri: str) -> list[str]:
    path = os.path.join(examples_uri, LABELS_FILE)
    return [line.strip() for line in tf.io.gfile.GFile(path).read().splitlines() if line.strip()]
