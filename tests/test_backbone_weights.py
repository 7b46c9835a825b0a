"""`vocdet backbone-weights`: the one command that needs the network says so in one line without it."""

import socket

import pytest

from vocdet.pipeline import cli


def test_without_network_the_error_is_one_line_naming_the_preset(tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "cache"))  # nothing cached to fall back on
    out = tmp_path / "resnet50.weights.h5"
    assert cli.main(["backbone-weights", "resnet50_imagenet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "resnet50_imagenet" in err and "needs the network" in err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["backbone-weights", "vgg16_imagenet", "--out", "w.weights.h5"], "unknown preset 'vgg16_imagenet'"),
    (["backbone-weights", "resnet50_imagenet", "--out", "w.h5"], "end in .weights.h5"),
])
def test_bad_arguments_are_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
