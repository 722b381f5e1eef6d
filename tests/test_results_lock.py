"""samlab.results under concurrency: processes merging into one result file at once lose nothing, and a
reader never sees a partial file (the lock of results.locked, the atomic write of results.write)."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

from samlab import results

WRITERS, RUNS_EACH = 6, 8


def _merge_runs(file: str, writer: int, start) -> None:
    """What the runner does for each finished run: under the lock, read the file, add a run, rewrite it."""
    start.wait()
    for k in range(RUNS_EACH):
        with results.locked(Path(file)):
            path = Path(file)
            current = json.loads(path.read_text()) if path.exists() else {"runs": []}
            current["runs"].append({"method": f"m{writer}", "seed": k, "history": [{"epoch": e} for e in range(300)]})
            results.write(path, current)


def _read_all_the_time(file: str, stop, report) -> None:
    """Parse the file as fast as possible until told to stop; report (reads, parse failures)."""
    path, reads, broken = Path(file), 0, 0
    while not stop.is_set():
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        reads += 1
        try:
            json.loads(text)
        except json.JSONDecodeError:
            broken += 1
    report.put((reads, broken))


def test_concurrent_merges_lose_nothing_and_readers_never_see_a_partial_file(tmp_path):
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    file = str(tmp_path / "smoke" / "x.json")
    start, stop, report = ctx.Event(), ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_read_all_the_time, args=(file, stop, report))
    writers = [ctx.Process(target=_merge_runs, args=(file, w, start)) for w in range(WRITERS)]
    reader.start()
    for p in writers:
        p.start()
    start.set()  # all writers at once
    deadline = time.monotonic() + 120
    for p in writers:
        p.join(timeout=max(1.0, deadline - time.monotonic()))
        assert p.exitcode == 0, f"writer exited with {p.exitcode}"
    stop.set()
    reads, broken = report.get(timeout=30)
    reader.join(timeout=30)

    runs = json.loads(Path(file).read_text())["runs"]
    assert sorted((r["method"], r["seed"]) for r in runs) == sorted(
        (f"m{w}", k) for w in range(WRITERS) for k in range(RUNS_EACH))  # no merge lost, none doubled
    assert broken == 0 and reads > 0, (reads, broken)
    assert sorted(p.name for p in Path(file).parent.iterdir()) == ["x.json", "x.json.lock"]  # no temporary left
