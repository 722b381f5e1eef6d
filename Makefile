# samlab: two commands to start.
#   make lab    set up .venv (if needed) and open the notebooks in JupyterLab
#   make test   set up .venv (if needed) and run the unit tests and every notebook (smoke size)
# `make help` lists every target (the text after `##` on its line).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.samlab-installed
PROFILE ?= cpu

.PHONY: help setup lab test test-fast test-browser measure reproduce results-table bench bench-table student html

help: ## list the targets, one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv (if missing) and install samlab with its dev extra

# JupyterLab on the first free port from 8888 (as root, e.g. in a container: with --allow-root).
lab: setup ## open the notebooks in JupyterLab (first free port from 8888; --allow-root when root)
	@port=$$($(BIN)/python -m samlab.course free-port 8888) || exit 1; \
	extra=; if [ "$$(id -u)" = 0 ]; then extra=--allow-root; \
	  echo "make lab: running as root, so JupyterLab gets --allow-root (fine in a container; prefer a normal user elsewhere)"; fi; \
	echo "make lab: JupyterLab at http://localhost:$$port/lab (open the URL with the token printed below; Ctrl-C to stop)"; \
	exec $(BIN)/jupyter lab notebooks/ --port=$$port --port-retries=0 $$extra

# Unit tests and notebooks at the smoke size (what CI runs), in six pytest processes, so that
# what one holds is released before the next starts (lower peak memory; `pytest` alone runs the
# same tests in one process): the browser tests (their module imports no torch until its last
# test, so Chromium, JupyterLab and a kernel run beside a small process); the tests that start
# worker processes (submitit jobs, concurrent writers), from a small fresh pytest process; the
# other unit tests in two halves; the student copies run up to their first exercise (one kernel each); every
# notebook through nbval. The last two start a kernel per notebook, and a kernel spends most of
# its life in one Python thread (imports, smoke-size models), so they run in two pytest-xdist
# workers, each worker and kernel with one torch thread (OMP_NUM_THREADS=1: two processes of
# two threads on two cores spin-wait and run several times slower); nbval keeps a notebook's
# cells in one worker, in order (--dist loadfile). `make test XDIST=` runs them one at a time.
SPAWNING := tests/test_cluster.py tests/test_results_lock.py tests/test_runner.py
KERNELS := tests/test_course.py::test_student_copy_runs_up_to_its_first_exercise
UNIT_A := $(filter-out $(SPAWNING) tests/test_browser.py,$(sort $(wildcard tests/test_[a-m]*.py)))
UNIT_B := $(filter-out $(SPAWNING),$(sort $(wildcard tests/test_[n-z]*.py)))
XDIST ?= -n 2
PAR := $(if $(XDIST),OMP_NUM_THREADS=1)

test: setup ## unit tests, every notebook (smoke size), nbgrader and browser tests: what CI runs
	SAMLAB_PROFILE=smoke MPLBACKEND=Agg $(BIN)/python -m pytest -m browser tests/test_browser.py
	SAMLAB_PROFILE=smoke MPLBACKEND=Agg $(BIN)/python -m pytest -m "not browser" $(SPAWNING)
	SAMLAB_PROFILE=smoke MPLBACKEND=Agg $(BIN)/python -m pytest -m "not browser" --deselect $(KERNELS) $(UNIT_A)
	SAMLAB_PROFILE=smoke MPLBACKEND=Agg $(BIN)/python -m pytest -m "not browser" $(UNIT_B)
	$(PAR) SAMLAB_PROFILE=smoke MPLBACKEND=Agg $(BIN)/python -m pytest $(XDIST) $(if $(XDIST),--dist worksteal) $(KERNELS)
	$(PAR) SAMLAB_PROFILE=smoke MPLBACKEND=Agg $(BIN)/python -m pytest $(XDIST) $(if $(XDIST),--dist loadfile) notebooks

# Unit tests only.
test-fast: setup ## unit tests only (tests/, without the browser tests)
	SAMLAB_PROFILE=smoke $(BIN)/python -m pytest -m "not browser" tests

test-browser: setup ## only the real-browser tests (JupyterLab in headless system Chromium)
	SAMLAB_PROFILE=smoke MPLBACKEND=Agg $(BIN)/python -m pytest -m browser tests/test_browser.py

# Peak memory (all processes of the run) and wall time of `make test`; CMD=... measures another command.
measure: setup ## peak memory and wall time of `make test` (or of CMD="...")
	$(BIN)/python .ci/measure $(if $(CMD),$(CMD),$(MAKE) --no-print-directory test)

bench: setup ## ms per step of every method
	$(BIN)/python -m samlab.bench

# The README's benchmark table, generated from data/results/cpu/bench.json
# (written by: python -m samlab.bench --models small-cnn-gn,small-cnn-bn,mlp-mnist --repeats 15 --warmup 2 --out data/results/cpu/bench.json).
bench-table: setup ## regenerate the README's benchmark table
	$(BIN)/python -m samlab.bench --readme README.md

# Re-run every experiment at PROFILE (cpu or gpu) and rewrite data/results/PROFILE/*.json.
reproduce: setup ## re-run every experiment at PROFILE (cpu or gpu)
	$(BIN)/python -m samlab.experiments run all --profile $(PROFILE)

# The README's results table, generated from data/results/.
results-table: setup ## regenerate the README's results table
	$(BIN)/python -m samlab.experiments table --readme README.md

# Student copies of the notebooks with exercises (solutions stubbed, outputs cleared) in notebooks/exercises/.
student: setup ## student copies in notebooks/exercises/ (nbgrader's preprocessors)
	$(BIN)/python -m samlab.course student

# Static HTML of every notebook (saved outputs, nothing re-run) and an index, in _site/; fails on broken links.
html: setup ## static offline HTML site in _site/ (nbconvert), links checked (LinkChecker)
	$(BIN)/python -m samlab.course html --out _site
