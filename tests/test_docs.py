"""The docs site builds with `mkdocs build --strict`, its configuration reference lists every config field, and the
docs lock agrees with the runtime lock.

A broken link, a link to a missing heading or a page left out of the nav fails the build (mkdocs.yml's
`validation`), and so this test. The reference is generated from the dataclasses at each build
(docs/hooks/config_reference.py); this checks the generated page against `dataclasses.fields`.
"""

import dataclasses
import os
import re
import shutil
import subprocess
import sys

import pytest

from vocdet.pipeline import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MKDOCS = os.path.join(os.path.dirname(sys.executable), "mkdocs")


def build(config_file: str, site: str) -> subprocess.CompletedProcess:
    # NO_MKDOCS_2_WARNING: Material's notice about its end of life, printed at every build.
    return subprocess.run(
        [MKDOCS, "build", "--strict", "-f", config_file, "-d", site],
        cwd=os.path.dirname(config_file), capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("site"))
    completed = build(os.path.join(ROOT, "mkdocs.yml"), folder)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return folder


def test_every_page_of_the_nav_is_built(site):
    for page in ("index", "getting-started", "data", "configuration", "training", "evaluation", "operations",
                 "kubeflow", "scale-out", "performance", "architecture", "tests"):
        assert os.path.isfile(os.path.join(site, f"{page}.html")), page


def test_the_configuration_reference_lists_every_field_with_its_default(site):
    page = open(os.path.join(site, "configuration.html")).read()
    keys = []
    for field in dataclasses.fields(config.PipelineConfig):
        section = getattr(config.PipelineConfig(), field.name)
        if dataclasses.is_dataclass(section):
            keys += [(f"{field.name}.{inner.name}", inner) for inner in dataclasses.fields(section)]
        else:
            keys.append((field.name, field))
    missing = [key for key, _ in keys if f"<code>{key}</code>" not in page]
    assert not missing, f"not in the configuration reference: {missing}"
    # A default as the page shows it, and a comment from the code.
    assert re.search(r"<code>data\.max_image_pixels</code></td>\s*<td><code>int</code></td>\s*<td><code>50000000</code>", page)
    assert "Images above this many pixels are rejected from their header, before any decoding." in page


def test_a_broken_link_fails_the_build(tmp_path):
    shutil.copytree(os.path.join(ROOT, "docs"), tmp_path / "docs")
    shutil.copy(os.path.join(ROOT, "mkdocs.yml"), tmp_path / "mkdocs.yml")
    with open(tmp_path / "docs" / "training.md", "a") as page:
        page.write("\nSee [the missing page](no-such-page.md) and [a missing heading](data.md#no-such-heading).\n")
    completed = build(str(tmp_path / "mkdocs.yml"), str(tmp_path / "site"))
    assert completed.returncode != 0
    assert "no-such-page.md" in completed.stderr and "no-such-heading" in completed.stderr


def pins(path: str) -> dict[str, str]:
    """A hashed lock's `name==version` pins, by canonical name."""
    found = {}
    for line in open(path).read().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def test_the_docs_lock_pins_shared_packages_at_the_runtime_locks_versions():
    runtime, docs = pins(os.path.join(ROOT, "requirements.lock")), pins(os.path.join(ROOT, "docs", "requirements.lock"))
    assert "mkdocs" in docs and "mkdocs-material" in docs
    differ = {name: (version, runtime[name]) for name, version in docs.items() if name in runtime and runtime[name] != version}
    assert not differ, f"docs/requirements.lock differs from requirements.lock (run make docs-lock): {differ}"
    text = open(os.path.join(ROOT, "docs", "requirements.lock")).read()
    assert all(f"{name}==" in text.lower().replace("_", "-") for name in docs)
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}", text)) >= len(docs)


def test_the_readme_is_a_landing_page_whose_links_resolve():
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert len(readme.splitlines()) <= 250
    first = [line.split("#")[0].strip() for line in readme.splitlines() if line.startswith("make ")]
    assert first[:2] == ["make demo", "make test"]
    targets = re.findall(r"\]\(((?:docs/|CHANGELOG)[^)#]*)", readme)
    assert targets and all(os.path.isfile(os.path.join(ROOT, target)) for target in targets), targets
