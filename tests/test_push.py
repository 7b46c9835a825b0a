"""Atomic, versioned pushes; the serving check in a fresh process."""

import os
import signal
import subprocess
import sys
import time

import pytest

from vocdet.components.atomic_pusher import push
from vocdet.components.serving_check import check

_PUSH = """
import sys
from vocdet.components.atomic_pusher import push
push.push(sys.argv[1], sys.argv[2], keep_versions=3)
"""


def _model_dir(tmp_path, name="model"):
    model = tmp_path / name
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    (model / "variables" / "variables.index").write_bytes(b"index")
    return model


def test_versions_grow_and_old_ones_are_pruned(tmp_path):
    model, base = _model_dir(tmp_path), str(tmp_path / "serving" / "vocdet")
    pushed = [push.push(str(model), base, keep_versions=2)[0] for _ in range(4)]
    assert pushed == sorted(pushed) and len(set(pushed)) == 4
    assert push.versions(base) == pushed[-2:]
    assert (tmp_path / "serving" / "vocdet" / str(pushed[-1]) / "variables" / "variables.index").read_bytes() == b"index"


def test_a_push_killed_mid_copy_leaves_no_visible_version_and_the_next_push_succeeds(tmp_path):
    model, base = _model_dir(tmp_path), tmp_path / "serving"
    os.mkfifo(model / "variables" / "variables.data-00000-of-00001")  # reading it blocks: the copy stalls part-way
    process = subprocess.Popen(
        [sys.executable, "-c", _PUSH, str(model), str(base)], cwd=os.path.dirname(os.path.dirname(__file__))
    )
    try:
        deadline = time.time() + 120
        while not any(name.startswith(push.INCOMING_PREFIX) for name in (os.listdir(base) if base.exists() else [])):
            assert time.time() < deadline and process.poll() is None, "the push never started copying"
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert push.versions(str(base)) == []  # a reader (TF Serving) sees no version at all

    os.remove(model / "variables" / "variables.data-00000-of-00001")
    (model / "variables" / "variables.data-00000-of-00001").write_bytes(b"weights")
    version, path = push.push(str(model), str(base), keep_versions=3)
    assert push.versions(str(base)) == [version]
    assert not [name for name in os.listdir(base) if name.startswith(push.INCOMING_PREFIX)]
    assert open(os.path.join(path, "variables", "variables.data-00000-of-00001"), "rb").read() == b"weights"


def test_keep_versions_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="keep_versions"):
        push.push(str(_model_dir(tmp_path)), str(tmp_path / "serving"), keep_versions=0)


def test_serving_check_rejects_a_model_that_does_not_load(tmp_path):
    passed, reason = check.load_and_query(str(_model_dir(tmp_path)), [b"\xff\xd8"], timeout_seconds=300)
    assert not passed and reason.startswith("load or query failed")


def test_the_model_already_served_is_recognised_by_its_tensorflow_fingerprint(tmp_path):
    model, base = _model_dir(tmp_path), str(tmp_path / "serving")
    (model / push.FINGERPRINT_FILE).write_bytes(b"fingerprint-1")
    assert push.serving_version(str(model), base) is None  # nothing served yet
    version, _ = push.push(str(model), base, keep_versions=3)
    assert push.serving_version(str(model), base) == version
    retrained = _model_dir(tmp_path, "retrained")
    (retrained / push.FINGERPRINT_FILE).write_bytes(b"fingerprint-2")
    assert push.serving_version(str(retrained), base) is None


def test_prune_deletes_only_versions_vocdet_pushed(tmp_path):
    model, base = _model_dir(tmp_path), tmp_path / "serving"
    by_hand = base / "1000"  # an operator's copy, or a version from before the record existed
    (by_hand / "variables").mkdir(parents=True)
    (by_hand / "saved_model.pb").write_bytes(b"their graph")
    pushed = [push.push(str(model), str(base), keep_versions=1)[0] for _ in range(3)]
    assert push.versions(str(base)) == [1000, pushed[-1]]
    assert (by_hand / "saved_model.pb").read_bytes() == b"their graph"
    assert push.pushed_versions(str(base)) == set(pushed)
    assert push.PUSHED_RECORD not in [str(version) for version in push.versions(str(base))]
