# journeys: `make run` and `make test` set everything up themselves.
# Needs only python3 (>= 3.11) and pip; uv is installed into .tools/ and the
# project into .venv/ from the committed uv.lock.
PY ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
CONFIG ?= data/sample/journeys.toml

.PHONY: run test setup setup-test sample lock clean

$(UV):
	$(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q 'uv==0.13.9'

setup: $(UV)
	$(UV) sync --frozen --inexact --python $(PY)

setup-test: $(UV)
	$(UV) sync --frozen --extra test --python $(PY)

run: setup
	$(VENV)/bin/journeys run --config $(CONFIG)

test: setup-test
	$(VENV)/bin/python -m pytest -q

sample: setup
	$(VENV)/bin/journeys sample --customers 2000 --seed 7 --out data/sample

lock: $(UV)
	$(UV) lock --python $(PY)

clean:
	rm -rf build .venv .tools
