"""The README's benchmark tables (``python -m samlab.bench --readme README.md``), and the
benchmark records read back, relabelled by the engine they timed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from samlab import results

__all__ = [
    "PRE_ENGINE", "README_FLOPS_MARKERS", "README_GPU_MARKERS", "README_MARKERS", "committed_flops_table",
    "committed_gpu_tables", "committed_table", "flops_markdown_table", "load_record", "markdown_table", "relabel",
    "throughput_markdown_table",
]

#: the README's benchmark table sits between these lines (``make bench-table``)
README_MARKERS = ("<!-- bench-table:start -->", "<!-- bench-table:end -->")


#: the README's GPU tables (``data/results/gpu/bench.json`` and ``throughput.json``)
README_GPU_MARKERS = ("<!-- bench-gpu-table:start -->", "<!-- bench-gpu-table:end -->")


#: the README's FLOP table (``data/results/cpu/flops.json``, written by ``--flops --out``)
README_FLOPS_MARKERS = ("<!-- bench-flops-table:start -->", "<!-- bench-flops-table:end -->")


def _table(record: dict[str, Any]) -> str:
    lines = [f"== {record['model']} on {record['device']}, batch {record['batch']} =="]
    lines.append(f"{'method':<18} {'ms/step':>9} {'x SGD':>7} {'peak MB':>8}  {'goal':<12} config")
    for label, v in record["ms_per_step"].items():
        goal = ""
        if label in record["targets"]:
            t = record["targets"][label]
            goal = f"<= {t['max']:g} {'ok' if t['met'] else 'MISSED'}"
        r = record["ratio_to_sgd"].get(label, float("nan"))
        mb = record.get("peak_mb", {}).get(label, float("nan"))
        lines.append(f"{label:<18} {v:>9.1f} {r:>7.2f} {mb:>8.1f}  {goal:<12} {record['configs'].get(label, '')}")
    for label, why in record["skipped"].items():
        lines.append(f"{label:<18} skipped: {why}")
    return "\n".join(lines)


def markdown_table(saved: dict[str, Any]) -> str:
    """The README's benchmark table from a file written by ``--out``: one column per model, each cell
    ms per step, ratio to SGD and (where recorded) peak memory; the last column the goals and whether
    each model met them."""
    records = [relabel(r) for r in saved["records"]]
    labels = list(dict.fromkeys(label for r in records for label in r["ms_per_step"]))
    head = "| method | " + " | ".join(f"{r['model']}: ms/step (× SGD, peak MB)" for r in records) + " | target |"
    lines = [head, "|---" * (len(records) + 2) + "|"]
    for label in labels:
        cells = []
        for r in records:
            ms, ratio, mb = r["ms_per_step"].get(label), r["ratio_to_sgd"].get(label), r.get("peak_mb", {}).get(label)
            cells.append("—" if ms is None else f"{ms:.0f} ({ratio:.2f}×" + (f", {mb:.0f})" if mb is not None else ")"))
        goals = []
        for r in records:
            if label in r["targets"]:
                t = r["targets"][label]
                who = f"{r['model']} " if len(records) > 1 else ""
                goals.append(f"{who}≤ {t['max']:g}× " + ("met" if t["met"] else "**missed**"))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {'; '.join(goals)} |")
    lines.append("")
    lines.append(f"`{saved['command']}` on {records[0]['device']} ({saved['hardware']}), batch {records[0]['batch']}, "
                 f"{saved['date']}, commit {saved['git_commit']}.")
    return "\n".join(lines)


def throughput_markdown_table(saved: dict[str, Any]) -> str:
    """A table of images per second (speed-up over the default path) from a ``--throughput --out`` file."""
    records = saved["records"]
    configs = list(records[0]["images_per_second"])
    lines = ["| model | method | " + " | ".join(configs) + " |", "|---" * (len(configs) + 2) + "|"]
    for r in records:
        cells = [f"{r['images_per_second'][c]:.0f} ({r['speedup'][c]:.2f}×)" if c in r["images_per_second"] else "—"
                 for c in configs]
        lines.append(f"| {r['model']} | {r['method']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"`{saved['command']}` on {records[0]['device']} ({saved['hardware']}), batch {records[0]['batch']}, "
                 f"{saved['date']}, commit {saved['git_commit']}.")
    return "\n".join(lines)


def flops_markdown_table(saved: dict[str, Any], timed: dict[str, Any] | None = None) -> str:
    """The README's FLOP table from a ``--flops --out`` file: per method and model, GFLOPs per step and
    the ratio to SGD; where ``timed`` (a ``bench.json``) timed the same model, its time ratio beside it."""
    records = saved["records"]
    times = {r["model"]: relabel(r)["ratio_to_sgd"] for r in (timed or {}).get("records", [])}
    labels = list(dict.fromkeys(label for r in records for label in r["flops_per_step"]))
    lines = ["| method | " + " | ".join(f"{r['model']}: GFLOPs (× SGD; time × SGD)" for r in records) + " |",
             "|---" * (len(records) + 1) + "|"]
    for label in labels:
        cells = []
        for r in records:
            g = r["flops_per_step"].get(label)
            t = times.get(r["model"], {}).get(label)
            gf = None if g is None else g / 1e9
            cells.append("—" if gf is None else (f"{gf:.3g}" if gf < 1000 else f"{gf:.0f}") + f" ({r['flop_ratio_to_sgd'][label]:.2f}×"
                         + (f"; {t:.2f}×)" if t is not None else ")"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"`{saved['command']}` ({saved['hardware']}), batch {records[0]['batch']}, {saved['date']}, "
                 f"commit {saved['git_commit']}; time ratios from the committed `data/results/cpu/bench.json`.")
    return "\n".join(lines)


#: labels of a record written before the exact engine existed -> what they timed (the older engines)
PRE_ENGINE: dict[str, str] = {"1-sam": "1-sam[vmap]", "jsam-1": "jsam-1[vmap]", "lsam-1": "lsam-1[vmap]", "obf": "obf[loop]"}


def relabel(record: dict[str, Any]) -> dict[str, Any]:
    """A benchmark record with its labels naming the engine that was timed. Records written before the
    exact engine (no ``peak_mb``, no ``[vmap]`` label) timed the vmap/loop engines under the plain labels
    (``1-sam``, ``jsam-1``, ``lsam-1``, ``obf``): those are renamed (:data:`PRE_ENGINE`), so that a
    current config (exact engine) finds no cost where none was measured. Newer records are unchanged."""
    if "peak_mb" in record or any(label.endswith("[vmap]") for label in record["ms_per_step"]):
        return record  # written with the exact engine (peak memory came with it)
    rename = lambda d: {PRE_ENGINE.get(k, k): v for k, v in d.items()}  # noqa: E731
    out = dict(record)
    for key in ("ms_per_step", "ratio_to_sgd", "targets", "peak_mb"):
        if key in record:
            out[key] = rename(record[key])
    return out


def load_record(profile: str | None = None, model: str = "small-cnn-gn") -> dict[str, Any] | None:
    """:func:`samlab.results.load_bench`, relabelled by engine (:func:`relabel`); ``None`` if absent."""
    record = results.load_bench(profile, model)
    return None if record is None else relabel(record)


def committed_table(path: Path | None = None) -> str:
    """:func:`markdown_table` of the committed ``data/results/cpu/bench.json``, or a note that there is none."""
    saved = json.loads(Path(path).read_text()) if path is not None and Path(path).exists() else None
    if path is None:
        saved = results.committed("cpu", "bench")
    return "_No benchmark file yet._" if saved is None else markdown_table(saved)


def committed_gpu_tables() -> str:
    """The README's GPU section: ms per step (``data/results/gpu/bench.json``) and images per second
    of the fast path (``data/results/gpu/throughput.json``), each or a note that there is none."""
    bench, speed = results.committed("gpu", "bench"), results.committed("gpu", "throughput")
    parts = ["_No GPU benchmark file yet._" if bench is None else markdown_table(bench),
             "_No GPU throughput file yet._" if speed is None else throughput_markdown_table(speed)]
    return "\n\n".join(parts)


def committed_flops_table() -> str:
    """:func:`flops_markdown_table` of the committed ``data/results/cpu/flops.json`` (time ratios from
    ``bench.json``), or a note that there is none."""
    saved = results.committed("cpu", "flops")
    return "_No FLOP count yet._" if saved is None else flops_markdown_table(saved, results.committed("cpu", "bench"))
