"""The wheel alone works: the pipeline image installs the project with `pip install .` (a wheel, not
the editable install every other test runs against), so this builds that wheel, installs it into a
fresh virtual environment and runs it there, from outside the repository.

- The wheel is built from a snapshot of the repository (the files git tracks or would track, as a
  fresh clone has them), never in the tree itself: pip builds in-tree, so setuptools would write
  build/ and vocdet.egg-info/ into the repository, and a stale build/lib/ from an earlier build goes
  into the next wheel (a module moved or deleted since would still be shipped).
- The fresh venv gets the project venv's dependencies (TensorFlow, TFX, ...) through a `.pth` file
  that lists the project venv's site-packages: a path line in a .pth is appended to sys.path, but
  the .pth files inside that directory are not processed, so the editable install's finder
  (`__editable__.vocdet-*.pth`) is never activated there
  (test_the_project_venv_is_visible_to_a_fresh_venv_but_its_editable_vocdet_is_not checks it).
- Every subprocess runs in tmp_path with `-I` or PYTHONSAFEPATH, so the repository is never on sys.path.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
# Source folder -> the package it installs as (setup.py's ROOTS).
ROOTS = {"pipeline": "vocdet.pipeline", "components": "vocdet.components"}
PACKAGE_DATA = "vocdet/components/trainer/checkpoints/*.npz"
COMMANDS = ("make-sample", "run", "ingest", "compile", "submit", "schedule", "evaluate", "predict", "runs", "models", "rollback")
IMAGE = f"registry.example.com/vocdet:1.2.3@sha256:{'0' * 64}"
# Ignored by .gitignore; used to snapshot the tree where git is not available.
UNTRACKED = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", "outputs", ".pytest_cache", ".hypothesis")


def _tail(text, lines: int = 40) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])


def _run(command, *, what: str, timeout: float, cwd, env, check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(
            [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"{what}: timed out after {timeout:.0f} s\n--- stderr tail ---\n{_tail(error.stderr)}")
    if check and proc.returncode != 0:
        pytest.fail(
            f"{what}: exit {proc.returncode}\n$ {' '.join(map(str, command))}\n"
            f"--- stdout tail ---\n{_tail(proc.stdout)}\n--- stderr tail ---\n{_tail(proc.stderr)}"
        )
    return proc


def _clean_env(**extra: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONNOUSERSITE="1", PYTHONSAFEPATH="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(extra)
    return env


def _snapshot(dest: Path) -> Path:
    """The repository's files as a fresh clone (plus uncommitted and new, not ignored, files) has them."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True, check=True, timeout=60,
        ).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(*UNTRACKED), symlinks=True)
        return dest
    for relative in filter(None, listed):
        source = REPO / relative
        if source.is_file():  # listed but deleted in the working tree: not in the snapshot
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / relative)
    return dest


def _source_modules(tree: Path) -> dict[str, str]:
    """{module name: its installed path relative to site-packages} for every .py under the source roots."""
    modules = {}
    for folder, package in ROOTS.items():
        for path in sorted((tree / folder).rglob("*.py")):
            relative = path.relative_to(tree / folder)
            if "__pycache__" in relative.parts:
                continue
            parts = relative.with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = "/".join(("vocdet", folder, *relative.parts))
    return modules


def _build_wheel(source: Path, out: Path, cwd: Path, what: str) -> Path:
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", out, source.resolve()],
        what=what, timeout=600, cwd=cwd, env=_clean_env(),
    )
    wheels = sorted(out.glob("vocdet-*.whl"))
    assert len(wheels) == 1, f"{what}: expected one vocdet wheel in {out}, found {wheels}"
    return wheels[0]


def _project_site_dirs() -> list[str]:
    """Where the dependencies are: the site-packages of the environment running the tests."""
    return sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})


def _make_venv(path: Path, cwd: Path) -> tuple[Path, Path]:
    """(python, site-packages) of a new venv without pip, of this interpreter's base Python."""
    _run([sys.executable, "-m", "venv", "--without-pip", path], what="python -m venv", timeout=120, cwd=cwd, env=_clean_env())
    python = path / "bin" / "python"
    site = _run(
        [python, "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        what="fresh venv's site-packages", timeout=60, cwd=cwd, env=_clean_env(),
    ).stdout.strip()
    return python, Path(site)


def _expose_project_site_packages(site: Path) -> None:
    (site / "vocdet-test-dependencies.pth").write_text("".join(f"{directory}\n" for directory in _project_site_dirs()))


class WheelEnv:
    def __init__(self, root: Path):
        self.root = root
        self.work = root / "work"  # every subprocess's working directory, outside the repository
        self.work.mkdir()
        self.tree = _snapshot(root / "tree")
        self.modules = _source_modules(self.tree)
        self.wheel = _build_wheel(self.tree, root / "dist", self.work, f"pip wheel {self.tree} (snapshot of {REPO})")
        self.venv = root / "venv"
        self.python, self.site = _make_venv(self.venv, self.work)
        # Installed before the .pth exists, so this pip sees only the fresh venv (not the editable vocdet).
        _run(
            [sys.executable, "-m", "pip", "--python", self.python, "install", "--no-deps", "--no-index", self.wheel],
            what=f"pip install --no-deps {self.wheel.name} into the fresh venv", timeout=300, cwd=self.work, env=_clean_env(),
        )
        _expose_project_site_packages(self.site)
        self.env = _clean_env(VIRTUAL_ENV=str(self.venv), PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")

    def record(self) -> list[str]:
        records = glob.glob(str(self.site / "vocdet-*.dist-info" / "RECORD"))
        assert len(records) == 1, f"one vocdet dist-info in {self.site}, found {records}"
        with open(records[0]) as handle:
            return [line.split(",")[0] for line in handle.read().splitlines() if line]

    def python_script(self, script: str, *args, what: str, timeout: float = 600) -> subprocess.CompletedProcess:
        path = self.work / f"{re.sub(r'[^a-z]+', '_', what.lower())}.py"
        path.write_text(textwrap.dedent(script))
        return _run([self.python, "-I", path, *args], what=what, timeout=timeout, cwd=self.work, env=self.env)

    def vocdet(self, *args, what: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return _run([self.venv / "bin" / "vocdet", *args], what=what, timeout=timeout, cwd=self.work, env=self.env, check=False)


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> WheelEnv:
    return WheelEnv(tmp_path_factory.mktemp("wheel"))


def test_the_project_venv_is_visible_to_a_fresh_venv_but_its_editable_vocdet_is_not(tmp_path):
    """The harness's premise: a .pth line adds the dependencies' site-packages, not the .pth files in it."""
    site_dirs = _project_site_dirs()
    editable = [name for directory in site_dirs for name in os.listdir(directory) if "__editable__" in name and "vocdet" in name]
    python, site = _make_venv(tmp_path / "venv", tmp_path)
    _expose_project_site_packages(site)
    probe = _run(
        [python, "-I", "-c", textwrap.dedent("""\
            import importlib.util, json, sys
            try:
                import vocdet.pipeline
                found = vocdet.pipeline.__file__
            except ImportError as error:
                found = repr(error)
            print(json.dumps({
                "sys_path": sys.path,
                "found": found,
                "vocdet_spec": repr(importlib.util.find_spec("vocdet")),
                "editable": sorted(name for name in sys.modules if "editable" in name)
                + [repr(finder) for finder in sys.meta_path if "editable" in repr(finder).lower()],
                "yaml": importlib.util.find_spec("yaml").origin,
            }))
        """)],
        what="probe of a venv with only the .pth", timeout=120, cwd=tmp_path, env=_clean_env(),
    )
    seen = json.loads(probe.stdout.splitlines()[-1])
    assert all(directory in seen["sys_path"] for directory in site_dirs), seen["sys_path"]
    assert any(seen["yaml"].startswith(directory) for directory in site_dirs), seen["yaml"]
    assert not seen["editable"], f"the editable install's finder was activated: {seen['editable']}"
    assert seen["found"].startswith("ModuleNotFoundError") and seen["vocdet_spec"] == "None", (
        f"vocdet is importable without the wheel (editable files there: {editable}): {seen['found']}"
    )


@pytest.mark.e2e
def test_every_source_module_and_the_package_data_are_in_the_wheel(wheel_env):
    record = wheel_env.record()
    installed = {path for path in record if path.startswith("vocdet/") and path.endswith(".py")}
    expected = set(wheel_env.modules.values())
    assert expected, f"no modules found under {list(ROOTS)} in the snapshot {wheel_env.tree}"
    missing, extra = sorted(expected - installed), sorted(installed - expected)
    assert not missing, f"in the source tree but not in {wheel_env.wheel.name} (a folder without __init__.py?): {missing}"
    assert not extra, f"in {wheel_env.wheel.name} but not in the source tree: {extra}"
    assert all((wheel_env.site / path).is_file() for path in expected)

    sources = sorted((wheel_env.tree / "components" / "trainer" / "checkpoints").glob("*.npz"))
    assert sources, "no components/trainer/checkpoints/*.npz in the source tree"
    data = [path for path in record if fnmatch.fnmatch(path, PACKAGE_DATA)]
    assert sorted(Path(path).name for path in data) == [source.name for source in sources], (
        f"package data {PACKAGE_DATA}: installed {data}, source {[source.name for source in sources]}"
    )
    for source in sources:
        installed_file = wheel_env.site / "vocdet" / "components" / "trainer" / "checkpoints" / source.name
        assert installed_file.stat().st_size == source.stat().st_size, installed_file


IMPORT_ALL = """\
    import importlib, json, sys, traceback
    modules, site, out = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
    failures = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as error:
            frame = traceback.extract_tb(error.__traceback__)[-1]
            failures[name] = f"{type(error).__name__}: {error} ({frame.filename}:{frame.lineno})"
    loaded = {
        name: getattr(module, "__file__", None) or list(getattr(module, "__path__", []))
        for name, module in list(sys.modules.items())
        if name == "vocdet" or name.startswith("vocdet.")
    }
    editable = sorted(name for name in sys.modules if "editable" in name)
    editable += [repr(finder) for finder in sys.meta_path if "editable" in repr(finder).lower()]
    json.dump({"failures": failures, "loaded": loaded, "editable": editable, "sys_path": sys.path}, open(out, "w"))
"""


@pytest.mark.e2e
def test_every_module_imports_from_the_installed_wheel(wheel_env):
    # A __main__ module runs the command when imported; it is in the wheel (above) and run by the CLI test.
    modules = sorted(name for name in wheel_env.modules if not name.endswith(".__main__"))
    listing, out = wheel_env.work / "modules.json", wheel_env.work / "imported.json"
    listing.write_text(json.dumps(modules))
    proc = wheel_env.python_script(IMPORT_ALL, listing, wheel_env.site, out, what="import every module in the fresh venv")
    result = json.loads(out.read_text())
    failures = result["failures"]
    by_error: dict[str, list[str]] = {}
    for name, error in sorted(failures.items()):
        by_error.setdefault(error, []).append(name)
    assert not failures, f"{len(failures)} of {len(modules)} modules fail to import from the wheel:\n" + "\n".join(
        f"  {error}\n    <- {', '.join(names)}" for error, names in sorted(by_error.items(), key=lambda item: -len(item[1]))
    ) + f"\n--- stderr tail ---\n{_tail(proc.stderr, 15)}"
    assert not result["editable"], f"the editable install is active in the fresh venv: {result['editable']}"
    assert str(REPO) not in result["sys_path"] and "" not in result["sys_path"], result["sys_path"]
    site = str(wheel_env.site) + os.sep
    outside = {
        name: where for name, where in result["loaded"].items()
        if not all(str(path).startswith(site) for path in (where if isinstance(where, list) else [where]))
    }
    assert not outside, f"vocdet modules loaded from outside {site}: {outside}"
    for name in ("vocdet.pipeline", "vocdet.components"):
        assert result["loaded"][name].startswith(site), (name, result["loaded"][name])
    assert set(modules) <= set(result["loaded"])


@pytest.mark.e2e
def test_the_console_script_lists_the_commands(wheel_env):
    assert Path(wheel_env.venv / "bin" / "vocdet").read_text().startswith(f"#!{wheel_env.python}")
    proc = wheel_env.vocdet("--help", what="vocdet --help", timeout=300)
    assert proc.returncode == 0, f"vocdet --help: exit {proc.returncode}\n--- stderr tail ---\n{_tail(proc.stderr)}"
    missing = [command for command in COMMANDS if not re.search(rf"\b{re.escape(command)}\b", proc.stdout)]
    assert not missing, f"vocdet --help does not list {missing}:\n{proc.stdout}"
    module = _run(
        [wheel_env.python, "-I", "-m", "vocdet.pipeline.cli", "--help"],
        what="python -m vocdet.pipeline.cli --help", timeout=300, cwd=wheel_env.work, env=wheel_env.env,
    )
    missing = [command for command in COMMANDS if not re.search(rf"\b{re.escape(command)}\b", module.stdout)]
    assert not missing, f"python -m vocdet.pipeline.cli --help does not list {missing}:\n{module.stdout}"


RESOLVE = """\
    import importlib, json, sys
    references, site, out = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
    unresolved = {}
    for reference in references:
        parts = reference.split(".")
        for cut in range(len(parts), 1, -1):
            try:
                target = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            try:
                for attribute in parts[cut:]:
                    target = getattr(target, attribute)
            except AttributeError as error:
                unresolved[reference] = f"AttributeError: {error}"
            else:
                origin = getattr(importlib.import_module(".".join(parts[:cut])), "__file__", "") or ""
                if not origin.startswith(site):
                    unresolved[reference] = f"resolved outside the fresh venv: {origin}"
            break
        else:
            unresolved[reference] = "no importable module"
    json.dump(unresolved, open(out, "w"))
"""


@pytest.mark.e2e
def test_compile_from_the_installed_wheel_names_its_modules(wheel_env):
    labels = wheel_env.work / "labels.txt"
    labels.write_text("cat\ndog\n")
    package = wheel_env.work / "out" / "pipeline.yaml"
    proc = wheel_env.vocdet(
        "compile", "--labels", labels, "--image", IMAGE, "--out", package, what="vocdet compile", timeout=600
    )
    assert proc.returncode == 0, (
        f"vocdet compile: exit {proc.returncode}\n--- stdout ---\n{_tail(proc.stdout)}\n--- stderr tail ---\n{_tail(proc.stderr)}"
    )
    assert package.is_file(), f"vocdet compile wrote no {package}; stdout: {proc.stdout}"
    text = package.read_text()
    spec = next(yaml.safe_load_all(text))
    executors = spec["deploymentSpec"]["executors"]
    assert executors, "no executors in the compiled package"
    installed = set(wheel_env.modules)
    for label, executor in executors.items():
        container = executor["container"]
        command = container["command"]
        assert container["image"] == IMAGE, label
        assert command[:2] == ["python", "-m"] and command[2].startswith("vocdet.pipeline."), (label, command)
        assert command[2] in installed, f"{label} runs {command[2]}, which is not in the wheel"
    assert re.search(r"class_names\W+cat\W+dog\W", text), "the labels file's class names are not in the package"

    # Every vocdet reference the tasks will load (node entrypoint, executor classes, run_fn, ...) resolves in the wheel.
    references = sorted(set(re.findall(r"vocdet\.(?:pipeline|components)(?:\.[A-Za-z_]\w*)+", text)))
    assert any(reference.startswith("vocdet.components.") for reference in references), references
    listing, out = wheel_env.work / "references.json", wheel_env.work / "resolved.json"
    listing.write_text(json.dumps(references))
    wheel_env.python_script(RESOLVE, listing, str(wheel_env.site) + os.sep, out, what="resolve the package's references")
    unresolved = json.loads(out.read_text())
    assert not unresolved, f"references in the compiled package that the wheel cannot resolve: {unresolved}"


def _dockerfile_build_context(dest: Path) -> Path:
    """What the Dockerfile's first stage has copied into its WORKDIR when it runs `pip install ... .`."""
    text = re.sub(r"\\\n", " ", (REPO / "docker" / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    stages = 0
    for line in lines:
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages += 1
            if stages > 1:
                break
            continue
        if not stages:
            continue  # ARGs before the first FROM
        if instruction.upper() == "RUN" and re.search(r"pip install\b.*\s\.(\s|$)", arguments):
            return dest
        if instruction.upper() == "COPY":
            *sources, target = [word for word in arguments.split() if not word.startswith("--")]
            into = target.endswith("/") or len(sources) > 1
            for source in sources:
                where = dest / target / Path(source).name if into else dest / target
                if (REPO / source).is_dir():
                    shutil.copytree(REPO / source, where, ignore=shutil.ignore_patterns(*UNTRACKED), dirs_exist_ok=True)
                else:
                    where.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(REPO / source, where)
    pytest.fail("no `pip install ... .` in the Dockerfile's build stage")


@pytest.mark.e2e
def test_the_image_builds_the_same_wheel(wheel_env):
    """`pip install .` in the image sees only what the build stage COPYs: the same wheel must come out of it."""
    context = _dockerfile_build_context(wheel_env.root / "image-context")
    copied = sorted(path.name for path in context.iterdir())
    wheel = _build_wheel(context, wheel_env.root / "image-dist", wheel_env.work, f"pip wheel of the image's build context {copied}")

    def contents(path: Path) -> set[str]:
        with zipfile.ZipFile(path) as archive:
            return {name for name in archive.namelist() if not name.endswith("/RECORD")}

    image, repo = contents(wheel), contents(wheel_env.wheel)
    assert image == repo, (
        f"the image's build stage (it copies {copied}) builds another wheel than the repository: "
        f"only in the image's {sorted(image - repo)[:20]}, missing there {sorted(repo - image)[:20]}"
    )
