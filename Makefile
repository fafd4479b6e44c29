# covgap: the two commands a newcomer types are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint install install-test system-deps benchmark benchmark-quick benchmark-stream vendor clean

demo: $(VENV)/.installed
	$(BIN)/covgap demo

test: $(VENV)/.installed-test system-deps lint
	$(BIN)/python -m pytest --nbmake tests notebooks

# Static checks (configured in pyproject.toml): ruff for style and likely bugs, mypy for types.
lint: $(VENV)/.installed-test
	$(BIN)/ruff check coverage tests scripts benchmarks data
	$(BIN)/mypy

# The virtual environment with the runtime dependencies; redone when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	# Compile the parser of large files once (numba caches it beside the code): no run pays it.
	$(BIN)/python -c "from covgap import fastparse; fastparse.warm()"
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Debian packages the tests need: headless Chromium (maps) and GDAL's ogrinfo (exports).
system-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v ogrinfo >/dev/null 2>&1; then \
	  echo "Installing chromium and gdal-bin with apt-get"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium gdal-bin; \
	fi

# Speed and memory (issue 11; docs/benchmark.md). Not part of `make test`. Generated CSVs are
# cached in /tmp/covgap-bench (about 1.7 GB for `benchmark`, 6.7 GB more for `benchmark-stream`).
# benchmark: the sample demo, covgap against the geopandas workflow at 1M, 5M and 2·10⁷ rows, and
# a 1% refresh onto a 2·10⁷-row store against the rebuild (tens of minutes before the new engine).
benchmark: $(VENV)/.installed
	$(BIN)/python benchmarks/run_benchmark.py
	$(BIN)/python benchmarks/geopandas_workflow.py --rows 1000000 5000000 20000000
	$(BIN)/python benchmarks/refresh_large.py --rows 20000000
	$(BIN)/python benchmarks/fixed_cost.py

# The same at 1M rows only (about two minutes).
benchmark-quick: $(VENV)/.installed
	$(BIN)/python benchmarks/run_benchmark.py --runs 1
	$(BIN)/python benchmarks/geopandas_workflow.py --rows 1000000
	$(BIN)/python benchmarks/refresh_large.py --rows 1000000

# 10⁸ rows in ten files on disk through `covgap run`: peak RSS against 1 GiB, duplicates checked.
benchmark-stream: $(VENV)/.installed
	$(BIN)/python benchmarks/stream_large.py --rows 100000000 --files 10

# Refresh the vendored front-end assets from the npm registry (not needed to build or test).
vendor:
	bash scripts/vendor_assets.sh

clean:
	rm -rf out maps/*.html build dist .pytest_cache
