"""Two vocdet processes into one output folder: the second stops at once and says who holds it."""

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from vocdet.pipeline.local import output_lock

VOCDET = os.path.join(os.path.dirname(sys.executable), "vocdet")


def test_lock_names_its_holder_and_is_released(tmp_path):
    with output_lock.hold(str(tmp_path), "run"):
        with pytest.raises(output_lock.OutputInUse) as raised:
            with output_lock.hold(str(tmp_path), "ingest"):
                pass
    assert re.fullmatch(
        rf"{tmp_path}: in use by vocdet run \(pid {os.getpid()} on {re.escape(socket.gethostname())}, since [-0-9 :]+\); "
        "wait for it to finish, or give another --output",
        str(raised.value),
    )
    with output_lock.hold(str(tmp_path), "ingest"):  # released
        pass


@pytest.mark.e2e
def test_second_run_into_a_busy_output_fails_in_one_line_naming_the_first(small_voc_root, tmp_path):
    output = tmp_path / "out"
    first = subprocess.Popen(
        [VOCDET, "ingest", "--data", small_voc_root, "--output", str(output)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lock = output / output_lock.LOCK_FILE
    deadline = time.time() + 120
    while not (lock.exists() and f"pid {first.pid} " in lock.read_text()):
        assert first.poll() is None and time.time() < deadline
        time.sleep(0.1)
    second = subprocess.run(
        [VOCDET, "run", "--data", small_voc_root, "--output", str(output)], capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 2
    errors = [line for line in second.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in second.stderr
    assert errors[0].startswith(f"vocdet run: error: {output}: in use by vocdet ingest (pid {first.pid} on ")
    assert first.wait(timeout=600) == 0, first.stdout.read()[-3000:]
    assert not (output / "data-root" / "1").exists()  # the second run built nothing
    again = subprocess.run([VOCDET, "ingest", "--data", small_voc_root, "--output", str(output)], capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
