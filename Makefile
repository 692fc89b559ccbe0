# The two commands of the README. Both set up what is missing (venv, project, Fashion-MNIST) first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA := /usr/share/datasets/fashion-mnist
export RAY_AUTH_MODE ?= disabled

.PHONY: search test setup data

# The smoke search (a few minutes on 2 CPU cores). Run again, the same command with resume=true
# continues it, or just re-prints the report once it has finished.
SEARCH := augmentation-smoke
search: setup data
	$(PY) -m search.run space=augmentation budget=smoke name=$(SEARCH) $$(test -f runs/$(SEARCH)/run.json && echo resume=true)

# Three test files at a time on 2 cores (pytest-xdist; a file stays on one worker, so a module's
# fixtures are made once): much of each test waits on Ray (its start, Tune's snapshots, trials held
# at a gate), so a third worker fills the cores. The longest files go first (tests/conftest.py's
# LONG_FILES), in that order, not xdist's. Side by side, 2026-12-07: 496 and 466 s with two workers
# in xdist's order, 413 and 398 s with three in this order (docs/testing.md).
test: setup data
	$(PY) -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder

setup: $(VENV)/.installed

# Reinstalls only when pyproject.toml changes. pip (not uv) so torch comes from the local wheel cache.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Debian's dataset-fashion-mnist, unless the data is already there (or FASHION_MNIST_DIR points at it).
data:
	@if [ -n "$$FASHION_MNIST_DIR" ] || [ -f $(DATA)/train-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else echo "Fashion-MNIST not found: install Debian's dataset-fashion-mnist or set FASHION_MNIST_DIR"; fi
