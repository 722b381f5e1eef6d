"""Paired-seed comparisons (notebook 06) on hand-made result dicts, checked against scipy's paired t statistic."""

from __future__ import annotations

import math

import pytest

from samlab.claims import paired_claims, paired_differences, report


def _run(method: str, seed: int, best: float, final: float | None = None, noisy: float = 0.5) -> dict:
    final = best if final is None else final
    return {"method": method, "seed": seed, "best_test_acc": best, "final_test_acc": final,
            "history": [{"noisy_fit": noisy}]}


RESULT = {"experiment": "x", "runs": [
    _run("SGD", 0, 0.40, noisy=0.30), _run("SGD", 1, 0.42, noisy=0.32), _run("SGD", 2, 0.38, noisy=0.28),
    _run("SAM", 0, 0.45, noisy=0.10), _run("SAM", 1, 0.46, noisy=0.12), _run("SAM", 2, 0.44, noisy=0.11),
    # B: one point above SAM on every seed, with a little spread (clearly above)
    _run("B", 0, 0.46, noisy=0.20), _run("B", 1, 0.475, noisy=0.05), _run("B", 2, 0.448, noisy=0.11),
    # C: above on average, but the per-seed differences swing: not beyond the noise
    _run("C", 0, 0.50, noisy=0.09), _run("C", 1, 0.42, noisy=0.11), _run("C", 2, 0.46, noisy=0.10),
    # D: only seed 0 has been run
    _run("D", 0, 0.60),
]}


def test_differences_are_per_seed_over_shared_seeds():
    assert paired_differences(RESULT, "B", "SAM") == pytest.approx([0.01, 0.015, 0.008])
    assert paired_differences(RESULT, "D", "SAM") == pytest.approx([0.15])
    assert paired_differences(RESULT, "SAM", "SGD", "final_noisy_fit") == pytest.approx([-0.20, -0.20, -0.17])


def test_claims_match_a_paired_t_statistic():
    scipy_stats = pytest.importorskip("scipy.stats")
    claims = {c["claim"].split("'")[0]: c for c in paired_claims(RESULT, "SAM")}
    assert set(claims) == {"SGD", "B", "C", "D"}
    for label in ("B", "C", "SGD"):
        d = paired_differences(RESULT, label, "SAM")
        t = scipy_stats.ttest_rel([r["best_test_acc"] for r in RESULT["runs"] if r["method"] == label],
                                  [r["best_test_acc"] for r in RESULT["runs"] if r["method"] == "SAM"]).statistic
        # mean / se is the paired t statistic
        assert claims[label]["mean_difference"] / claims[label]["stderr"] == pytest.approx(t)
        assert claims[label]["holds"] == (t > 2)
        assert claims[label]["mean_difference"] == pytest.approx(sum(d) / 3)
    assert claims["B"]["holds"] and not claims["C"]["holds"] and not claims["SGD"]["holds"]
    # one seed: no standard error, so never "beyond the noise", however large the gap
    assert not claims["D"]["holds"] and math.isinf(claims["D"]["stderr"]) and "1 seed" in claims["D"]["evidence"]


def test_noisy_fit_improvement_is_a_decrease():
    claims = {c["claim"].split("'")[0]: c for c in paired_claims(RESULT, "SGD", key="final_noisy_fit")}
    assert claims["SAM"]["holds"]                # 0.20, 0.20, 0.17 lower than SGD: far beyond the noise
    assert claims["SAM"]["mean_difference"] == pytest.approx(-0.19)
    assert "below" in claims["SAM"]["claim"]
    assert claims["B"]["holds"]                  # -0.10, -0.27, -0.17: mean 0.18 lower, s.e. 0.049 (t = 3.6)
    assert not claims["D"]["holds"]              # one seed

def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="key must be one of"):
        paired_differences(RESULT, "B", "SAM", key="accuracy")
    with pytest.raises(ValueError, match="z must be > 0"):
        paired_claims(RESULT, z=0)
    with pytest.raises(ValueError, match="'E'"):
        paired_differences(RESULT, "E", "SAM")


def test_report_prints_one_marked_line_per_claim_with_its_evidence():
    claims = paired_claims(RESULT, "SAM", "best_test_acc")  # SGD, B, C, D: in the order of the runs
    assert [c["method"] for c in claims] == ["SGD", "B", "C", "D"]
    lines = report(claims).splitlines()
    assert len(lines) == len(claims) == 4
    assert lines[1].startswith("✓ holds   B's best test accuracy is above SAM's (paired over seeds)  [")
    assert lines[2].startswith("✗ no      C's best test accuracy is above SAM's")
    assert lines[3].endswith("(1 seed: no standard error)]")
    assert report([]) == ""


def _confusion_run(method: str, seed: int, src_right: int) -> dict:
    # 3 classes, 10 test images each; class 0 is the only one that loses training labels (to class 1)
    return {"method": method, "seed": seed, "best_test_acc": 0.5, "final_test_acc": 0.5, "history": [{"noisy_fit": 0.1}],
            "test_confusion": [[src_right, 10 - src_right, 0], [1, 9, 0], [0, 0, 10]]}


def test_source_class_accuracy_is_paired_per_seed_from_each_runs_test_confusion():
    result = {"experiment": "asym", "noise_confusion": [[60, 40, 0], [0, 100, 0], [0, 0, 100]], "runs": [
        _confusion_run("SGD", 0, 6), _confusion_run("SGD", 1, 5), _confusion_run("SGD", 2, 7),
        _confusion_run("SAM", 0, 4), _confusion_run("SAM", 1, 4), _confusion_run("SAM", 2, 5),
    ]}
    # by hand: SAM − SGD on class 0 = (4−6, 4−5, 5−7) / 10
    assert paired_differences(result, "SAM", "SGD", "final_source_acc") == pytest.approx([-0.2, -0.1, -0.2])
    [sgd_vs_sam] = paired_claims(result, "SAM", "final_source_acc")
    assert sgd_vs_sam["method"] == "SGD" and sgd_vs_sam["holds"]  # +0.167 ± 0.033: beyond 2 s.e.
    assert sgd_vs_sam["claim"] == "SGD's final accuracy on the classes that lose labels is above SAM's (paired over seeds)"
    no_sources = {**result, "noise_confusion": [[100, 0, 0], [0, 100, 0], [0, 0, 100]]}
    with pytest.raises(ValueError, match="no test images of a class that loses labels"):
        paired_differences(no_sources, "SAM", "SGD", "final_source_acc")
