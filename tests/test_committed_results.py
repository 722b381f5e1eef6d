"""The committed ``cpu`` result files hold what the evidence protocol asks of them: every method of the
experiment's definition on every one of its seeds (five or more), each seed with its own noise draw, the
noisy-validation accuracy at every epoch, and per run the validation-chosen epoch, the test accuracy there,
the test-set maximum under a name that says oracle (and under no other) and the last-5 mean, each agreeing
with the run's own history. Read as the notebooks read them (shared runs resolved)."""

from __future__ import annotations

import json

import pytest

from samlab import experiments, results, train

FOLDER = results.path("x", "cpu").parent
COMMITTED = [p.stem for p in sorted(FOLDER.glob("*.json")) if "runs" in json.loads(p.read_text())]


def test_the_committed_files_are_found():
    assert {"memorisation", "logit-jacobian-30", "tuning-rho-30", "asymmetric-40"} <= set(COMMITTED)


@pytest.mark.parametrize("name", COMMITTED)
def test_every_method_has_every_seed_with_its_own_noise_draw(name):
    result, exp = results.load(name, "cpu"), experiments.get(name, "cpu")
    seeds: dict[str, list[int]] = {}
    for run in result["runs"]:
        seeds.setdefault(run["method"], []).append(run["seed"])
    assert set(seeds) == set(exp.methods), name
    assert len(exp.seeds) >= 5
    for label, got in seeds.items():
        assert sorted(got) == sorted(exp.seeds), (name, label)
    for run in result["runs"]:
        assert run["noise_seed"] == exp.noise_seed_of(run["seed"]), (name, run["method"], run["seed"])
    assert len({run["noise_seed"] for run in result["runs"]}) == len(exp.seeds), name   # one draw per seed


@pytest.mark.parametrize("name", COMMITTED)
def test_every_run_reports_the_validation_chosen_the_last5_and_the_oracle_accuracy(name):
    for run in results.load(name, "cpu")["runs"]:
        where = (name, run["method"], run["seed"])
        assert all(record.get("val_acc") is not None for record in run["history"]), where
        history = train.History(records=run["history"])
        assert run["val_epoch"] == history.val_epoch, where
        assert run["test_at_val"] == history.at_epoch(run["val_epoch"])["test_acc"], where
        assert run["oracle_test_acc"] == max(record["test_acc"] for record in run["history"]), where
        assert run["last5_test_acc"] == pytest.approx(history.last_mean("test_acc")), where
        assert "best_test_acc" not in run and "best_epoch" not in run, where   # the maximum only as the oracle
