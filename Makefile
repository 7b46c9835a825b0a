# make setup: .venv/ from requirements.lock, then the docs tools from docs/requirements.lock (idempotent; a no-op when
# nothing changed).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vocdet-installed

.PHONY: setup demo test test-fast bench sample-weights docs lock docs-lock clean

setup: $(STAMP)

# Every file pip installs from the lock must match one of its sha256 hashes (--require-hashes), pip, setuptools
# and wheel first. The project itself installs editable, from this folder, which has no hash to check. The docs
# tools come last, from their own lock (the pipeline image installs requirements.lock alone): every package the
# two locks share is pinned to one version, so this adds MkDocs and its plugins and changes nothing installed.
$(STAMP): requirements.lock docs/requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	awk '/^[^ #]/ {keep = /^(pip|setuptools|wheel)==/} keep' requirements.lock \
	  | $(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r /dev/stdin
	@# TFX 1.16 declares Python <3.11 but runs on 3.11; the lock pins every package, so no resolution runs.
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --ignore-requires-python --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r docs/requirements.lock
	touch $(STAMP)

demo: setup
	$(BIN)/vocdet run

# Two pytest-xdist workers, one test file each at a time (a file's module fixtures are built once): the e2e
# runs are mostly single-threaded (Beam's DirectRunner, process start-ups), so 2 cores run two of them at once.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -v -n $(TEST_WORKERS) --dist loadfile --durations=15

test-fast: setup
	$(BIN)/python -m pytest -m "not e2e"

bench: setup
	$(BIN)/python -m bench

# Re-train the shipped `sample` checkpoint the demo starts from (about 20 min on 2 cores; docs/training.md).
sample-weights: setup
	$(BIN)/python -m vocdet.pipeline.tools.sample_weights

# The docs site (mkdocs.yml, docs/) into site/; --strict fails on a broken link, a missing page or a warning. Its
# configuration reference is generated from the config dataclasses (docs/hooks/config_reference.py). The variable
# quiets Material's notice of its end of life (May 2027), printed at every build.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site/

# Re-resolve the lock from pyproject's direct dependencies (needs the registries; takes minutes), with the sha256
# of every file PyPI has for each pinned version (any platform, so a Mac or an arm64 image installs too); the
# Docker image's CUDA pins (docker/requirements-gpu.txt) get theirs the same way.
lock:
	rm -rf /tmp/vocdet-lock && $(PYTHON) -m venv /tmp/vocdet-lock
	/tmp/vocdet-lock/bin/pip install --quiet pip==24.2
	/tmp/vocdet-lock/bin/pip install --ignore-requires-python -e '.[test]' 'scipy<1.13' contourpy==1.3.0 \
	  setuptools==75.1.0 wheel==0.44.0
	/tmp/vocdet-lock/bin/pip freeze --all --exclude-editable | grep -v '^-e ' > /tmp/vocdet-lock/frozen.txt
	/tmp/vocdet-lock/bin/python -c "$$HASH_LOCK" /tmp/vocdet-lock/frozen.txt > /tmp/vocdet-lock/requirements.lock
	/tmp/vocdet-lock/bin/python -c "$$HASH_LOCK" docker/requirements-gpu.txt > /tmp/vocdet-lock/requirements-gpu.txt
	mv /tmp/vocdet-lock/requirements.lock requirements.lock
	mv /tmp/vocdet-lock/requirements-gpu.txt docker/requirements-gpu.txt

# Re-resolve docs/requirements.lock: the docs tools, constrained to requirements.lock's pins (so both locks install
# into one .venv; run it again after `make lock`), hashed the same way. tests/test_docs.py checks the shared pins.
DOCS_TOOLS := mkdocs==1.6.1 mkdocs-material==9.8.2
docs-lock:
	rm -rf /tmp/vocdet-docs-lock && $(PYTHON) -m venv /tmp/vocdet-docs-lock
	awk '/^[A-Za-z0-9]/ {print $$1}' requirements.lock > /tmp/vocdet-docs-lock/constraints.txt
	/tmp/vocdet-docs-lock/bin/pip install --quiet -c /tmp/vocdet-docs-lock/constraints.txt $(DOCS_TOOLS)
	( echo '# The docs tools (make docs), pinned and hashed by `make docs-lock`: $(DOCS_TOOLS) and what they need,'; \
	  echo '# at requirements.lock'"'"'s version wherever that lock pins the same package. make setup installs it after it.'; \
	  /tmp/vocdet-docs-lock/bin/pip freeze --exclude pip --exclude setuptools ) > /tmp/vocdet-docs-lock/frozen.txt
	/tmp/vocdet-docs-lock/bin/python -c "$$HASH_LOCK" /tmp/vocdet-docs-lock/frozen.txt > /tmp/vocdet-docs-lock/requirements.lock
	mv /tmp/vocdet-docs-lock/requirements.lock docs/requirements.lock

# HASH_LOCK FILE: FILE's `name==version` pins (comments kept) with `--hash=sha256:...` for every file of that
# version on PyPI (its JSON simple API, PEP 691).
define HASH_LOCK
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

def hashes(pin):
    name, version = pin.split("==")
    request = urllib.request.Request(f"https://pypi.org/simple/{canonicalize_name(name)}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        files = json.load(response)["files"]
    found = set()
    for file in files:
        parse = parse_wheel_filename if file["filename"].endswith(".whl") else parse_sdist_filename
        try:
            if parse(file["filename"])[1] == Version(version) and "sha256" in file["hashes"]:
                found.add(file["hashes"]["sha256"])
        except ValueError:
            continue
    if not found:
        sys.exit(f"{pin}: no files on PyPI")
    return " \\\n".join([pin] + [f"    --hash=sha256:{sha}" for sha in sorted(found)])

lines = open(sys.argv[1]).read().splitlines()
pins = [line.split()[0] for line in lines if "==" in line and not line.startswith("#")]
with ThreadPoolExecutor(8) as pool:
    print("\n".join([line for line in lines if line.startswith("#")] + list(pool.map(hashes, pins))))
endef
export HASH_LOCK

clean:
	rm -rf $(VENV) outputs site
