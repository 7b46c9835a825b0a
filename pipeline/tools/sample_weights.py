"""`make sample-weights`: trains vocdet's shipped `sample` checkpoint, reproducibly.

The demo preset's architecture is trained from random weights by the whole pipeline on a generated
sample of 1,200 images drawn with seed 1. The demo's data is drawn with seed 0, and every sample
image depends only on (seed, image id), so the checkpoint has seen no image of the demo's test
split. The trained weights are written as `components/trainer/checkpoints/<sample file>`, from
which the demo preset starts (`model.init_checkpoint: sample`).

    .venv/bin/python -m vocdet.pipeline.tools.sample_weights [--output DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from vocdet.pipeline import config as config_lib, console
from vocdet.pipeline.data.root import prepare_data_root

# The demo preset's recipe, longer and on more data (bench/learn_sample's), from random weights.
RECIPE = {
    "data": {"sample_images": 1200, "sample_seed": 1},
    "model": {"init_checkpoint": ""},
    # Trained on every train+validation image and its last epoch kept, as when it was made (2026-11-23).
    "train": {"warmup_steps": 100, "epochs": 30, "base_learning_rate": 0.004, "validation_freq": 0},
    "eval": {"blessing_threshold": 0.0},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vocdet.pipeline.tools.sample_weights", description=__doc__.splitlines()[0])
    parser.add_argument("--output", help="where the training run goes (default: a temporary folder)")
    args = parser.parse_args(argv)
    output = args.output or tempfile.mkdtemp(prefix="vocdet-sample-weights-")
    config = config_lib.load(config_lib.LOCAL_PRESET, None, {**RECIPE, "output_dir": output})
    console.quiet_logging(verbose=False)
    started = time.time()
    config, data_root = prepare_data_root(config)

    from ml_metadata.metadata_store import metadata_store

    from vocdet.components.trainer import checkpoint, warm_start
    from vocdet.components.trainer.retinanet import detector
    from vocdet.pipeline.local import runner as local_runner

    summary = local_runner.run(config, data_root)
    store = metadata_store.MetadataStore(local_runner.metadata_config(config))
    trained = max(store.get_artifacts_by_type("Model"), key=lambda artifact: artifact.id)
    model = detector.build_retinanet(config.model, num_classes=len(config.data.class_names))
    model.load_weights(warm_start.weights_path(os.path.join(trained.uri, "Format-Serving")))
    path = checkpoint.resolve("sample")
    metrics = summary.metrics
    provenance = (
        f"vocdet make sample-weights: demo architecture, {config.train.epochs} epochs from random weights on the "
        f"generated sample ({config.data.sample_images} images, seed {config.data.sample_seed}); "
        f"mAP@0.5 {metrics['coco/AP50']:.3f} on its own test split"
    )
    checkpoint.save(model, path, config.model, config.data.class_names, provenance)
    print(f"{path}: {os.path.getsize(path) / 2**20:.1f} MiB, in {(time.time() - started) / 60:.1f} min; {provenance}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
