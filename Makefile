# make setup: .venv/ from requirements.lock (idempotent; a no-op when nothing changed).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vocdet-installed

.PHONY: setup demo test test-fast bench sample-weights lock clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check pip==24.2 setuptools==75.1.0 wheel==0.44.0
	@# TFX 1.16 declares Python <3.11 but runs on 3.11; the lock pins every package, so no resolution runs.
	$(BIN)/pip install --quiet --disable-pip-version-check --ignore-requires-python --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(BIN)/vocdet run

test: setup
	$(BIN)/python -m pytest -v --durations=15

test-fast: setup
	$(BIN)/python -m pytest -m "not e2e"

bench: setup
	$(BIN)/python -m bench

# Re-train the shipped `sample` checkpoint the demo starts from (about 30 min on 2 cores; see README).
sample-weights: setup
	$(BIN)/python -m vocdet.pipeline.sample_weights

# Re-resolve the lock from pyproject's direct dependencies (needs the registries; takes minutes).
lock:
	rm -rf /tmp/vocdet-lock && $(PYTHON) -m venv /tmp/vocdet-lock
	/tmp/vocdet-lock/bin/pip install --quiet pip==24.2
	/tmp/vocdet-lock/bin/pip install --ignore-requires-python -e '.[test]' 'scipy<1.13' contourpy==1.3.0
	/tmp/vocdet-lock/bin/pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock

clean:
	rm -rf $(VENV) outputs
