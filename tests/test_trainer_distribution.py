"""The Trainer on more than one replica, and after being killed (GPU paths tested on CPU devices)."""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Same initial weights, same batches (no augmentation), one fit step on one device and on a
# MirroredStrategy over two logical CPU devices: the first-step loss must agree.
_MIRRORED = r"""
import glob, json, sys
import components  # pins tf.keras to Keras 3 before TensorFlow loads
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from components.trainer import input_pipeline, model as model_lib
from pipeline import config as config_lib

# A frozen backbone keeps BatchNorm in inference mode: per-replica batch statistics would
# otherwise make 2 + 2 images differ from 4 by construction.
config = config_lib.demo().with_overrides({"model": {"freeze_backbone": True}})
files = sys.argv[1:]
batches = input_pipeline.make_dataset(files, config.model, config.train, 4, training=False).take(3).cache()
keras.utils.set_random_seed(0)
reference = model_lib.build_retinanet(config.model, len(config.data.class_names))
weights = reference.get_weights()
losses = {}
for name, strategy in (("one_device", tf.distribute.get_strategy()),
                       ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
    with strategy.scope():
        model = model_lib.build_retinanet(config.model, len(config.data.class_names))
        model.set_weights(weights)
        model_lib.compile_retinanet(model, config.train, 4, 10)
    history = model.fit(batches, epochs=3, steps_per_epoch=1, verbose=0)
    losses[name] = history.history["loss"]
    losses[name + "_replicas"] = strategy.num_replicas_in_sync
print(json.dumps(losses))
"""


@pytest.mark.e2e
@pytest.mark.xfail(
    strict=True,
    reason="KerasCV's RetinaNet divides each replica's loss by that replica's positive anchors, not the "
    "global count (first-step loss 1.825 mirrored vs 1.893 one device on this batch); the Trainer issue "
    "needs an all-reduced normaliser",
)
def test_mirrored_over_two_devices_matches_one_device(pipeline_run):
    import json

    config, _ = pipeline_run
    files = glob.glob(os.path.join(config.pipeline_root, "Transform", "transformed_examples", "*", "Split-train", "*"))
    completed = subprocess.run(
        [sys.executable, "-c", _MIRRORED, *files], capture_output=True, text=True, cwd=REPO, timeout=900
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    losses = json.loads(completed.stdout.strip().splitlines()[-1])
    assert losses["mirrored_replicas"] == 2 and losses["one_device_replicas"] == 1
    assert losses["mirrored"][0] == pytest.approx(losses["one_device"][0], rel=0.02)
    assert all(loss == loss for loss in losses["mirrored"])  # trained three steps, no NaN


_TRAIN = r"""
import sys
from tfx.components.trainer.fn_args_utils import FnArgs
from components.trainer.module import run_fn
from pipeline import config as config_lib

transform_output, model_run_dir, serving_dir, *train_files = sys.argv[1:]
config = config_lib.demo().with_overrides({"train": {"epochs": 3, "steps_per_epoch": 2, "batch_size_per_replica": 2}})
run_fn(FnArgs(train_files=train_files, transform_output=transform_output, serving_model_dir=serving_dir,
              model_run_dir=model_run_dir, custom_config=config.to_custom_config()))
"""


@pytest.mark.e2e
def test_killed_trainer_resumes_from_its_last_epoch(pipeline_run, tmp_path):
    config, _ = pipeline_run
    transform_output = max(glob.glob(os.path.join(config.pipeline_root, "Transform", "transform_graph", "*")))
    files = glob.glob(os.path.join(config.pipeline_root, "Transform", "transformed_examples", "*", "Split-train", "*"))
    argv = [sys.executable, "-u", "-c", _TRAIN, transform_output, str(tmp_path / "run"), str(tmp_path / "serving"), *files]
    log = tmp_path / "first.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.time() + 600
        while "Epoch 2/3" not in log.read_text():  # epoch 1 finished and was backed up
            assert process.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert glob.glob(str(tmp_path / "run" / "backup" / "**" / "*"), recursive=True)
    assert not (tmp_path / "serving" / "saved_model.pb").exists()

    completed = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    output = completed.stdout + completed.stderr
    assert "Epoch 1/3" not in output and "Epoch 2/3" in output  # resumed, not restarted from zero
    assert (tmp_path / "serving" / "saved_model.pb").exists()
