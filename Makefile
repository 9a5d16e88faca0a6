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

.PHONY: run test setup setup-test system-deps sample lock clean bench profile

$(UV):
	$(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q 'uv==0.13.9'

setup: $(UV)
	$(UV) sync --frozen --inexact --python $(PY)

setup-test: $(UV) system-deps
	$(UV) sync --frozen --extra test --python $(PY)

# Debian packages the tests use: headless Chromium (report browser test) and Graphviz (DOT
# rendering). Installed when missing and we are root (as in CI); otherwise those tests skip
# and say why.
system-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v dot >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium, chromium-driver and graphviz (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver graphviz >/dev/null; \
	else echo "note: chromium, chromedriver or graphviz missing and not root: the browser and Graphviz tests will skip"; fi

run: setup
	$(VENV)/bin/journeys run --config $(CONFIG)

# test artifacts (the HTML report's browser screenshot) go to build/test-artifacts/.
# Two pytest-xdist workers, one test file each at a time (a file's module fixtures are built
# once): 5.7 min instead of 10.8 on 2 cores. TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
test: setup-test
	mkdir -p build/test-artifacts
	JOURNEYS_ARTIFACTS=$(CURDIR)/build/test-artifacts $(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

sample: setup
	$(VENV)/bin/journeys sample --customers 2000 --seed 7 --out data/sample

# the benchmark of issue 5 (not a test): make bench SIZES=1M,10M[,100M]; writes docs/benchmarks.md,
# .json and .png; generated data is cached in build/bench/<size>/
SIZES ?= 1M,10M
bench: $(UV)
	$(UV) sync --frozen --inexact --extra bench --python $(PY)
	$(VENV)/bin/python benchmarks/run.py --sizes $(SIZES)

# where journeys build spends its time, phase by phase, on a size the benchmark has ingested:
# make profile SIZE=10M [MEMORY_LIMIT=1.5GB] (works on a copy of build/bench/<size>/warehouse,
# deleted after; MEMORY_LIMIT as journeys build --memory-limit)
SIZE ?= 10M
MEMORY_LIMIT ?=
profile: $(UV)
	$(UV) sync --frozen --inexact --extra bench --python $(PY)
	$(VENV)/bin/python benchmarks/profile_build.py --config build/bench/$(SIZE)/journeys.toml \
		$(if $(MEMORY_LIMIT),--memory-limit $(MEMORY_LIMIT))

lock: $(UV)
	$(UV) lock --python $(PY)

clean:
	rm -rf build .venv .tools
