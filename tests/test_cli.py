"""The command line's own conventions: no abbreviations, one-line errors, defaults in --help, --version."""

import importlib.metadata

import pytest
import yaml

from vocdet.pipeline import cli


def test_an_abbreviated_option_is_refused_with_a_suggestion(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--epoch", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--epoch" in err and "did you mean --epochs?" in err


@pytest.mark.parametrize("value, expected", [("ten", "must be an integer, got 'ten'"), (2.5, "must be an integer, got 2.5")])
def test_a_wrong_type_in_the_yaml_is_one_line_naming_the_key(tmp_path, capsys, value, expected):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"train": {"epochs": value}}))
    assert cli.main(["run", "--config", str(config), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'train.epochs'" in err and expected in err
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_help_shows_defaults_and_the_presets_values(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: demo)" in out and "(default: local)" in out
    assert "config train.epochs (demo preset: " in out


def test_version(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"vocdet {importlib.metadata.version('vocdet')}"
