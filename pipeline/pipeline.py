"""The vocdet TFX pipeline, built from a PipelineConfig; no I/O, no globals.

ExampleGen (VOCdevkit folders, Beam) -> StatisticsGen -> SchemaGen (or
ImportSchemaGen with the schema kept with the project, and ExampleValidator) ->
Transform (boxes to the model's bounding_box_format) -> Trainer (KerasCV
RetinaNet) -> CocoEvaluator (COCO and VOC mAP, blessing against the latest
blessed model) and ServingCheck (load and query in a fresh process) ->
Pusher (TFX's, with an atomic versioned copy, TF Serving layout). The local
runners and the Kubeflow compiler run this same definition; they only bind
the environment.
"""

from __future__ import annotations

import os

from tfx import v1 as tfx
from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from vocdet.components.atomic_pusher import executor as atomic_pusher
from vocdet.components.atomic_pusher.component import AtomicPusher
from vocdet.components.coco_evaluator.baseline import LatestBlessedBaselineStrategy
from vocdet.components.coco_evaluator.component import CocoEvaluator
from vocdet.components.example_validation.component import StoppingExampleValidator
from vocdet.components.serving_check.component import ServingCheck
from vocdet.components.voc_example_gen import executor as voc_example_gen
from vocdet.pipeline.data import layout as data_layout
from vocdet.pipeline.config import PipelineConfig

TRANSFORM_FN = "vocdet.components.transform.preprocessing_fn"
TRAINER_RUN_FN = "vocdet.components.trainer.module.run_fn"


def create_pipeline(
    config: PipelineConfig,
    data_root: str,
    metadata_connection_config=None,
    beam_pipeline_args: list[str] | None = None,
    pipeline_root: str | None = None,
) -> tfx.dsl.Pipeline:
    """The pipeline for `config`, reading VOCdevkit folders under `data_root`.

    `pipeline_root` defaults to the config's (under output_dir); the Kubeflow
    compiler passes the cluster's.
    """
    data = config.data
    splits = data.train_splits + [data.eval_split]

    example_gen = _example_gen(config, data_root)
    training_examples, span_resolvers = _training_examples(config, example_gen)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    if data.schema_file:
        # The schema kept with the project; a drop that breaks it stops the run before Transform.
        schema_gen = tfx.components.ImportSchemaGen(schema_file=data.schema_file)
        data_checks = [
            StoppingExampleValidator(
                statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
            ).with_id("ExampleValidator")
        ]
    else:
        schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"])
        data_checks = []
    transform = tfx.components.Transform(
        examples=training_examples,
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=TRANSFORM_FN,
        custom_config=config.transform_settings().to_custom_config(),
        splits_config=tfx.proto.SplitsConfig(analyze=data.fit_splits, transform=splits),
        # StatisticsGen already profiles the data; Transform's own TFDV pass would repeat it.
        disable_statistics=True,
    )
    for check in data_checks:
        transform.add_upstream_node(check)
    # The latest blessed model that no rollback withdrew: the Trainer's starting point with train.warm_start.
    latest_blessed_model = tfx.dsl.Resolver(
        strategy_class=LatestBlessedBaselineStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    trainer = tfx.components.Trainer(
        run_fn=TRAINER_RUN_FN,
        base_model=latest_blessed_model.outputs["model"] if config.train.warm_start else None,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=data.fit_splits),
        # The Trainer's eval files are its tuning data (decoder, score threshold); the eval split only scores.
        eval_args=tfx.proto.EvalArgs(splits=data.tuning_splits),
        custom_config=config.trainer_settings().to_custom_config(),
    )
    # The Evaluator's baseline: the latest blessed model other than this run's candidate.
    baseline_model = tfx.dsl.Resolver(
        strategy_class=LatestBlessedBaselineStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
        candidate=trainer.outputs["model"],
    ).with_id("baseline_model_resolver")
    evaluator = CocoEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline_model.outputs["model"],
        custom_config=config.evaluator_settings().to_custom_config(),
    )
    serving_check = ServingCheck(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        split=data.eval_split,
        num_images=config.push.serving_check_images,
    )
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=serving_check.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=os.path.join(config.serving_dir, config.push.model_name)
            )
        ),
        custom_config={
            atomic_pusher.KEEP_VERSIONS_KEY: config.push.keep_versions,
            atomic_pusher.REPLACE_UNKNOWN_KEY: config.push.replace_unknown_serving,
        },
    ).with_id("Pusher")
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=pipeline_root or config.pipeline_root,
        components=[
            example_gen,
            *span_resolvers,
            statistics_gen,
            schema_gen,
            *data_checks,
            transform,
            *([latest_blessed_model] if config.train.warm_start else []),
            trainer,
            baseline_model,
            evaluator,
            serving_check,
            pusher,
        ],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args if beam_pipeline_args is not None else config.beam_pipeline_args,
    )


def create_ingest_pipeline(
    config: PipelineConfig, data_root: str, metadata_connection_config=None, beam_pipeline_args: list[str] | None = None
) -> tfx.dsl.Pipeline:
    """ExampleGen alone, exactly as the full pipeline configures it (`vocdet ingest`)."""
    return tfx.dsl.Pipeline(
        pipeline_name=f"{config.pipeline_name}-ingest",
        pipeline_root=config.pipeline_root,
        components=[_example_gen(config, data_root)],
        enable_cache=False,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args if beam_pipeline_args is not None else config.beam_pipeline_args,
    )


def _training_examples(config: PipelineConfig, example_gen):
    """What Transform and the Trainer read: this run's examples, or the newest N spans ingested so far."""
    if config.data.train_on_last_spans == 1:
        return example_gen.outputs["examples"], []
    resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.SpanRangeStrategy,
        config={
            "range_config": tfx.proto.RangeConfig(
                rolling_range=tfx.proto.RollingRange(num_spans=config.data.train_on_last_spans)
            )
        },
        examples=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.Examples, producer_component_id=example_gen.id, output_key="examples"
        ),
    ).with_id("training_spans_resolver")
    resolver.add_upstream_node(example_gen)  # resolve after this run's span is ingested
    return resolver.outputs["examples"], [resolver]


def _example_gen(config: PipelineConfig, data_root: str):
    """Our Beam executor for VOC-format folders; TFX's ImportExampleGen for tfds builds."""
    data = config.data
    splits = data.train_splits + [data.eval_split]
    output_config = None
    if data.split_by == data_layout.SPLIT_BY_HASH:
        # One input split of every annotation; ExampleGen's own hash buckets make the output splits.
        input_config = example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(
                    name="annotations", pattern=data_layout.annotations_pattern(data.train_year, spans=data.spans)
                )
            ]
        )
        output_config = example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(
                splits=[example_gen_pb2.SplitConfig.Split(name=split, hash_buckets=data.derived_split[split]) for split in splits]
            )
        )
    else:
        input_config = example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(
                    name=split,
                    pattern=data_layout.split_pattern(
                        data.format,
                        split,
                        year=data.eval_year if split == data.eval_split else data.train_year,
                        spans=data.spans,
                    ),
                )
                for split in splits
            ]
        )
    range_config = (
        tfx.proto.RangeConfig(static_range=tfx.proto.StaticRange(start_span_number=data.span, end_span_number=data.span))
        if data.span
        else None
    )
    if data.format == data_layout.TFDS:
        return tfx.components.ImportExampleGen(input_base=data_root, input_config=input_config, range_config=range_config)
    return FileBasedExampleGen(
        input_base=data_root,
        input_config=input_config,
        output_config=output_config,
        range_config=range_config,
        custom_config=voc_example_gen.make_custom_config(
            data.class_names,
            strict=data.strict,
            max_image_pixels=data.max_image_pixels,
            max_annotation_bytes=data.max_annotation_bytes,
            max_objects_per_image=data.max_objects_per_image,
        ),
        custom_executor_spec=executor_spec.BeamExecutorSpec(voc_example_gen.Executor),
    )
