# Two-command quick start: `make demo` and `make test`. Both bootstrap .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-blender-lts addon bench-transport clean

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "python3 >= 3.11 is required")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch (a CUDA torch already installed on a GPU machine satisfies the requirement too).
	$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/splatstage demo

test: $(STAMP)
	$(PY) build_addon.py >/dev/null
	$(PY) -m pytest -q -p no:cacheprovider

# the same selection as test, stopping at the first failure, without rebuilding the add-on zip
test-fast: $(STAMP)
	$(PY) -m pytest -q -x -p no:cacheprovider -m 'not gpu and not slow'

test-blender-lts: $(STAMP)
	$(PY) build_addon.py >/dev/null
	PYTEST_PYTHON=$(abspath $(PY)) bash tests/run_blender_lts.sh

addon: $(STAMP)
	$(PY) build_addon.py

bench-transport: $(STAMP)
	$(PY) benchmarks/transport.py

clean:
	rm -rf $(VENV) build dist *.egg-info
