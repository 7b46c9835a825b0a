"""The checks in front of vocdet's workarounds of library internals (`vocdet.components.compat`).

Each check passes on the installed releases (requirements.lock) and, on a faked newer release,
stops with one line that names the library, the version, the upstream issue and the test to re-run.
"""

import json
import subprocess
import sys

import pytest

import vocdet.components  # noqa: F401  (Keras 3 before TensorFlow)
from vocdet.components import compat


def test_importing_compat_loads_no_tensorflow_keras_or_tfx():
    code = (
        "import sys, json, vocdet.components.compat\n"
        "print(json.dumps([m for m in ('tensorflow', 'keras', 'keras_cv', 'tfx') if m in sys.modules]))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == []


def test_check_tested_matches_release_prefixes():
    kwargs = dict(workaround="w", issue="i", test="t", constant="c", alternative="a")
    compat.check_tested("Keras", "3.6.0", ("3.6.",), **kwargs)
    compat.check_tested("Keras", "3.6.12", ("3.5.", "3.6."), **kwargs)
    with pytest.raises(compat.UntestedVersion) as raised:
        compat.check_tested("Keras", "3.60.0", ("3.5.", "3.6."), **kwargs)
    assert str(raised.value) == (
        "Keras 3.60.0: vocdet's w relies on a Keras internal tested on Keras 3.5.x, Keras 3.6.x only (i); "
        "re-run t and widen c, or a"
    )
    assert issubclass(compat.UntestedVersion, RuntimeError)


def test_the_installed_releases_pass_every_check(tmp_path):
    from vocdet.components.compat import keras as keras_compat
    from vocdet.components.compat import keras_cv as keras_cv_compat
    from vocdet.components.compat import tfx as tfx_compat

    keras_compat.check_distributed(2)
    assert isinstance(keras_compat.backup_and_restore(str(tmp_path / "backup")), keras_compat.AtomicBackupAndRestore)
    for check in (
        keras_cv_compat.check_narrow_layers,
        keras_cv_compat.check_loss,
        keras_cv_compat.check_label_encoder,
        keras_cv_compat.check_jittered_resize,
        keras_cv_compat.check_random_flip,
        tfx_compat.check_pusher,
    ):
        check()


def test_multi_replica_training_under_a_newer_keras_is_stopped():
    from vocdet.components.compat import keras as keras_compat

    with pytest.raises(compat.UntestedVersion) as raised:
        keras_compat.check_distributed(2, "3.8.0")
    assert str(raised.value) == (
        "Keras 3.8.0: vocdet's multi-replica loss and clipping correction (components/compat/keras.py) relies on a "
        "Keras internal tested on Keras 3.6.x only (keras-team/keras#20609); re-run tests/test_trainer_distribution.py "
        "and widen compat.keras.DISTRIBUTED_TESTED, or train on one replica (2 replicas would not take one device's step)"
    )


def test_single_replica_under_a_newer_keras_is_not_stopped(monkeypatch):
    import keras

    from vocdet.components.compat import keras as keras_compat

    class Replicas:
        def __init__(self, count):
            self.num_replicas_in_sync = count

    keras_compat.check_distributed(1, "3.8.0")
    monkeypatch.setattr(keras, "__version__", "3.8.0")
    keras_compat.check_distributed(1)
    # The train step's multi-worker test: on one replica, no Keras internal is imported or called.
    assert keras_compat.is_multi_worker(Replicas(1)) is False
    with pytest.raises(compat.UntestedVersion, match="Keras 3.8.0"):
        keras_compat.is_multi_worker(Replicas(2))


def test_single_device_training_step_under_a_newer_keras(monkeypatch):
    """Build, compile and train one step of a small RetinaNet on one device with Keras faked as 3.8.0."""
    import keras
    import numpy as np
    import tensorflow as tf

    from vocdet.components.settings import ModelConfig, TrainConfig
    from vocdet.components.trainer import optimization
    from vocdet.components.trainer.retinanet import detector

    monkeypatch.setattr(keras, "__version__", "3.8.0")
    model_config = ModelConfig(
        backbone="csp_darknet_tiny", image_size=128, anchor_size=2.0, pyramid_filters=16, head_conv_layers=1, max_boxes=2
    )
    train_config = TrainConfig(optimizer="adam", lr_schedule="plateau", warmup_steps=0)
    model = detector.build_retinanet(model_config, num_classes=2)
    optimization.compile_retinanet(model, train_config, global_batch_size=2, total_steps=1)
    images = np.random.default_rng(0).uniform(0, 255, (2, 128, 128, 3)).astype(np.float32)
    boxes = {
        "boxes": np.array([[[10, 10, 50, 40], [-1, -1, -1, -1]], [[60, 20, 40, 80], [-1, -1, -1, -1]]], np.float32),
        "classes": np.array([[0, -1], [1, -1]], np.float32),
    }
    history = model.fit(tf.data.Dataset.from_tensor_slices((images, boxes)).batch(2), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_backup_under_a_keras_with_neither_workaround_nor_double_checkpoint_is_stopped(tmp_path):
    import keras

    from vocdet.components.compat import keras as keras_compat

    assert keras.__version__.startswith("3.6.")  # whose BackupAndRestore has no double_checkpoint
    with pytest.raises(compat.UntestedVersion) as raised:
        keras_compat.backup_and_restore(str(tmp_path / "backup"), "3.8.0")
    assert str(raised.value) == (
        "Keras 3.8.0: vocdet's atomic BackupAndRestore (components/compat/keras.py) relies on a Keras internal "
        "tested on Keras 3.6.x only (keras-team/keras#20463); re-run tests/test_trainer_distribution.py and widen "
        "compat.keras.BACKUP_TESTED, or use a Keras whose BackupAndRestore has double_checkpoint (keras-team/keras#20465)"
    )


_KERAS_CV_MESSAGES = {
    "check_narrow_layers": (
        "KerasCV 0.10.0: vocdet's narrowing of the feature pyramid and heads (compat.keras_cv.NarrowFeaturePyramid, "
        "NarrowPredictionHead) relies on a KerasCV internal tested on KerasCV 0.9.x only (keras_cv 0.9.0 "
        "keras_cv/src/models/object_detection/retinanet/feature_pyramid.py and prediction_head.py, 256 filters "
        "fixed); re-run tests/test_trainer_export.py and widen compat.keras_cv.NARROW_LAYERS_TESTED, or install "
        "keras-cv==0.9.0 (requirements.lock)"
    ),
    "check_loss": (
        "KerasCV 0.10.0: vocdet's globally normalised RetinaNet loss (compat.keras_cv.GloballyNormalisedLoss) relies "
        "on a KerasCV internal tested on KerasCV 0.9.x only (keras_cv 0.9.0 "
        "keras_cv/src/models/object_detection/retinanet/retinanet.py RetinaNet.compute_loss; "
        "normalisation unfixed upstream, keras-team/keras-cv#1744); re-run tests/test_trainer_distribution.py and widen compat.keras_cv.LOSS_TESTED, "
        "or install keras-cv==0.9.0 (requirements.lock)"
    ),
    "check_label_encoder": (
        "KerasCV 0.10.0: vocdet's low-quality-matching label encoder (compat.keras_cv.LowQualityMatchingLabelEncoder) "
        "relies on a KerasCV internal tested on KerasCV 0.9.x only (keras_cv 0.9.0 "
        "keras_cv/src/models/object_detection/retinanet/retinanet_label_encoder.py box_matcher); re-run "
        "tests/test_trainer_export.py and widen compat.keras_cv.LABEL_ENCODER_TESTED, or set "
        "model.allow_low_quality_matches: false"
    ),
    "check_jittered_resize": (
        "KerasCV 0.10.0: vocdet's target-scaled JitteredResize (compat.keras_cv.TargetScaledJitteredResize) relies on "
        "a KerasCV internal tested on KerasCV 0.9.x only (keras_cv 0.9.0 "
        "keras_cv/src/layers/preprocessing/jittered_resize.py _get_image_shape, _random_generator); re-run "
        "tests/test_input_pipeline.py and widen compat.keras_cv.JITTERED_RESIZE_TESTED, or install keras-cv==0.9.0 "
        "(requirements.lock)"
    ),
    "check_random_flip": (
        "KerasCV 0.10.0: vocdet's lean RandomFlip (compat.keras_cv.LeanRandomFlip) relies on a KerasCV internal "
        "tested on KerasCV 0.9.x only (keras_cv 0.9.0 keras_cv/src/layers/preprocessing/random_flip.py "
        "_flip_images, vectorised in keras-team/keras-cv#1696); re-run tests/test_input_pipeline.py and widen "
        "compat.keras_cv.RANDOM_FLIP_TESTED, or install keras-cv==0.9.0 (requirements.lock)"
    ),
}


@pytest.mark.parametrize("check", sorted(_KERAS_CV_MESSAGES))
def test_keras_cv_workarounds_under_a_newer_keras_cv_are_stopped(check):
    from vocdet.components.compat import keras_cv as keras_cv_compat

    with pytest.raises(compat.UntestedVersion) as raised:
        getattr(keras_cv_compat, check)("0.10.0")
    assert str(raised.value) == _KERAS_CV_MESSAGES[check]


def test_a_keras_cv_workaround_checks_where_it_is_used(monkeypatch):
    import keras_cv

    from vocdet.components.compat import keras_cv as keras_cv_compat

    keras_cv_compat.LeanRandomFlip(mode="horizontal", bounding_box_format="xywh")
    monkeypatch.setattr(keras_cv, "__version__", "0.10.0")
    with pytest.raises(compat.UntestedVersion) as raised:
        keras_cv_compat.LeanRandomFlip(mode="horizontal", bounding_box_format="xywh")
    assert str(raised.value) == _KERAS_CV_MESSAGES["check_random_flip"]


def test_the_atomic_pusher_under_a_newer_tfx_is_stopped(monkeypatch):
    import tfx

    from vocdet.components.atomic_pusher import executor
    from vocdet.components.compat import tfx as tfx_compat

    expected = (
        "TFX 1.17.0: vocdet's atomic Pusher executor (Pusher's private _log_startup, _MarkPushed, _MarkNotPushed) "
        "relies on a TFX internal tested on TFX 1.16.x only (tfx 1.16.0 tfx/components/pusher/executor.py, "
        "tensorflow/tfx#6060); re-run tests/test_blessing_gate.py and widen compat.tfx.PUSHER_TESTED, or install "
        "tfx==1.16.0 (requirements.lock)"
    )
    with pytest.raises(compat.UntestedVersion) as raised:
        tfx_compat.check_pusher("1.17.0")
    assert str(raised.value) == expected
    monkeypatch.setattr(tfx, "__version__", "1.17.0")
    with pytest.raises(compat.UntestedVersion) as raised:
        executor.Executor().Do({}, {}, {})  # checked first, before anything is read or pushed
    assert str(raised.value) == expected


def test_the_tfjob_handoff_under_a_newer_tfx_is_stopped(monkeypatch):
    import tfx

    from vocdet.components.compat import tfx as tfx_compat

    calls = []
    launcher_class = tfx_compat.launcher_with_executor_hook(calls.append)
    assert launcher_class.__name__ == "HandoffLauncher"
    monkeypatch.setattr(tfx, "__version__", "1.17.0")
    with pytest.raises(compat.UntestedVersion) as raised:
        tfx_compat.launcher_with_executor_hook(calls.append)
    assert str(raised.value) == (
        "TFX 1.17.0: vocdet's TFJob chief's handoff (an override of the portable Launcher's private _run_executor) "
        "relies on a TFX internal tested on TFX 1.16.x only (tfx 1.16.0 tfx/orchestration/portable/launcher.py, no public hook: "
        "tensorflow/tfx#3221); "
        "re-run tests/test_tfjob.py and widen compat.tfx.LAUNCHER_TESTED, or train on one pod "
        "(kubeflow.trainer_workers: 1)"
    )
    assert calls == []


def test_the_kfp_client_under_a_newer_kfp_is_stopped(monkeypatch):
    import kfp

    from vocdet.components.compat import kfp as kfp_compat
    from vocdet.pipeline.kubeflow import client as kfp_client

    assert issubclass(kfp_compat.fail_fast_client_class(), kfp.Client)
    monkeypatch.setattr(kfp, "__version__", "2.14.0")
    expected = (
        "kfp 2.14.0: vocdet's fail-fast KFP health check (kfp Client's private _healthz_api) relies on a kfp internal "
        "tested on kfp 2.9.x only (kfp 2.9.0 sdk/python/kfp/client/client.py Client.get_kfp_healthz, kubeflow/pipelines#4846); re-run "
        "tests/test_failures.py and widen compat.kfp.CLIENT_TESTED, or install kfp==2.9.0 (requirements.lock)"
    )
    with pytest.raises(compat.UntestedVersion) as raised:
        kfp_client.Connection(host="https://kubeflow.example.com/pipeline").client()  # checked before any request
    assert str(raised.value) == expected
