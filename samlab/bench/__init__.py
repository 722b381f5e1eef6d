"""What each method costs: milliseconds per training step and the ratio to SGD, FLOPs, images per
second, and the cost of a result's methods read from a committed benchmark (see the README).

``python -m samlab.bench`` runs one of four modes (:mod:`samlab.bench.cli`):

* timing (default, :mod:`samlab.bench.timing`): ms per step of every method on the same model and
  batch, the methods stepping in turn, with peak memory and the project's goals;
* ``--flops`` (:mod:`samlab.bench.flops`): the FLOPs of one step, the arithmetic floor under each
  time ratio;
* ``--throughput`` and ``--eval`` (:mod:`samlab.bench.throughput`): images per second of the data
  path of :func:`samlab.train.fit`, and seconds of its per-epoch evaluation;
* ``--readme README.md`` (:mod:`samlab.bench.tables`): the README's tables from the committed files.

``--out FILE`` (any mode) also writes the records, with the command, hardware, torch
version, commit and date, to a JSON file; ``--readme README.md`` rewrites the README's
benchmark tables from the committed ``data/results/cpu/bench.json`` and
``data/results/gpu/{bench,throughput}.json``.

:mod:`samlab.bench.costs` reads the records back: a method config's benchmark variant, a result's
cost per method, and hours of training.
"""

from samlab.bench.cli import main
from samlab.bench.costs import TARGETS, VARIANTS, bench_costs, targets_for, training_hours, variant_of
from samlab.bench.flops import count_flops
from samlab.bench.tables import (
    README_FLOPS_MARKERS,
    README_GPU_MARKERS,
    README_MARKERS,
    committed_flops_table,
    committed_gpu_tables,
    committed_table,
    flops_markdown_table,
    load_record,
    markdown_table,
    relabel,
    throughput_markdown_table,
)
from samlab.bench.throughput import eval_seconds, throughput, throughput_records, throughput_table
from samlab.bench.timing import MODELS, bench_model, build_methods, peak_memory_mb

__all__ = [
    "MODELS",
    "README_FLOPS_MARKERS",
    "README_GPU_MARKERS",
    "README_MARKERS",
    "TARGETS",
    "VARIANTS",
    "bench_costs",
    "bench_model",
    "build_methods",
    "committed_flops_table",
    "committed_gpu_tables",
    "committed_table",
    "count_flops",
    "eval_seconds",
    "flops_markdown_table",
    "load_record",
    "main",
    "markdown_table",
    "peak_memory_mb",
    "relabel",
    "targets_for",
    "throughput",
    "throughput_markdown_table",
    "throughput_records",
    "throughput_table",
    "training_hours",
    "variant_of",
]
