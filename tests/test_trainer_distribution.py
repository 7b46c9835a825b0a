"""The Trainer on more than one replica, and after being killed (GPU paths tested on CPU devices)."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.ports import free_ports

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Same initial weights and batch (no augmentation); one SGD step on one device and on a
# MirroredStrategy over two logical CPU devices must give the same loss and the same
# weight update. global_clipnorm is set low enough that clipping acts on that step.
_MIRRORED = r"""
import glob, json, sys
import vocdet.components  # pins tf.keras to Keras 3 before TensorFlow loads
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
import tensorflow_transform as tft
from vocdet.components.trainer import input_pipeline, optimization
from vocdet.components.trainer.retinanet import detector
from vocdet.pipeline import config as config_lib

# A frozen backbone keeps BatchNorm in inference mode: per-replica batch statistics would
# otherwise make 2 + 2 images differ from 4 by construction.
config = config_lib.demo().with_overrides(
    {"model": {"freeze_backbone": True},
     "train": {"optimizer": "sgd", "lr_schedule": "plateau", "global_clipnorm": float(sys.argv[2])}}
)
transform_output = tft.TFTransformOutput(sys.argv[1])
batches = input_pipeline.make_dataset(sys.argv[3:], transform_output, config.model, config.train, 4, training=False)
batches = batches.take(3).cache()
keras.utils.set_random_seed(0)
reference = detector.build_retinanet(config.model, len(config.data.class_names))
initial = reference.get_weights()
result = {}
for name, strategy in (("one_device", tf.distribute.get_strategy()),
                       ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
    with strategy.scope():
        model = detector.build_retinanet(config.model, len(config.data.class_names))
        model.set_weights(initial)
        optimization.compile_retinanet(model, config.train, 4, 10)
        model.optimizer.learning_rate = 0.01
    first = model.fit(batches.take(1), epochs=1, verbose=0).history["loss"]
    update = np.concatenate([(after - before).ravel() for after, before in zip(model.get_weights(), initial)])
    later = model.fit(batches, epochs=2, steps_per_epoch=1, verbose=0).history["loss"]
    result[name] = {"loss": first + later, "replicas": strategy.num_replicas_in_sync}
    result[name]["update"] = update.tolist()
one, two = np.array(result["one_device"].pop("update")), np.array(result["mirrored"].pop("update"))
result["update_norm"] = float(np.linalg.norm(one))
result["update_difference"] = float(np.linalg.norm(two - one) / np.linalg.norm(one))
print(json.dumps(result))
"""


def _transform_outputs(config):
    transform_output = max(glob.glob(os.path.join(config.pipeline_root, "Transform", "transform_graph", "*")))
    files = glob.glob(os.path.join(config.pipeline_root, "Transform", "transformed_examples", "*", "Split-train", "*"))
    return transform_output, files


@pytest.mark.e2e
@pytest.mark.parametrize("global_clipnorm", [10.0, 0.05], ids=["unclipped", "clipped"])
def test_mirrored_over_two_devices_matches_one_device(pipeline_run, global_clipnorm):
    config, _ = pipeline_run
    transform_output, files = _transform_outputs(config)
    completed = subprocess.run(
        [sys.executable, "-c", _MIRRORED, transform_output, str(global_clipnorm), *files],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["mirrored"]["replicas"] == 2 and result["one_device"]["replicas"] == 1
    # Loss normalised by the global batch's positive anchors, reported as the global loss.
    assert result["mirrored"]["loss"][0] == pytest.approx(result["one_device"]["loss"][0], rel=1e-4)
    # The same step: gradients summed over replicas, then clipped as one gradient.
    if global_clipnorm < 1:
        assert result["update_norm"] == pytest.approx(0.01 * global_clipnorm, rel=1e-3)  # clipping acted
    assert result["update_difference"] < 1e-3
    assert all(loss == loss for loss in result["mirrored"]["loss"])  # three steps, no NaN


# run_fn as TFX calls it, in a process of its own (argv: train config overrides as JSON,
# transform output, model run dir, serving model dir, train files...).
_TRAIN = r"""
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
from tfx.components.trainer.fn_args_utils import FnArgs
from vocdet.components.trainer.module import run_fn
from vocdet.pipeline import config as config_lib

train, transform_output, model_run_dir, serving_dir, *train_files = sys.argv[1:]
config = config_lib.demo().with_overrides({"train": json.loads(train)})
run_fn(FnArgs(train_files=train_files, transform_output=transform_output, serving_model_dir=serving_dir,
              model_run_dir=model_run_dir, custom_config=config.trainer_settings().to_custom_config()))
"""


@pytest.mark.e2e
def test_killed_vocdet_run_resumes_training_and_pushes_once(small_voc_root, tmp_path):
    """SIGKILL the real `vocdet run` in epoch 2 of 3, run the same command again: it resumes, then pushes once."""
    import yaml

    output = tmp_path / "out"
    overrides = tmp_path / "tiny.yaml"
    overrides.write_text(yaml.safe_dump({"model": {"eval_confidence_threshold": 0.0}}))
    vocdet = os.path.join(os.path.dirname(sys.executable), "vocdet")
    # Epochs long enough (8 steps) that the kill lands inside epoch 2.
    argv = [vocdet, "run", "--data", small_voc_root, "--output", str(output), "--config", str(overrides),
            "--epochs", "3", "--steps-per-epoch", "8", "--batch-size", "2", "--blessing-threshold", "0"]
    log = tmp_path / "first.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    try:
        deadline = time.time() + 900
        while "Epoch 2/3" not in log.read_text():  # epoch 1 finished and was backed up
            assert process.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the run and anything it started
        process.wait()
    backups = glob.glob(str(output / "pipeline_root" / "Trainer" / "resume" / "*" / "*"))
    assert backups, log.read_text()[-3000:]
    serving = output / "serving" / "vocdet"
    assert not serving.exists() or not os.listdir(serving)

    completed = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=1200)
    output_text = completed.stdout + completed.stderr
    assert completed.returncode == 0, output_text[-3000:]
    # Resumed, not restarted: it starts after the last epoch the killed run backed up (epoch 1, or
    # epoch 2 when that one finished between the log line and the kill).
    started = [int(epoch) for epoch in re.findall(r"Epoch (\d)/3", output_text)]
    reached = max(int(epoch) for epoch in re.findall(r"Epoch (\d)/3", log.read_text()))
    assert started and 2 <= started[0] <= reached, (started, reached)
    assert len([name for name in os.listdir(serving) if not name.startswith(".")]) == 1  # pushed once (not the lock file)
    assert not glob.glob(str(output / "pipeline_root" / "Trainer" / "resume" / "*" / "*"))  # Keras removed it


def test_backup_interrupted_mid_write_still_resumes(tmp_path):
    """A kill while the weights are written leaves the previous backup readable (keras-team/keras#20463)."""
    import keras
    import numpy as np

    from vocdet.components.trainer import resume

    def model():
        built = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        built.compile(optimizer="sgd", loss="mse")
        return built

    trained = model()
    callback = resume.backup_callback(str(tmp_path / "backup"))
    callback.set_model(trained)
    callback.on_epoch_end(0)  # epoch 1 backed up
    saved = [weights.copy() for weights in trained.get_weights()]

    def killed_while_writing(filepath, overwrite=True):
        with open(filepath, "wb") as handle:
            handle.write(b"\x89HDF half a file")
        raise KeyboardInterrupt  # stands for the SIGKILL

    trained.set_weights([weights + 1 for weights in saved])
    trained.save_weights = killed_while_writing
    with pytest.raises(KeyboardInterrupt):
        callback.on_epoch_end(1)

    restarted = model()
    callback = resume.backup_callback(str(tmp_path / "backup"))
    callback.set_model(restarted)
    callback.on_train_begin()
    assert restarted._initial_epoch == 1
    for restored, expected in zip(restarted.get_weights(), saved):
        np.testing.assert_array_equal(restored, expected)


@pytest.mark.e2e
def test_multi_worker_training_on_two_localhost_workers(pipeline_run, tmp_path):
    """TF_CONFIG with two workers: MultiWorkerMirroredStrategy, both finish, the chief exports."""
    config, _ = pipeline_run
    transform_output, files = _transform_outputs(config)
    train = json.dumps({"epochs": 2, "steps_per_epoch": 2, "batch_size_per_replica": 2})
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    run_dir, serving = tmp_path / "run", tmp_path / "model" / "Format-Serving"
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "CUDA_VISIBLE_DEVICES": ""}
        log = open(tmp_path / f"worker-{index}.log", "w")
        argv = [sys.executable, "-u", "-c", _TRAIN, train, transform_output, str(run_dir), str(serving), *files]
        processes.append((subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env), log))
    try:
        codes = [process.wait(timeout=900) for process, _ in processes]
    finally:
        for process, log in processes:
            process.kill()
            log.close()
    logs = [(tmp_path / f"worker-{index}.log").read_text() for index in range(2)]
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    for log in logs:
        assert "MultiWorkerMirroredStrategy over 2 replica(s)" in log
        assert "global batch 4" in log
    # One step, one loss: the reported loss is the global batch's on both workers.
    last_losses = [re.findall(r" - loss: ([0-9.]+)", log)[-1] for log in logs]
    assert last_losses[0] == last_losses[1]
    assert (serving / "saved_model.pb").exists()  # the chief's export
    assert (run_dir / "checkpoints" / "best.weights.h5").exists()
    assert (run_dir / ".worker-1" / "train").is_dir()  # worker 1 logs privately


def test_distributed_training_refuses_an_untested_keras():
    """The multi-replica corrections fail loudly under a Keras whose loss scaling they were not tested on."""
    import keras

    from vocdet.components.compat import keras as keras_compat

    keras_compat.check_distributed(2)  # the Keras of requirements.lock: tested
    assert keras.__version__.startswith("3.6.")
    keras_compat.check_distributed(2, "3.6.9")
    for version in ("3.7.0", "3.8.0", "3.5.0", "4.0.0"):
        keras_compat.check_distributed(1, version)  # one replica: the corrections do nothing
        with pytest.raises(RuntimeError, match=r"keras-team/keras#20609"):
            keras_compat.check_distributed(2, version)


def test_building_the_model_on_two_replicas_checks_the_keras_version(monkeypatch):
    """The check runs where the model is built, inside the strategy's scope."""
    import keras
    import tensorflow as tf

    from vocdet.components.trainer.retinanet import detector
    from vocdet.pipeline import config as config_lib

    class TwoReplicas:
        num_replicas_in_sync = 2

    monkeypatch.setattr(keras, "__version__", "3.8.0")
    monkeypatch.setattr(tf.distribute, "get_strategy", lambda: TwoReplicas())
    with pytest.raises(RuntimeError, match="Keras 3.8.0"):
        detector.build_retinanet(config_lib.demo().model, num_classes=3)
