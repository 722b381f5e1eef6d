"""Runs that two experiments share, stored once.

Two experiments train identical runs where :func:`samlab.experiments.shared_runs` pairs their labels (same
data, noise, model, training and method settings, and seed). :mod:`samlab.runner` trains such a run once,
for the first experiment, and stores it in that experiment's result file. The other file holds a
*reference* (:func:`reference`): its own label, the seed and settings, ``shared_from`` (the experiment and
label the run is stored under) and the stored run's fingerprint, so that the reference cannot resolve to a
run trained again later. Every reader resolves references (:func:`resolve_shared`; :func:`samlab.results.load`
does). Before an experiment trains again runs that another file refers to (its settings changed), the
runner copies them into that file (:func:`keep_referenced`): no notebook loses the runs it shows. (So a
result file is not to be deleted or moved aside to train an experiment afresh while others refer to it.)
:func:`shared_note` prints, for a notebook, which runs of a result are another experiment's too: the same
runs are not independent evidence in two notebooks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from samlab.resultfiles import finite, locked, path, write

__all__ = ["is_reference", "keep_referenced", "readable", "reference", "resolve_shared", "shared_note", "store_shared_once"]


def _digest(run: dict[str, Any]) -> str:
    """A fingerprint of a stored run (everything but its label and ``shared_from``): a reference records
    it, so that it cannot resolve to a run trained again after it was written."""
    body = {k: v for k, v in run.items() if k not in ("method", "shared_from")}
    return hashlib.sha256(json.dumps(finite(body), sort_keys=True).encode()).hexdigest()[:16]


def is_reference(run: dict[str, Any]) -> bool:
    """Whether ``run``, as a result file holds it, is a reference to a run stored in another file."""
    return "shared_from" in run and "history" not in run


def reference(label: str, run: dict[str, Any], source: dict[str, str]) -> dict[str, Any]:
    """What a result file stores for a run trained by another experiment: this experiment's ``label``,
    the run's seed and settings, ``shared_from`` = ``source`` (``{"experiment", "method"}``: the file and
    label the full run is stored under) and the stored run's fingerprint. ``run`` is the stored run, or
    another reference to it."""
    digest = run["digest"] if is_reference(run) else _digest(run)
    keys = ("seed", "method_config", "fit_overrides")
    return {"method": label, **{k: run[k] for k in keys}, "shared_from": dict(source), "digest": digest}


def _resolve(run: dict[str, Any], folder: Path, cache: dict[str, list[dict[str, Any]]], name: Any) -> dict[str, Any]:
    src = run["shared_from"]
    file = Path(folder) / f"{src['experiment']}.json"
    if src["experiment"] not in cache:
        cache[src["experiment"]] = json.loads(file.read_text()).get("runs", []) if file.exists() else []
    where = f"result {name!r}, run {run['method']!r} seed {run['seed']}, refers to {src['method']!r} in {file}"
    retrain = f"train {name!r} again: the runner then shares or retrains it"
    if not file.exists():
        raise ValueError(f"{where}: that file does not exist. If it was moved or renamed, put it back; otherwise {retrain}")
    found = [r for r in cache[src["experiment"]] if (r["method"], r["seed"]) == (src["method"], run["seed"])]
    if not found or is_reference(found[0]):
        raise ValueError(f"{where}: that file does not hold the run. To read it, {retrain}")
    if _digest(found[0]) != run.get("digest"):
        changed = [k for k in ("method_config", "fit_overrides") if found[0][k] != run[k]]
        why = f"its {', '.join(changed)} changed" if changed else "it was trained again"
        raise ValueError(f"{where}: the run stored there is not the one referred to ({why} since it was shared). To read it, {retrain}")
    return {**found[0], "method": run["method"], "shared_from": dict(src)}


def readable(run: dict[str, Any], folder: Path) -> bool:
    """Whether the reference ``run`` can be read from ``folder`` now (:func:`resolve_shared` would not raise)."""
    try:
        _resolve(run, folder, {}, None)
    except ValueError:
        return False
    return True


def resolve_shared(result: dict[str, Any], folder: Path, *, drop_unreadable: bool = False) -> dict[str, Any]:
    """``result`` with every reference (:func:`reference`) replaced by the run it names, read from
    ``<folder>/<experiment>.json`` and relabelled with this result's label (``shared_from`` kept).
    A reference that cannot be read (the file or the run is missing, or the run stored there is not the
    one referred to: it was trained again) is an error naming both, or, with ``drop_unreadable``, left out."""
    if "runs" not in result:
        return result
    cache: dict[str, list[dict[str, Any]]] = {}
    runs = []
    for run in result["runs"]:
        try:
            runs.append(_resolve(run, folder, cache, result.get("experiment")) if is_reference(run) else run)
        except ValueError:
            if not drop_unreadable:
                raise
    return {**result, "runs": runs}


def store_shared_once(file: Path) -> int:
    """Replace, in ``file``, each full copy of a shared run (written before runs were stored once) by its
    :func:`reference`, where the source file still holds that very run (the same fingerprint); a copy
    whose source no longer does (kept there by :func:`keep_referenced`) stays. Under the file's lock.
    Returns how many copies were replaced."""
    file = Path(file)
    with locked(file):
        raw = json.loads(file.read_text())
        refs = {(r["method"], r["seed"]): reference(r["method"], r, r["shared_from"])
                for r in raw["runs"] if "shared_from" in r and not is_reference(r)}
        readable = resolve_shared({**raw, "runs": list(refs.values())}, file.parent, drop_unreadable=True)["runs"]
        refs = {key: refs[key] for key in ((r["method"], r["seed"]) for r in readable)}
        if refs:
            write(file, {**raw, "runs": [refs.get((r["method"], r["seed"]), r) for r in raw["runs"]]})
        return len(refs)


def keep_referenced(file: Path, keep: Collection[tuple[str, int]]) -> list[str]:
    """Before the runs stored in ``file`` other than ``keep`` (``(label, seed)`` keys) are dropped (trained
    again with other settings), copy each one that another result file of its folder refers to into that
    file, in place of the reference (the full run, ``shared_from`` kept as its provenance): no file loses a
    run it shows. Each referring file is rewritten under its own lock. Returns their names."""
    file = Path(file)
    if not file.exists():
        return []
    stored = json.loads(file.read_text()).get("runs", [])
    dropped = {(r["method"], r["seed"]): (r, _digest(r)) for r in stored if not is_reference(r) and (r["method"], r["seed"]) not in keep}
    changed = []
    for other in sorted(file.parent.glob("*.json")) if dropped else []:
        if other == file:
            continue
        with locked(other):
            raw = json.loads(other.read_text())
            runs, copied = [], 0
            for r in raw.get("runs", []):
                original, digest = dropped.get((r["shared_from"]["method"], r["seed"]), (None, None)) if (
                    is_reference(r) and r["shared_from"]["experiment"] == file.stem) else (None, None)
                if original is not None and digest == r.get("digest"):
                    r, copied = {**original, "method": r["method"], "shared_from": r["shared_from"]}, copied + 1
                runs.append(r)
            if copied:
                write(other, {**raw, "runs": runs})
                changed.append(other.stem)
    return changed


def shared_note(result: dict[str, Any], root: Path | None = None) -> str:
    """Which runs of ``result`` are also another experiment's, both ways: runs trained for another
    experiment (``shared_from``), and runs of this one that another result file of the same profile
    (under ``root``, default ``data/results``) shows: the very same run, by its fingerprint. Each line
    says where the run is stored (once, read through a reference; or a copy, where the experiment that
    trained it was trained again with other settings, :func:`keep_referenced`). One line per (label,
    other experiment); the same runs are then not independent evidence in two notebooks.
    ``"every run was trained for this experiment, and no other uses its runs"`` when none is."""
    name, profile = result.get("experiment"), result.get("profile")
    files = sorted(path(name, profile, root).parent.glob("*.json")) if name and profile else []
    raw = {f.stem: json.loads(f.read_text()).get("runs", []) for f in files}
    here_refs = {(r["method"], r["seed"]) for r in raw.get(name, []) if is_reference(r)}
    # the full run is in this file (a result run without saving, under smoke, has none: its shared runs are read there)
    kept_here = lambda r: name in raw and (r["method"], r["seed"]) not in here_refs  # noqa: E731
    mine = {_digest(r): r for r in result["runs"] if "shared_from" not in r or kept_here(r)}
    trained_there: dict[tuple[str, str], list[int]] = {}   # (label here, what it is) -> seeds
    used_there: dict[tuple[str, str], list[int]] = {}
    for r in result["runs"]:
        if src := r.get("shared_from"):
            where = "; a copy is kept here" if kept_here(r) else " and stored there"
            text = f"the runs of {src['experiment']}'s {src['method']!r} (same settings, trained once{where})"
            trained_there.setdefault((r["method"], text), []).append(r["seed"])
    for other, runs in raw.items():
        for r in runs if other != name else []:
            digest = r.get("digest") if is_reference(r) else _digest(r)
            if (src := r.get("shared_from")) and src["experiment"] == name and digest in mine:
                where = "stored here, read there" if is_reference(r) else "a copy is kept there"
                used_there.setdefault((mine[digest]["method"], f"also the runs of {other}'s {r['method']!r} ({where})"), []).append(r["seed"])
    lines = [f"{label} seeds {', '.join(map(str, sorted(seeds)))}: {text}"
             for (label, text), seeds in [*trained_there.items(), *sorted(used_there.items())]]
    return "\n".join(lines) or "every run was trained for this experiment, and no other uses its runs"
