"""`vocdet evaluate`, `predict`, `freeze-schema` and `backbone-weights`: the tools around the pipeline."""

from __future__ import annotations

import argparse
import os
import sys

from vocdet.components.coco_evaluator import coco_files
from vocdet.pipeline import config as config_lib
from vocdet.pipeline.cli.errors import UsageError


def add_commands(commands) -> None:
    """Adds evaluate, backbone-weights, freeze-schema and predict to the `vocdet` parser's subcommands."""
    evaluate = commands.add_parser("evaluate", help="score COCO-format detections: COCO and VOC mAP, per class, report")
    evaluate.add_argument("--gt", required=True, help="COCO ground truth JSON (images, annotations, categories)")
    evaluate.add_argument("--dt", required=True, help="COCO results JSON (a list of image_id, category_id, bbox, score)")
    evaluate.add_argument("--out", default="outputs/evaluation", help="where metrics.json, report.md and the pictures go")
    evaluate.add_argument(
        "--min-score", type=float, default=None,
        help="the cut to report precision, recall and the confusion matrix at (default: the F1-optimal one of these detections)",
    )  # fmt: skip
    evaluate.add_argument(
        coco_files.DETECTIONS_FLAG, type=int, default=coco_files.MAX_DETECTIONS,
        help="refuse a detections file with more, counted as it is parsed (default %(default)s: twice VOC2007 "
        "test or COCO val2017 at 100 an image)",
    )  # fmt: skip
    evaluate.add_argument(
        coco_files.BYTES_FLAG, type=int, default=coco_files.MAX_JSON_BYTES,
        help="refuse a larger --gt or --dt file, checked from its size before reading (default %(default)s: "
        f"the detection limit at {coco_files.BYTES_PER_DETECTION} bytes a detection)",
    )  # fmt: skip
    evaluate.set_defaults(handler=_evaluate)

    weights = commands.add_parser(
        "backbone-weights", help="write a KerasCV ImageNet backbone as a local weights file (needs the network)"
    )
    weights.add_argument("preset", help="KerasCV preset: resnet50_imagenet or csp_darknet_tiny_imagenet")
    weights.add_argument("--out", required=True, help="the weights file to write (.weights.h5), for --backbone-weights")
    weights.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    weights.set_defaults(handler=_backbone_weights)

    freeze = commands.add_parser(
        "freeze-schema", help="write the schema a run inferred, curated, to a file to keep (for data.schema_file)"
    )
    freeze.add_argument("schema_file", help="where the schema goes, e.g. schema/schema.pbtxt")
    freeze.add_argument("--output", default=config_lib.DEFAULT_OUTPUT_DIR, help="the output folder of the run whose schema is frozen")
    freeze.set_defaults(handler=_freeze_schema)

    predict = commands.add_parser("predict", help="run a pushed model on images; draw and list the detections")
    predict.add_argument("--model", required=True, help="SavedModel folder, or serving base folder (newest version)")
    predict.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...), folders of them, or glob patterns")
    predict.add_argument("--out", default="outputs/predictions", help="where <image>.png and <image>.json go")
    predict.add_argument(
        "--min-score", type=float, default=None,
        help="lowest score shown (default: the model's recommended min score; for a model without one, "
        f"{config_lib.ModelConfig.display_confidence_threshold}, model.display_confidence_threshold)",
    )  # fmt: skip
    predict.add_argument(
        "--max-image-pixels",
        type=int,
        default=config_lib.DataConfig.max_image_pixels,
        help="larger images are skipped, checked from their header before decoding; so are image files too large to "
        "hold one (docs/data.md, Bad input), checked from their size before reading",
    )
    predict.set_defaults(handler=_predict)


def _evaluate(args: argparse.Namespace) -> int:
    if args.min_score is not None and not 0.0 <= args.min_score <= 1.0:
        raise UsageError(f"--min-score must be in [0, 1], got {args.min_score}")
    for flag, value in ((coco_files.DETECTIONS_FLAG, args.max_detections), (coco_files.BYTES_FLAG, args.max_json_bytes)):
        if value < 1:
            raise UsageError(f"{flag} must be positive, got {value}")
    try:
        ground_truth, detections, class_names = coco_files.load(args.gt, args.dt, args.max_detections, args.max_json_bytes)
    except coco_files.CocoFileError as error:
        raise UsageError(str(error)) from None
    _claim(args.out, "vocdet evaluate", [args.gt, args.dt])
    from vocdet.components.coco_evaluator import deployment, report, scoring, tide  # seconds to import: after the files are checked

    scores, curves = scoring.score(ground_truth, detections, class_names)
    analysis = deployment.analyse(ground_truth, detections, class_names, args.min_score)
    report.write_report(args.out, scores, curves, num_images=len(ground_truth["images"]), analysis=analysis,
                        scored_on=os.path.basename(args.gt))  # fmt: skip
    metrics = scores["metrics"]
    print(
        f"COCO mAP@[.5:.95] {metrics['coco/AP']:.4f}, mAP@0.5 {metrics['coco/AP50']:.4f}, "
        f"VOC2007 mAP@0.5 {metrics['voc/mAP50_11point']:.4f} on {len(ground_truth['images'])} images"
    )
    point = analysis["operating_point"]
    at = point["at_threshold"]
    source = "given" if args.min_score is not None else "F1-optimal on these detections"
    print(f"min score {point['threshold']:.3f} ({source}): precision {at['precision']:.3f}, recall {at['recall']:.3f}, "
          f"F1 {at['f1']:.3f}")  # fmt: skip
    errors = analysis["errors"]["errors"]
    print("errors (TIDE, dAP50): " + ", ".join(
        f"{tide.LABELS[kind]} {errors[kind]['dAP50']:.3f} ({errors[kind]['count']})" for kind in tide.ERRORS))  # fmt: skip
    print(f"report: {os.path.join(args.out, report.REPORT_FILE)} (curves, confusion matrix, errors)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from vocdet.pipeline.tools import predict

    if args.max_image_pixels < 1:
        raise UsageError(f"--max-image-pixels must be positive, got {args.max_image_pixels}")
    try:
        paths = predict.expand_inputs(args.images)
    except predict.PredictError as error:
        raise UsageError(str(error)) from None
    readable, refused = predict.readable_inputs(paths, args.max_image_pixels)  # before TensorFlow loads
    for problem in refused:
        print(f"vocdet predict: error: {problem}", file=sys.stderr)
    failures = len(refused)
    if not readable:
        return 1
    try:
        model_dir = predict.resolve_model_dir(args.model)
    except predict.PredictError as error:
        raise UsageError(str(error)) from None
    stems = predict.output_stems(readable)
    _claim(args.out, "vocdet predict", readable)
    serving_fn = predict.load_serving_fn(model_dir)
    min_score, source = predict.min_score(serving_fn, args.min_score)
    print(f"vocdet predict: {model_dir}, min score {min_score:.3f} ({source})")
    from tqdm import tqdm

    progress = tqdm(readable, unit="image", disable=len(readable) < 2 or not sys.stderr.isatty())
    for path in progress:
        try:
            picture, detections = predict.predict_file(
                serving_fn, path, args.out, min_score, args.max_image_pixels, stems[path]
            )
        except predict.PredictError as error:
            progress.write(f"vocdet predict: error: {error}", file=sys.stderr)
            failures += 1
            continue
        progress.write(f"{path}: {len(detections)} detections -> {picture}")
    return 1 if failures else 0


def _claim(folder: str, tool: str, inputs: list[str]) -> None:
    from vocdet.pipeline.tools import claimed_folder

    try:
        claimed_folder.claim(folder, tool, "--out", inputs)
    except claimed_folder.FolderNotOurs as error:
        raise UsageError(str(error)) from None


def _freeze_schema(args: argparse.Namespace) -> int:
    from vocdet.pipeline.data import frozen_schema

    try:
        source, class_names = frozen_schema.freeze(args.output, args.schema_file)
    except frozen_schema.FreezeError as error:
        raise UsageError(str(error)) from None
    print(f"vocdet freeze-schema: {args.schema_file} from {source} ({len(class_names)} classes)")
    print(f"  review it, keep it with the project, and set data.schema_file: {args.schema_file}")
    return 0


def _backbone_weights(args: argparse.Namespace) -> int:
    from vocdet.pipeline.tools import backbone_weights

    try:
        backbone = backbone_weights.write_backbone_weights(args.preset, args.out)
    except backbone_weights.DownloadError as error:
        raise UsageError(str(error)) from None
    print(f"vocdet backbone-weights: {args.out} ({args.preset}); train with --backbone {backbone} --backbone-weights {args.out}")
    return 0
