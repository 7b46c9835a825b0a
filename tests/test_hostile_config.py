"""A config file is read like any user file: never blocking, bounded, and its values rendered short in errors."""

import os
import resource
import subprocess
import sys

import pytest

from vocdet.pipeline import config as config_lib

VOCDET = os.path.join(os.path.dirname(sys.executable), "vocdet")


def alias_bomb(section: str, key: str, levels: int = 10) -> str:
    """YAML whose value at `section.key` expands to 9**levels strings, but loads as `levels` shared lists."""
    inner = '&a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'
    for level in range(1, levels):
        inner = f"&a{level} [" + ",".join([inner] + [f"*a{level - 1}"] * 8) + "]"
    return f"{section}:\n  {key}: {inner}\n"


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # the bomb took over 3 GB before


@pytest.mark.parametrize("section, key, named", [("train", "epochs", "'train.epochs'"), ("data", "class_names", "'data.class_names[0]'")])
def test_a_yaml_alias_bomb_is_one_short_line_in_bounded_memory(tmp_path, section, key, named):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(section, key))
    assert path.stat().st_size < 1000
    result = subprocess.run(
        [VOCDET, "run", "--config", str(path), "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert named in line and "must be" in line and len(line) < 300
    assert not (tmp_path / "out").exists()


def test_the_type_error_renders_a_capped_value(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text("train:\n  epochs: '" + "x" * 100_000 + "'\n")
    with pytest.raises(ValueError, match="'train.epochs' must be an integer") as error:
        config_lib.load("demo", str(path), {})
    assert len(str(error.value)) < 300


def test_a_fifo_as_config_is_refused_at_once(tmp_path):
    fifo = tmp_path / "my.yaml"
    os.mkfifo(fifo)
    result = subprocess.run(
        [VOCDET, "run", "--config", str(fifo), "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"vocdet run: error: {fifo}: is a FIFO (named pipe), not a regular file; only regular files are read"
    ]


def test_an_oversized_config_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * 2_000_000 + "\n")
    with pytest.raises(ValueError, match=r"huge.yaml: 2.0 MB, above the limit of 1.0 MB \(a config file's size\)"):
        config_lib.load("demo", str(path), {})
