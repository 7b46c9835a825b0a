"""Does it learn? The whole pipeline on the generated sample, CPU configuration, <= 30 minutes.

Runs `vocdet run` with the recipe of the shipped checkpoint (`vocdet.pipeline.tools.sample_weights.RECIPE`:
the demo preset's architecture from random weights, 1,200 sample images, 30 epochs), on the
demo's own draw of the sample (seed 0), and reports the Trainer's wall time (from
ML Metadata) and the Evaluator's COCO mAP and mAP@0.5 on the sample's test
split. Target: mAP@0.5 >= 0.7.
"""

from __future__ import annotations

import shutil
import tempfile
import time

from ml_metadata import metadata_store

from vocdet.pipeline import config as config_lib
from vocdet.pipeline.data.root import prepare_data_root
from vocdet.pipeline.local import runner as local_runner
from vocdet.pipeline.local import summary as run_summary
from vocdet.pipeline.tools import sample_weights

# The checkpoint's recipe on the demo's draw of the sample.
RECIPE = {**sample_weights.RECIPE, "data": {**sample_weights.RECIPE["data"], "sample_seed": 0}}


def main() -> None:
    work = tempfile.mkdtemp(prefix="bench-learn-")
    try:
        started = time.perf_counter()
        config, data_root = prepare_data_root(config_lib.load(config_lib.LOCAL_PRESET, None, {**RECIPE, "output_dir": work}))
        summary = local_runner.run(config, data_root)
        total = time.perf_counter() - started
        trainer = run_summary.newest_trainer_execution(
            metadata_store.MetadataStore(local_runner.metadata_config(config))
        )
        trainer_minutes = (trainer.last_update_time_since_epoch - trainer.create_time_since_epoch) / 60000
        metrics = summary.metrics
        print(
            f"learn_sample: COCO mAP {metrics['coco/AP']:.3f}, mAP@0.5 {metrics['coco/AP50']:.3f} "
            f"(target 0.7) on {summary.num_eval_images} test images; "
            f"Trainer {trainer_minutes:.1f} min, whole pipeline {total / 60:.1f} min"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
