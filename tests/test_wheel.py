"""The wheel the pipeline image installs (`pip install .`, not editable) holds and runs the whole project.

The tests install the project editable, so a module missing from the wheel never shows there; the
image would die on its first import. Here the wheel is built, installed with `--no-deps` into a fresh
virtual environment outside the source tree, and used there: every module of `pipeline/` and
`components/` imports, `vocdet --help` lists the commands, and `vocdet compile` writes a package.
The dependencies (TensorFlow, TFX: gigabytes) are not reinstalled: the fresh environment sees the
project environment's site-packages through a `.pth` path line. Python appends such a line to
sys.path without processing the `.pth` files inside it, so the editable install's finder stays off
(checked: `vocdet.pipeline` must come from the fresh site-packages).
"""

import glob
import json
import os
import subprocess
import sys
import sysconfig
import venv

import pytest
import yaml

from tests.manifests import REPO

pytestmark = pytest.mark.e2e

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONSAFEPATH": "1"}
ENV.pop("PYTHONPATH", None)


def _modules() -> list[str]:
    """Every module of the source tree, as installed: pipeline/x/y.py -> vocdet.pipeline.x.y."""
    names = []
    for root in ("pipeline", "components"):
        for path in glob.glob(os.path.join(REPO, root, "**", "*.py"), recursive=True):
            parts = os.path.relpath(path, REPO)[: -len(".py")].split(os.sep)
            if parts[-1] == "__main__":
                continue  # running it is the test of `python -m`, not of an import
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join(["vocdet", *parts]))
    return sorted(names)


def _run(command: list[str], cwd, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command[:4])}... failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, vocdet script, its site-packages) of a fresh environment holding only the built wheel."""
    work = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(work), REPO], work)
    (wheel,) = glob.glob(str(work / "vocdet-*.whl"))
    environment = work / "venv"
    venv.EnvBuilder(with_pip=False).create(environment)
    python = str(environment / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "project-dependencies.pth"), "w") as handle:
        handle.write(sysconfig.get_paths()["purelib"] + "\n")
    _run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel], work)
    return python, str(environment / "bin" / "vocdet"), site, work


def test_every_module_of_the_tree_is_in_the_wheel_and_imports(installed):
    python, _, site, work = installed
    modules = _modules()
    assert "vocdet.components.example_validation.executor" in modules
    script = (
        "import importlib, json, sys\n"
        "failed = {}\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        failed[name] = f'{type(error).__name__}: {error}'\n"
        "import vocdet.pipeline, vocdet.components\n"
        "print(json.dumps({'failed': failed, 'from': [vocdet.pipeline.__file__, vocdet.components.__file__]}))\n"
    )
    result = json.loads(_run([python, "-c", script], work).stdout.strip().splitlines()[-1])
    assert result["failed"] == {}
    # The installed copy, not the source tree through the editable install.
    assert all(path.startswith(site) for path in result["from"]), result["from"]
    assert glob.glob(os.path.join(site, "vocdet", "components", "trainer", "checkpoints", "*.npz"))


def test_the_installed_cli_helps_and_compiles(installed):
    _, vocdet, _, work = installed
    help_text = _run([vocdet, "--help"], work).stdout
    for command in ("run", "ingest", "compile", "submit", "schedule", "predict", "evaluate"):
        assert command in help_text
    labels = work / "labels.txt"
    labels.write_text("cat\ndog\n")
    out = work / "pipeline.yaml"
    _run([vocdet, "compile", "--labels", str(labels), "--image", "registry.example.com/vocdet:1.0", "--out", str(out)], work)
    package = next(yaml.safe_load_all(out.read_text()))  # the pipeline spec; the platform spec follows
    commands = [executor["container"]["command"] for executor in package["deploymentSpec"]["executors"].values()]
    assert commands and all(command[:3] == ["python", "-m", "vocdet.pipeline.kubeflow.node"] for command in commands)
