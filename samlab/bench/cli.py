"""``python -m samlab.bench``: time, count or tabulate (see :mod:`samlab.bench`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from samlab import provenance, results
from samlab.bench.flops import count_flops
from samlab.bench.tables import (
    README_FLOPS_MARKERS,
    README_GPU_MARKERS,
    README_MARKERS,
    _table,
    committed_flops_table,
    committed_gpu_tables,
    committed_table,
)
from samlab.bench.throughput import eval_seconds, throughput_records
from samlab.bench.timing import MODELS, bench_model, build_methods

__all__ = ["main"]

def _write_out(out: str, argv: Sequence[str] | None, device: str, records: list[dict[str, Any]]) -> None:
    """``--out``: the records with the command that made them and the machine's provenance."""
    env = {k: v for k, v in provenance.record(torch.device(device)).items() if k in ("hardware", "git_commit", "date", "torch")}
    cmd = "python -m samlab.bench " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    results.write(Path(out), {"command": cmd.strip(), **env, "records": records})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samlab.bench", description="Milliseconds per training step of every method, and its ratio to SGD (or, with --throughput, --eval or --flops, images per second, evaluation seconds or FLOPs).")
    default_models = ["small-cnn-gn", "small-cnn-bn"] + (["resnet18", "resnet18-gn"] if torch.cuda.is_available() else [])
    parser.add_argument("--models", default=",".join(default_models), help=f"comma-separated, from {list(MODELS)}")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per method (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per method first")
    parser.add_argument("--methods", default=None, help="comma-separated labels (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--throughput", action="store_true", help="images/s of the fast data path of train.fit vs the default"
    )
    parser.add_argument("--compile", action="store_true", help="with --throughput: also time torch.compile")
    parser.add_argument("--eval", default=None, metavar="SIZES",
                        help="comma-separated evaluation batch sizes: time train.evaluate at each instead")
    parser.add_argument("--flops", action="store_true",
                        help="count the FLOPs of one step per method (torch's FlopCounterMode, CPU) instead of timing")
    parser.add_argument("--out", default=None, help="also write the JSON records (a list) to this file")
    parser.add_argument("--readme", default=None,
                        help="only rewrite the benchmark tables of this README from data/results/{cpu,gpu}/")
    args = parser.parse_args(argv)
    if args.readme:
        results.update_readme(Path(args.readme), committed_table(), README_MARKERS)
        results.update_readme(Path(args.readme), committed_gpu_tables(), README_GPU_MARKERS)
        results.update_readme(Path(args.readme), committed_flops_table(), README_FLOPS_MARKERS)
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        parser.error(f"--models must be from {list(MODELS)}, got {bad}")
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--batch and --repeats must be >= 1, --warmup >= 0")
    labels = None if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.eval:
        sizes = [int(v) for v in args.eval.split(",") if v.strip()]
        if not sizes or min(sizes) < 1:
            parser.error(f"--eval must list batch sizes >= 1, got {args.eval!r}")
        lines = [eval_seconds(m, sizes, repeats=args.repeats, device=args.device, seed=args.seed) for m in models]
        if args.out:
            _write_out(args.out, argv, args.device, lines)
        for line in lines:
            print(json.dumps(line), flush=True)
        return 0
    if args.throughput:
        records = throughput_records(
            models, labels or ["sgd", "sam"], batch=args.batch, repeats=args.repeats, warmup=args.warmup,
            device=args.device, seed=args.seed, compile=args.compile,
        )
        for rec in records:
            head = f"== {rec['method']} on {rec['model']}, {rec['device']}, batch {rec['batch']} =="
            print(f"{head}\n{rec['table']}\n", flush=True)
        lines = [{k: v for k, v in rec.items() if k != "table"} for rec in records]
        if args.out:
            _write_out(args.out, argv, args.device, lines)
        for line in lines:
            print(json.dumps(line), flush=True)
        return 0
    if labels is not None and "sgd" not in labels:
        labels = ["sgd", *labels]  # the ratios need SGD
    built, skipped = build_methods(labels, args.batch)
    if args.flops:
        counted = []
        for key in models:
            rec = count_flops(key, built, batch=args.batch, seed=args.seed)
            rec["skipped"] = {**skipped, **rec["skipped"]}
            print(f"== {key}, batch {args.batch}: GFLOPs per step (x SGD) ==")
            for label, f in rec["flops_per_step"].items():
                print(f"{label:<18} {f / 1e9:>10.3f} {rec['flop_ratio_to_sgd'].get(label, float('nan')):>7.2f}")
            for label, why in rec["skipped"].items():
                print(f"{label:<18} skipped: {why}")
            print(flush=True)
            counted.append(rec)
        if args.out:
            _write_out(args.out, argv, "cpu", counted)
        for rec in counted:
            print(json.dumps(rec), flush=True)
        return 0
    records = []
    for key in models:
        rec = bench_model(
            key, built, batch=args.batch, repeats=args.repeats, warmup=args.warmup, device=args.device, seed=args.seed
        )
        rec["skipped"] = {**skipped, **rec["skipped"]}
        print(_table(rec), flush=True)
        print(flush=True)
        records.append(rec)
    lines = [
        {k: rec[k] for k in ("device", "model", "batch", "ms_per_step", "ratio_to_sgd", "peak_mb", "targets",
                             "skipped")}
        for rec in records
    ]
    if args.out:
        _write_out(args.out, argv, args.device, lines)
    for line in lines:
        print(json.dumps(line), flush=True)
    return 0
