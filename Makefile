# covgap: the two commands a newcomer types are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint install install-test system-deps benchmark vendor clean

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

benchmark: $(VENV)/.installed
	$(BIN)/python benchmarks/run_benchmark.py
	$(BIN)/python benchmarks/fixed_cost.py
	$(BIN)/python benchmarks/geopandas_workflow.py --rows 1000000

# Refresh the vendored front-end assets from the npm registry (not needed to build or test).
vendor:
	bash scripts/vendor_assets.sh

clean:
	rm -rf out maps/*.html build dist .pytest_cache
