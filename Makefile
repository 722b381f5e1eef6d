# samlab: two commands to start.
#   make lab    set up .venv (if needed) and open the notebooks in JupyterLab
#   make test   set up .venv (if needed) and run the unit tests and every notebook (smoke size)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.samlab-installed
PROFILE ?= cpu

.PHONY: setup lab test test-fast reproduce results-table bench bench-table student html

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lab: setup
	$(BIN)/jupyter lab notebooks/

# Unit tests and notebooks at the smoke size (what CI runs).
test: setup
	SAMLAB_PROFILE=smoke MPLBACKEND=Agg $(BIN)/python -m pytest

# Unit tests only.
test-fast: setup
	SAMLAB_PROFILE=smoke $(BIN)/python -m pytest tests

bench: setup
	$(BIN)/python -m samlab.bench

# The README's benchmark table, generated from data/results/cpu/bench.json
# (written by: python -m samlab.bench --models small-cnn-gn,small-cnn-bn --repeats 15 --warmup 2 --out data/results/cpu/bench.json).
bench-table: setup
	$(BIN)/python -m samlab.bench --readme README.md

# Re-run every experiment at PROFILE (cpu or gpu) and rewrite data/results/PROFILE/*.json.
reproduce: setup
	$(BIN)/python -m samlab.experiments run all --profile $(PROFILE)

# The README's results table, generated from data/results/.
results-table: setup
	$(BIN)/python -m samlab.experiments table --readme README.md

# Student copies of the notebooks with exercises (solutions stubbed, outputs cleared) in notebooks/exercises/.
student: setup
	$(BIN)/python -m samlab.course student

# Static HTML of every notebook (saved outputs, nothing re-run) and an index, in _site/; fails on broken links.
html: setup
	$(BIN)/python -m samlab.course html --out _site
