"""Shared runs are stored once: a result file refers to a run another experiment's file stores
(samlab.results.reference / resolve_shared / store_shared_once), checked on hand-made files."""

from __future__ import annotations

import copy
import json

import pytest

from samlab import results


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
    ref = results.reference("SAM ρ=0.05", stored, {"experiment": "first", "method": "SAM"})
    assert ref == {"method": "SAM ρ=0.05", "seed": 1, "method_config": {"method": "sam", "rho": 0.05},
                   "fit_overrides": {}, "shared_from": {"experiment": "first", "method": "SAM"}}
    _write(folder, "second", [ref, _run("SAM ρ=0.1", 1, 0.1, 0.5)])
    loaded = results.load("second", "cpu", folder.parent)
    assert loaded["runs"][0] == {**stored, "method": "SAM ρ=0.05", "shared_from": {"experiment": "first", "method": "SAM"}}
    assert loaded["runs"][1] == _run("SAM ρ=0.1", 1, 0.1, 0.5)  # a run of its own is untouched
    assert len(json.dumps(ref)) < len(json.dumps(stored))  # the history is not stored twice


@pytest.mark.parametrize("broken, message", [
    ({"shared_from": {"experiment": "absent", "method": "SAM"}}, "does not hold that run"),
    ({"shared_from": {"experiment": "first", "method": "SGD"}, "seed": 1}, "does not hold that run"),
    ({"method_config": {"method": "sam", "rho": 0.1}}, "settings have changed"),
])
def test_a_reference_that_cannot_be_read_is_an_error_naming_it(folder, broken, message):
    stored = json.loads((folder / "first.json").read_text())["runs"][0]
    ref = {**results.reference("SAM", stored, {"experiment": "first", "method": "SAM"}), **broken}
    _write(folder, "second", [ref])
    with pytest.raises(ValueError, match=message) as err:
        results.load("second", "cpu", folder.parent)
    assert "'second' 'SAM' seed" in str(err.value)


def test_full_copies_are_replaced_by_references_only_when_identical(folder):
    stored = json.loads((folder / "first.json").read_text())["runs"]
    copies = [{**r, "method": "twin SAM", "shared_from": {"experiment": "first", "method": "SAM"}} for r in stored[:2]]
    _write(folder, "second", [copies[0], _run("own", 0, 0.2, 0.6), copies[1]])
    before = results.load("second", "cpu", folder.parent)
    assert results.store_shared_once(folder / "second.json") == 2
    raw = json.loads((folder / "second.json").read_text())["runs"]
    assert ["history" in r for r in raw] == [False, True, False]
    assert results.load("second", "cpu", folder.parent) == before  # what readers see is unchanged
    assert results.store_shared_once(folder / "second.json") == 0  # nothing left to replace
    # a "copy" that is not the stored run (another history) is refused, and the file left as it was
    bad = copy.deepcopy(copies[0])
    bad["history"][0]["test_acc"] = 0.99
    _write(folder, "third", [bad])
    text = (folder / "third.json").read_text()
    with pytest.raises(ValueError, match="differs from the run it names as its source"):
        results.store_shared_once(folder / "third.json")
    assert (folder / "third.json").read_text() == text


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
                references += 1
                assert "history" not in stored, (file.stem, stored["method"], stored["seed"])   # stored once
                assert run["shared_from"]["experiment"] != file.stem
    assert references >= 39   # the runs notebooks 03, 05 and 06 share (results.shared_note)
