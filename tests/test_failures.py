"""Every failure is one line on stderr that names the path or host and says what to do (issue 17).

Each case runs the real command, as a process (`vocdet ...`) or through `cli.main` where a test double of the
KFP API has to live in the same process, and fails within seconds: before any training, most before TensorFlow
loads. `--verbose` keeps the traceback.
"""

import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.kfp_api_double import KfpApiDouble
from vocdet.pipeline.data import sample
from vocdet.pipeline import cli
from vocdet.pipeline.cli import errors as cli_errors, local_commands
from vocdet.pipeline.kubeflow import client as kfp_client

VOCDET = os.path.join(os.path.dirname(sys.executable), "vocdet")


def vocdet(*args, cwd, timeout=120):
    return subprocess.run([VOCDET, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


# TensorFlow 2.16's C++ start-up lines ("Unable to register cuDNN factory ..."), which TF_CPP_MIN_LOG_LEVEL does
# not silence: printed by `import tensorflow` in every command that loads it, not by the failure.
_TENSORFLOW_START_UP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [EW] external/local_(xla|tsl)/")


def assert_one_line(stderr: str, command: str, *named: str) -> str:
    """The one error line of `vocdet <command>`, which names each of `named`; no traceback."""
    lines = [line for line in stderr.strip().splitlines() if not _TENSORFLOW_START_UP.match(line)]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"vocdet {command}: error: "), lines[0]
    assert "Traceback" not in stderr
    for name in named:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def _read_only(folder, command):
    """`command` run with `folder` read-only: chmod for a normal user; as root (which ignores modes) a read-only
    bind mount in a private mount namespace (unshare), so the kernel itself refuses the write."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return command
    if not shutil.which("unshare") or subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode:
        pytest.skip("running as root without unshare --mount: no way to make a folder read-only for root")
    script = f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", script, "sh", *command]


def test_read_only_output_folder(tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    started = time.time()
    result = subprocess.run(
        _read_only(folder, [VOCDET, "run", "--output", str(folder / "run")]), cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 1, result.stderr
    line = assert_one_line(result.stderr, "run", str(folder / "run"), "(--output)")
    assert "read-only file system" in line or "permission denied" in line
    assert time.time() - started < 60


def test_full_disk(tmp_path):
    """A real ENOSPC from the kernel: the first file `vocdet run` writes (a sample image) is /dev/full."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    output = tmp_path / "out"
    images = output / "sample-data" / "VOC2007" / "JPEGImages"
    images.mkdir(parents=True)
    (images / "000001.jpg").symlink_to("/dev/full")
    # as a sample write that vocdet began and was stopped left it: marked, so vocdet writes there again
    (images.parent / sample.MARKER_FILE).write_text(json.dumps({"spec": {}, "complete": False}))
    result = vocdet("run", "--output", str(output), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    line = assert_one_line(result.stderr, "run", str(output), "(--output)", "no space left on the device")
    assert "free space" in line


def test_full_disk_reported_by_tensorflow(tmp_path, monkeypatch, capsys):
    """Inside a component the same failure comes wrapped: TensorFlow's file error reads '<path>; No space left
    on device' (tf.errors.ResourceExhaustedError, seen writing to /dev/full). Simulated here at data preparation,
    in-process, since a real one needs a full disk under TFX."""
    written = str(tmp_path / "out" / "pipeline_root" / "Transform" / "transform_graph" / "5" / "saved_model.pb")

    def fails(config):
        try:
            raise RuntimeError(f"{written}; No space left on device")
        except RuntimeError as error:
            raise RuntimeError("Failed to execute component Transform") from error

    monkeypatch.setattr(local_commands, "prepare_data_root", fails)
    assert cli.main(["run", "--output", str(tmp_path / "out")]) == 1
    assert_one_line(capsys.readouterr().err, "run", written, "(--output)", "no space left on the device")


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    """Only the machine's failures become one line: a programming error is not swallowed."""

    def bug(config):
        raise KeyError("image")

    monkeypatch.setattr(local_commands, "prepare_data_root", bug)
    with pytest.raises(KeyError):
        cli.main(["run", "--output", str(tmp_path / "out")])


def test_corrupt_metadata_store(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "metadata.sqlite").write_bytes(os.urandom(8192))
    for command in ("run", "ingest"):
        started = time.time()
        result = vocdet(command, "--output", str(output), *(["--data", str(tmp_path)] if command == "ingest" else []),
                        cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        line = assert_one_line(result.stderr, command, str(output / "metadata.sqlite"), "file is not a database")
        assert "move it aside" in line
        assert time.time() - started < 10  # checked before TFX loads


def test_image_size_zero(tmp_path):
    result = vocdet("run", "--image-size", "0", "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    line = assert_one_line(result.stderr, "run", "model.image_size", "got 0")
    assert "multiple of 128" in line
    assert not (tmp_path / "out").exists()


def test_config_is_a_folder_or_malformed_yaml(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    result = vocdet("run", "--config", str(folder), cwd=tmp_path)
    assert result.returncode == 2
    assert "is a folder" in assert_one_line(result.stderr, "run", str(folder))

    malformed = tmp_path / "my.yaml"
    malformed.write_text("model: {image_size: 256\ntrain: [\n")
    result = vocdet("run", "--config", str(malformed), cwd=tmp_path)
    assert result.returncode == 2
    assert "not valid YAML at line 2" in assert_one_line(result.stderr, "run", str(malformed))


def test_verbose_keeps_the_traceback(tmp_path):
    result = vocdet("run", "--config", str(tmp_path), "--verbose", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr and str(tmp_path) in result.stderr


def test_labels_is_a_folder(tmp_path):
    result = vocdet("run", "--labels", str(tmp_path), "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert "(--labels)" in assert_one_line(result.stderr, "run", str(tmp_path))
    assert not (tmp_path / "out").exists()  # before any data is written


def test_predict_model_is_an_incoming_push(tmp_path):
    """The Pusher's hidden copy (components/atomic_pusher/push.py): a push in progress, or a killed push's leftover."""
    from vocdet.components.atomic_pusher import push

    base = tmp_path / "serving" / "vocdet"
    incoming = base / f"{push.INCOMING_PREFIX}1763770000"
    incoming.mkdir(parents=True)
    (incoming / "saved_model.pb").write_bytes(b"half written")
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"")
    result = vocdet("predict", "--model", str(incoming), str(image), cwd=tmp_path)
    assert result.returncode == 2
    line = assert_one_line(result.stderr, "predict", str(incoming), f"serving folder {base}")
    assert "push in progress" in line


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_kfp_host(tmp_path):
    host = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    started = time.time()
    result = vocdet("schedule", "--host", host, "--insecure", "--list", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    line = assert_one_line(result.stderr, "schedule", host, "cannot reach the Kubeflow Pipelines API")
    assert "Connection refused" in line and "--host" in line
    assert time.time() - started < 30


class _Unauthorized(KfpApiDouble):
    """KFP behind an authenticating proxy that refuses the token: 401 to everything."""

    def respond(self, request):
        return 401, {"error": "Unauthorized", "code": 16}


@pytest.mark.parametrize("token", ["expired-token", None])
def test_kfp_refuses_the_token(token, tmp_path, monkeypatch, capsys):
    """One request, not the kfp SDK's five health checks 5 s apart ending in 'Failed getting healthz endpoint'."""
    if token:
        monkeypatch.setenv("KFP_TOKEN", token)
    else:
        monkeypatch.delenv("KFP_TOKEN", raising=False)
    with _Unauthorized() as api:
        started = time.time()
        assert cli.main(["schedule", "--host", api.url, "--insecure", "--list"]) == 1
        assert time.time() - started < 10
        assert len(api.requests) == 1
    line = assert_one_line(capsys.readouterr().err, "schedule", api.url, "HTTP 401")
    assert ("$KFP_TOKEN was refused" in line) if token else ("no token was sent" in line)
    if token:
        assert token not in line


def test_plain_http_is_refused_unless_insecure_or_in_cluster(monkeypatch, capsys):
    monkeypatch.setenv("KFP_TOKEN", "secret-token")
    for command in (["submit"], ["schedule", "--list"]):
        assert cli.main([*command, "--host", "http://kubeflow.example.com/pipeline"]) == 2
        line = assert_one_line(capsys.readouterr().err, command[0], "http://kubeflow.example.com/pipeline", "--insecure")
        assert "unencrypted" in line
    # KFP's in-cluster service is plain http by design (k8s/cronjob.yaml).
    for host in ("http://ml-pipeline.kubeflow.svc.cluster.local:8888", "http://ml-pipeline.kubeflow:8888"):
        kfp_client.Connection(host=host)
    kfp_client.Connection(host="http://localhost:8888", insecure=True)
    kfp_client.Connection(host="https://kubeflow.example.com/pipeline")


def test_the_error_table_names_the_errno_it_handles():
    """ENOSPC, EROFS and EACCES each say what to do (docs/data.md's failure table)."""
    for number in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EISDIR):
        problem, advice, code = cli_errors._OS_ERRORS[number]
        assert problem and advice and code in (1, 2)
