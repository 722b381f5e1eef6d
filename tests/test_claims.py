"""Claim checks on hand-made result dicts."""

from __future__ import annotations

import pytest

from samlab.claims import last5_mean


def test_last5_mean_by_hand_and_a_missing_method_is_named():
    # epoch 0 (the initial model) is not a trained epoch; the last five trained are 2..6: mean 0.4
    run = {"method": "SGD", "seed": 0,
           "history": [{"epoch": e, "noisy_fit": v} for e, v in enumerate([0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])]}
    twin = {**run, "seed": 1, "history": [{**h, "noisy_fit": h["noisy_fit"] + 0.2} for h in run["history"]]}
    assert last5_mean({"experiment": "x", "runs": [run]}, "SGD", "noisy_fit") == pytest.approx(0.4)
    assert last5_mean({"experiment": "x", "runs": [run, twin]}, "SGD", "noisy_fit") == pytest.approx(0.5)  # over seeds
    with pytest.raises(ValueError, match="J-SAM"):
        last5_mean({"experiment": "x", "runs": [run]}, "J-SAM", "noisy_fit")


def test_n_test_is_read_from_the_dataset_description():
    from samlab.claims import n_test

    assert n_test({"dataset": "cifar10-mini: 5000 train / 1000 test, 10 classes"}) == 1000
    with pytest.raises(ValueError, match="test-set size"):
        n_test({"experiment": "x", "dataset": "mystery"})


def _cost_run(method: str, at_val: float, last5: float, spe: float, oracle: float | None = None) -> dict:
    return {"method": method, "seed": 0, "test_at_val": at_val, "last5_test_acc": last5,
            "oracle_test_acc": at_val if oracle is None else oracle, "seconds_per_epoch": spe, "history": []}


def test_recovery_fractions_by_hand():
    from samlab.claims import recovery

    result = {"runs": [_cost_run("SGD", 0.50, 0.40, 10.0, oracle=0.56), _cost_run("SAM", 0.60, 0.55, 20.0),
                       _cost_run("reg", 0.55, 0.52, 11.0), _cost_run("slow", 0.62, 0.40, 12.0)]}
    rows = {r["method"]: r for r in recovery(result)}
    assert rows["reg"]["recovered_at_val"] == pytest.approx(0.5)    # (0.55 − 0.50) / (0.60 − 0.50)
    assert rows["reg"]["recovered_last5"] == pytest.approx(0.8)     # (0.52 − 0.40) / (0.55 − 0.40)
    assert rows["reg"]["cost"] == pytest.approx(1.1) and rows["reg"]["cheap"]
    assert rows["slow"]["cost"] == pytest.approx(1.2) and not rows["slow"]["cheap"]
    assert rows["SAM"]["recovered_at_val"] == pytest.approx(1.0) and rows["SGD"]["recovered_last5"] == 0
    assert rows["SGD"]["oracle"] == 0.56 and rows["SGD"]["at_val"] == 0.50  # the oracle is its own column
    # no gain of the target -> no fraction
    result["runs"][1] = _cost_run("SAM", 0.45, 0.35, 20.0)
    assert all(r["recovered_at_val"] is None and r["recovered_last5"] is None for r in recovery(result))
    with pytest.raises(ValueError, match="cost_limit"):
        recovery(result, cost_limit=0)
    with pytest.raises(ValueError, match="'SAM'"):
        recovery({"runs": [_cost_run("SGD", 0.5, 0.4, 1.0)]})
    # a file without the validation split cannot be read as if it had one
    with pytest.raises(ValueError, match="validation split"):
        recovery({"experiment": "old", "runs": [{"method": m, "seed": 0, "oracle_test_acc": 0.5, "seconds_per_epoch": 1.0}
                                                for m in ("SGD", "SAM")]})


def test_memorisation_epoch_by_hand():
    from samlab.claims import memorisation_epoch

    run = {"history": [{"epoch": e, "noisy_fit": f} for e, f in enumerate([0.1, 0.2, 0.49, 0.5, 0.9])]}
    assert memorisation_epoch(run) == 3
    assert memorisation_epoch(run, 0.95) is None
    assert memorisation_epoch(run, 0.15) == 1
    with pytest.raises(ValueError, match="level"):
        memorisation_epoch(run, 0)


def test_last5_mean_averages_runs_of_last_five_epoch_means():
    from samlab.claims import last5_mean

    def run(seed, values):
        return {"method": "SGD", "seed": seed, "history": [{"epoch": e, "noisy_fit": v} for e, v in enumerate(values)]}

    # epoch 0 is the initial model and never counts; seed 0: epochs 2-6 -> 0.4; seed 1: epochs 1-3 (all it has) -> 0.2
    result = {"runs": [run(0, [9.0, 9.0, 0.2, 0.3, 0.4, 0.5, 0.6]), run(1, [9.0, 0.1, 0.2, 0.3])]}
    assert last5_mean(result, "SGD", "noisy_fit") == pytest.approx((0.4 + 0.2) / 2)
