"""Shared runs are stored once: a result file refers to a run another experiment's file stores
(samlab.sharing.reference / resolve_shared / store_shared_once), checked on hand-made files."""

from __future__ import annotations

import copy
import json

import pytest

from samlab import results, sharing


def _run(label: str, seed: int, rho: float, acc: float) -> dict:
    return {"method": label, "seed": seed, "method_config": {"method": "sam", "rho": rho}, "fit_overrides": {},
            "test_at_val": acc, "history": [{"epoch": 1, "test_acc": acc}], "git_commit": "abc1234"}


def _write(folder, name, runs):
    results.write(folder / f"{name}.json", {"experiment": name, "profile": "cpu", "runs": runs})


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "cpu"
    _write(folder, "first", [_run("SAM", 0, 0.05, 0.41), _run("SAM", 1, 0.05, 0.43), _run("SGD", 0, 0.0, 0.30)])
    return folder


def test_a_reference_reads_the_stored_run_under_its_own_label(folder):
    stored = json.loads((folder / "first.json").read_text())["runs"][1]
    ref = sharing.reference("SAM ρ=0.05", stored, {"experiment": "first", "method": "SAM"})
    assert {k: v for k, v in ref.items() if k != "digest"} == {
        "method": "SAM ρ=0.05", "seed": 1, "method_config": {"method": "sam", "rho": 0.05}, "fit_overrides": {},
        "shared_from": {"experiment": "first", "method": "SAM"}}
    assert sharing.is_reference(ref) and not sharing.is_reference(stored)
    assert sharing.reference("again", ref, ref["shared_from"])["digest"] == ref["digest"]   # a reference to a reference
    _write(folder, "second", [ref, _run("SAM ρ=0.1", 1, 0.1, 0.5)])
    loaded = results.load("second", "cpu", folder.parent)
    assert loaded["runs"][0] == {**stored, "method": "SAM ρ=0.05", "shared_from": {"experiment": "first", "method": "SAM"}}
    assert loaded["runs"][1] == _run("SAM ρ=0.1", 1, 0.1, 0.5)  # a run of its own is untouched
    assert "history" not in json.loads((folder / "second.json").read_text())["runs"][0]  # not stored twice


def _retrain_first(folder, **changes):
    runs = json.loads((folder / "first.json").read_text())["runs"]
    _write(folder, "first", [{**runs[0], **changes}, *runs[1:]])


@pytest.mark.parametrize("broken, message", [
    (lambda folder: (folder / "first.json").unlink(), "that file does not exist"),
    (lambda folder: _write(folder, "first", []), "that file does not hold the run"),
    (lambda folder: _retrain_first(folder, test_at_val=0.42), r"not the one referred to \(it was trained again"),
    (lambda folder: _retrain_first(folder, method_config={"method": "sam", "rho": 0.1}),
     r"not the one referred to \(its method_config changed"),
])
def test_a_reference_that_cannot_be_read_is_an_error_naming_it(folder, broken, message):
    stored = json.loads((folder / "first.json").read_text())["runs"][0]
    _write(folder, "second", [sharing.reference("SAM", stored, {"experiment": "first", "method": "SAM"}),
                              _run("own", 0, 0.2, 0.6)])
    assert results.load("second", "cpu", folder.parent)["runs"][0]["history"] == stored["history"]
    broken(folder)
    with pytest.raises(ValueError, match=message) as err:
        results.load("second", "cpu", folder.parent)
    assert "result 'second', run 'SAM' seed 0, refers to 'SAM' in" in str(err.value) and "first.json" in str(err.value)
    # ... or, for the runner's bookkeeping, left out (the runner then shares or trains it anew)
    kept = sharing.resolve_shared(json.loads((folder / "second.json").read_text()), folder, drop_unreadable=True)
    assert [r["method"] for r in kept["runs"]] == ["own"]


def test_full_copies_are_replaced_by_references_only_when_identical(folder):
    stored = json.loads((folder / "first.json").read_text())["runs"]
    copies = [{**r, "method": "twin SAM", "shared_from": {"experiment": "first", "method": "SAM"}} for r in stored[:2]]
    _write(folder, "second", [copies[0], _run("own", 0, 0.2, 0.6), copies[1]])
    before = results.load("second", "cpu", folder.parent)
    assert sharing.store_shared_once(folder / "second.json") == 2
    raw = json.loads((folder / "second.json").read_text())["runs"]
    assert ["history" in r for r in raw] == [False, True, False]
    assert results.load("second", "cpu", folder.parent) == before  # what readers see is unchanged
    assert sharing.store_shared_once(folder / "second.json") == 0  # nothing left to replace
    # a copy that is not the run its source now stores (another history: kept when the source was trained again)
    # stays a copy, and the file is left as it was
    bad = copy.deepcopy(copies[0])
    bad["history"][0]["test_acc"] = 0.99
    _write(folder, "third", [bad, copies[1]])
    assert sharing.store_shared_once(folder / "third.json") == 1
    raw = json.loads((folder / "third.json").read_text())["runs"]
    assert raw[0] == bad and sharing.is_reference(raw[1])


def test_runs_about_to_be_dropped_are_copied_into_the_files_that_refer_to_them(folder):
    stored = json.loads((folder / "first.json").read_text())["runs"]
    _write(folder, "second", [sharing.reference("s", stored[0], {"experiment": "first", "method": "SAM"}),
                              sharing.reference("s", stored[1], {"experiment": "first", "method": "SAM"}),
                              _run("own", 0, 0.2, 0.6)])
    _write(folder, "third", [sharing.reference("g", stored[2], {"experiment": "first", "method": "SGD"})])
    before = {name: results.load(name, "cpu", folder.parent) for name in ("second", "third")}
    assert sharing.keep_referenced(folder / "first.json", keep={("SAM", 0), ("SAM", 1), ("SGD", 0)}) == []
    # first is about to train SAM seed 1 again: second gets its own copy of it, nothing else changes
    assert sharing.keep_referenced(folder / "first.json", keep={("SAM", 0), ("SGD", 0)}) == ["second"]
    raw = json.loads((folder / "second.json").read_text())["runs"]
    assert [sharing.is_reference(r) for r in raw] == [True, False, False]
    assert raw[1] == {**stored[1], "method": "s", "shared_from": {"experiment": "first", "method": "SAM"}}
    _retrain_first(folder)   # (seed 0 unchanged)
    runs = json.loads((folder / "first.json").read_text())["runs"]
    _write(folder, "first", [runs[0], {**runs[1], "test_at_val": 0.9}, runs[2]])   # SAM seed 1 trained again
    assert {name: results.load(name, "cpu", folder.parent) for name in ("second", "third")} == before
    note = results.shared_note({**before["second"], "experiment": "second", "profile": "cpu"}, root=folder.parent)
    assert note.splitlines() == ["s seeds 0: the runs of first's 'SAM' (same settings, trained once and stored there)",
                                 "s seeds 1: the runs of first's 'SAM' (same settings, trained once; a copy is kept here)"]
    note = results.shared_note(results.load("first", "cpu", folder.parent), root=folder.parent)
    assert note.splitlines() == ["SAM seeds 0: also the runs of second's 's' (stored here, read there)",
                                 "SGD seeds 0: also the runs of third's 'g' (stored here, read there)"]   # not the new seed 1


def test_every_committed_reference_resolves_to_a_run_with_its_settings():
    """The committed cpu files: each reference names a stored run of the same seed and settings (else loading
    raises), a stored run is never itself a reference, and no history is stored twice."""
    folder = results.path("x", "cpu").parent
    files = [p for p in sorted(folder.glob("*.json")) if "runs" in json.loads(p.read_text())]
    assert files, folder
    references = 0
    for file in files:
        raw = json.loads(file.read_text())["runs"]
        loaded = results.load(file.stem, "cpu")["runs"]
        assert [(r["method"], r["seed"]) for r in loaded] == [(r["method"], r["seed"]) for r in raw]
        for stored, run in zip(raw, loaded):
            assert "history" in run
            if "shared_from" in stored:
                assert run["shared_from"]["experiment"] != file.stem
                if sharing.is_reference(stored):
                    references += 1
                else:   # a copy only where its source no longer stores that very run (trained again since)
                    as_reference = sharing.reference(stored["method"], stored, stored["shared_from"])
                    kept = sharing.resolve_shared({"runs": [as_reference]}, folder, drop_unreadable=True)["runs"]
                    assert kept == [], (file.stem, stored["method"], stored["seed"])   # else it is stored twice
    assert references >= 39   # the runs notebooks 03, 05 and 06 share (results.shared_note)
