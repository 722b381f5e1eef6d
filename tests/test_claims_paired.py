"""Paired-seed comparisons (the families of notebooks 03, 05-07) on hand-made result dicts, checked against scipy (paired t) and Holm written out."""

from __future__ import annotations

import math

import pytest

import numpy as np

from samlab import claims
from samlab.claims import paired_differences, paired_family, report, table


def _against(result, baseline, key, alpha=0.05):
    """Every other method of ``result`` against ``baseline`` on ``key``: one family (in the order of the runs)."""
    labels = list(dict.fromkeys(r["method"] for r in result["runs"] if r["method"] != baseline))
    return list(paired_family([(result, label, baseline, key) for label in labels], alpha).values())


def _run(method: str, seed: int, best: float, final: float | None = None, noisy: float = 0.5) -> dict:
    final = best if final is None else final
    return {"method": method, "seed": seed, "oracle_test_acc": best, "final_test_acc": final,
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
    assert paired_differences(RESULT, "B", "SAM", "oracle_test_acc") == pytest.approx([0.01, 0.015, 0.008])
    assert paired_differences(RESULT, "D", "SAM", "oracle_test_acc") == pytest.approx([0.15])
    assert paired_differences(RESULT, "SAM", "SGD", "final_noisy_fit") == pytest.approx([-0.20, -0.20, -0.17])


def _scipy_holm(pvalues):
    """Holm's step-down correction written out independently (numpy), NaN as 1."""
    p = np.nan_to_num(np.asarray(pvalues, dtype=float), nan=1.0)
    order = np.argsort(p, kind="stable")
    adj = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(adj, 1.0)
    return out


def test_claims_are_paired_t_tests_with_holm_over_the_family():
    scipy_stats = pytest.importorskip("scipy.stats")
    claims = {c["method"]: c for c in _against(RESULT, "SAM", "oracle_test_acc")}
    assert list(claims) == ["SGD", "B", "C", "D"]
    value = lambda m: [r["oracle_test_acc"] for r in RESULT["runs"] if r["method"] == m]  # noqa: E731
    ref = {m: scipy_stats.ttest_rel(value(m), value("SAM")) for m in ("SGD", "B", "C")}
    holm = dict(zip(["SGD", "B", "C", "D"], _scipy_holm([ref["SGD"].pvalue, ref["B"].pvalue, ref["C"].pvalue, math.nan])))
    for m in ("SGD", "B", "C"):
        c = claims[m]
        assert c["t"] == pytest.approx(ref[m].statistic) and c["df"] == 2 and c["p"] == pytest.approx(ref[m].pvalue)
        assert c["mean_difference"] / c["stderr"] == pytest.approx(ref[m].statistic)
        assert c["ci"] == pytest.approx(tuple(ref[m].confidence_interval(0.95)))
        assert c["p_holm"] == pytest.approx(holm[m])
        assert c["holds"] == (holm[m] < 0.05 and c["mean_difference"] > 0)
        assert c["key"] == (m, "oracle_test_acc") and c["family_size"] == 4
    # B is one point above SAM on each of three seeds: p = 0.034 alone, but Holm over four claims
    # (and t with 2 degrees of freedom, not z = 2) leaves it not established
    assert ref["B"].pvalue < 0.05 and not claims["B"]["holds"] and claims["B"]["verdict"] == "not established"
    # SGD is below SAM: a small p, the wrong sign for "above"
    assert claims["SGD"]["mean_difference"] < 0 and not claims["SGD"]["holds"]
    # one seed: no standard error, so never "beyond the noise", however large the gap
    assert not claims["D"]["holds"] and math.isinf(claims["D"]["stderr"]) and "n=1: no paired test" in claims["D"]["evidence"]


def test_noisy_fit_improvement_is_a_decrease():
    claims = {c["method"]: c for c in _against(RESULT, "SGD", key="final_noisy_fit")}
    assert claims["SAM"]["mean_difference"] == pytest.approx(-0.19)  # 0.20, 0.20, 0.17 lower than SGD
    assert claims["SAM"]["direction"] == "less" and "below" in claims["SAM"]["claim"]
    # t = -19 with 2 df: p = 0.0028; Holm over four claims (C: p = 0.0025, B: 0.068, D: none) gives 0.010
    assert claims["SAM"]["holds"] and claims["C"]["holds"]
    assert not claims["B"]["holds"]              # -0.10, -0.27, -0.17: t = -3.6, p = 0.068 before correction
    assert not claims["D"]["holds"]              # one seed


def test_a_family_across_results_and_keys_is_corrected_together():
    fam = paired_family([(RESULT, "B", "SAM", "oracle_test_acc"), (RESULT, "SAM", "SGD", "final_noisy_fit"),
                         (RESULT, "SAM", "SGD", "oracle_test_acc", "less")])
    assert list(fam) == [("x", "B", "SAM", "oracle_test_acc", "greater"), ("x", "SAM", "SGD", "final_noisy_fit", "less"),
                         ("x", "SAM", "SGD", "oracle_test_acc", "less")]
    alone = {c["method"]: c for c in _against(RESULT, "SAM", "oracle_test_acc")}
    assert fam["x", "B", "SAM", "oracle_test_acc", "greater"]["p"] == pytest.approx(alone["B"]["p"])
    assert all(c["family_size"] == 3 for c in fam.values())
    # SAM is above SGD in best accuracy on every seed: the claim that it is *below* is not established
    wrong = fam["x", "SAM", "SGD", "oracle_test_acc", "less"]
    assert wrong["mean_difference"] > 0 and not wrong["holds"]
    with pytest.raises(ValueError, match="direction must be one of"):
        paired_family([(RESULT, "B", "SAM", "oracle_test_acc", "up")])
    with pytest.raises(ValueError, match="appears twice"):
        paired_family([(RESULT, "B", "SAM", "oracle_test_acc")] * 2)


def test_validation_quantities_and_files_without_them():
    runs = [dict(r, test_at_val=r["oracle_test_acc"] - 0.01, last5_test_acc=r["final_test_acc"]) for r in RESULT["runs"]]
    new = {**RESULT, "runs": runs}
    assert paired_differences(new, "B", "SAM", "test_at_val") == pytest.approx([0.01, 0.015, 0.008])
    assert paired_differences(new, "B", "SAM", "last5_test_acc") == pytest.approx([0.01, 0.015, 0.008])
    assert paired_differences(RESULT, "B", "SAM", "oracle_test_acc") == pytest.approx([0.01, 0.015, 0.008])
    with pytest.raises(ValueError, match="predates the validation split"):
        paired_differences(RESULT, "B", "SAM", "test_at_val")
    # the default is the reported accuracy, never the oracle
    assert paired_differences(new, "B", "SAM") == paired_differences(new, "B", "SAM", "test_at_val")
    with pytest.raises(ValueError, match="predates the validation split"):
        paired_differences(RESULT, "B", "SAM")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="key must be one of"):
        paired_differences(RESULT, "B", "SAM", key="accuracy")
    with pytest.raises(ValueError, match="alpha must be in"):
        paired_family([(RESULT, "B", "SAM", "oracle_test_acc")], alpha=0)
    with pytest.raises(ValueError, match="'E'"):
        paired_differences(RESULT, "E", "SAM", "oracle_test_acc")


def test_report_prints_one_marked_line_per_claim_with_its_evidence():
    claims = _against(RESULT, "SGD", "final_noisy_fit")  # SAM, B, C, D: in the order of the runs
    assert [c["method"] for c in claims] == ["SAM", "B", "C", "D"]
    lines = report(claims).splitlines()
    assert len(lines) == len(claims) == 4
    assert lines[0].startswith("✓ holds             SAM's final noisy fit is below SGD's (paired over seeds)  [")
    assert "paired t test, n=3" in lines[0] and "df=2" in lines[0] and "Holm p=" in lines[0] and "95% CI" in lines[0]
    assert lines[1].startswith("✗ not established   B's final noisy fit is below SGD's")
    assert lines[3].endswith("-> not established]")
    assert report([]) == ""


def _phase_run(seed, test_at_val, last5_test, last5_noisy, noisy_at_val, true_at_val, label="SGD"):
    history = [{"epoch": e, "noisy_fit": 0.9, "noisy_true": 0.0} for e in range(6)]
    history[2] = {"epoch": 2, "noisy_fit": noisy_at_val, "noisy_true": true_at_val}
    return {"method": label, "seed": seed, "val_epoch": 2, "test_at_val": test_at_val, "last5_test_acc": last5_test,
            "last5_noisy_fit": last5_noisy, "history": history}


def test_phase_claims_against_scipy_and_holm_by_hand():
    from scipy import stats as st

    rows = [(0, 0.50, 0.45, 0.30, 0.10, 0.40), (1, 0.52, 0.44, 0.35, 0.12, 0.38), (2, 0.49, 0.47, 0.28, 0.11, 0.10)]
    result = {"experiment": "memorisation", "runs": [_phase_run(*r) for r in rows]}
    out = claims.phase_claims(result)
    assert [c["quantity"].split(" (")[0] for c in out] == ["test accuracy", "noisy fit", "noisy examples, true class − wrong label"]
    pairs = [([r[1] for r in rows], [r[2] for r in rows]), ([r[3] for r in rows], [r[4] for r in rows]),
             ([r[5] for r in rows], [r[4] for r in rows])]
    raw = []
    for c, (a, b) in zip(out, pairs):
        ref = st.ttest_rel(a, b)
        assert c["t"] == pytest.approx(ref.statistic) and c["p"] == pytest.approx(ref.pvalue) and c["seeds"] == 3
        raw.append(ref.pvalue)
    order = sorted(range(3), key=raw.__getitem__)  # Holm by hand: 3p, 2p, p, running maximum, capped at 1
    want, running = [0.0] * 3, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[i]))
        want[i] = running
    assert [c["p_holm"] for c in out] == pytest.approx(want)
    assert [c["holds"] for c in out] == [c["p_holm"] < 0.05 and c["mean_difference"] > 0 for c in out]
    assert out[1]["mean_difference"] == pytest.approx((0.30 + 0.35 + 0.28 - 0.10 - 0.12 - 0.11) / 3)
    assert all(c["claim"].startswith("SGD: ") and c["evidence"].startswith("paired t test, n=3") for c in out)
    # one seed: no test, nothing holds
    one = claims.phase_claims({"experiment": "m", "runs": [_phase_run(*rows[0])]})
    assert [c["verdict"] for c in one] == ["not established"] * 3
    with pytest.raises(ValueError, match="predates the validation split"):
        claims.phase_claims({"experiment": "old", "runs": [{"method": "SGD", "seed": 0, "history": []}]})


def test_family_table_prints_test_n_t_holm_p_and_verdict_per_claim():
    from scipy import stats as st

    from samlab.claims import paired_family, table

    sgd_acc, sam_acc = [0.40, 0.42, 0.41, 0.43, 0.40], [0.45, 0.46, 0.44, 0.47, 0.46]
    sgd_head, sam_head = [5.0, 5.5, 6.0, 5.2, 5.1], [4.0, 5.6, 5.0, 5.3, 5.0]

    def run(method, seed, acc, head):
        hist = [{"epoch": e, "head_norm": head, "feature_norm": 1.0} for e in range(6)]
        return {"method": method, "seed": seed, "test_at_val": acc, "history": hist}

    result = {"experiment": "x", "runs": [run("SGD", s, sgd_acc[s], sgd_head[s]) for s in range(5)]
              + [run("SAM", s, sam_acc[s], sam_head[s]) for s in range(5)]}
    out = list(paired_family([(result, "SAM", "SGD", "test_at_val"), (result, "SAM", "SGD", "last5_head_norm")]).values())
    text = table(out).splitlines()
    acc_t = st.ttest_rel(sam_acc, sgd_acc).statistic
    head_t = st.ttest_rel(sam_head, sgd_head).statistic
    assert "SAM > SGD: test_at_val" in text[2] and f"{acc_t:.2f} (4)" in text[2] and text[2].endswith("holds")
    assert "+4.40 [" in text[2]  # mean paired difference, in percentage points
    assert "SAM < SGD: last5_head_norm" in text[3] and f"{head_t:.2f} (4)" in text[3]
    assert "-0.38 [" in text[3]  # (−1 + 0.1 − 1 + 0.1 − 0.1) / 5: a norm is printed as it is, not in points
    assert text[3].endswith("not established")  # t = −1.49 with 4 df: not below SGD at Holm's level
    assert "m = 2 claims" in text[-2]
    # Holm's bar, hand-computed: α/m = 0.025 for the first step, t_{0.9875}(4) = 3.4954; the last, t_{0.975}(4) = 2.7764
    assert "0.05/2 = 0.025" in text[-1] and "|t| ≥ 3.50 for the first step, ≥ 2.78 for the last" in text[-1]
    assert out[1]["evidence"].count("points") == 0 and "points" in out[0]["evidence"]


def test_a_contrast_claim_tests_the_difference_of_two_gaps_seed_by_seed():
    """(SAM − SGD) in one experiment against the same gap in a control, paired by seed: checked
    against scipy's paired t test on the hand-computed gaps, seeds matched by number, not order."""
    from scipy import stats as st

    def result(name, sgd, sam, seeds):
        runs = [{"method": "SGD", "seed": s, "test_at_val": v} for s, v in zip(seeds, sgd)]
        runs += [{"method": "SAM", "seed": s, "test_at_val": v} for s, v in zip(seeds, sam)]
        return {"experiment": name, "runs": runs}

    asym = result("asym", [0.50, 0.52, 0.49, 0.51, 0.50], [0.49, 0.52, 0.50, 0.50, 0.49], [0, 1, 2, 3, 4])
    # the control lists its seeds in another order, and has a sixth seed the other lacks
    sym = result("sym", [0.60, 0.55, 0.58, 0.57, 0.56, 0.9], [0.61, 0.58, 0.60, 0.59, 0.58, 0.1], [4, 1, 2, 3, 0, 5])
    fam = paired_family([(asym, "SAM", "SGD", "test_at_val", "less", sym), (asym, "SAM", "SGD", "test_at_val")])
    key = ("asym vs sym", "SAM − SGD", "SAM − SGD in sym", "test_at_val", "less")
    assert list(fam)[0] == key
    c = fam[key]
    gap_asym = [-0.01, 0.00, 0.01, -0.01, -0.01]          # seeds 0..4
    gap_sym = [0.58 - 0.56, 0.03, 0.02, 0.02, 0.61 - 0.60]  # seeds 0..4 of the control
    ref = st.ttest_rel(gap_asym, gap_sym)
    assert c["seeds"] == 5 and c["t"] == pytest.approx(ref.statistic) and c["p"] == pytest.approx(ref.pvalue)
    assert c["mean_difference"] == pytest.approx(sum(gap_asym) / 5 - sum(gap_sym) / 5)
    assert c["family_size"] == 2 and c["experiment"] == "asym vs sym"
    # the gap is smaller under the first experiment on every seed: with two claims, Holm's p = 2 p
    assert c["p_holm"] == pytest.approx(min(1.0, 2 * ref.pvalue)) and c["holds"] == (2 * ref.pvalue < 0.05)
    assert "SAM − SGD < SAM − SGD in sym: test_at_val" in table(list(fam.values()))
    with pytest.raises(ValueError, match="share no seed"):
        paired_family([(asym, "SAM", "SGD", "test_at_val", "less", result("other", [0.5], [0.5], [9]))])
    with pytest.raises(ValueError, match="SANER"):
        paired_family([(asym, "SANER", "SGD", "test_at_val", "less", sym)])


def _source_run(method: str, seed: int, at_val: float, last: float) -> dict:
    # the validation-chosen epoch is 1; epoch 2 (the last) has another source-class accuracy
    return {"method": method, "seed": seed, "val_epoch": 1,
            "history": [{"epoch": 0, "test_source_acc": 0.1}, {"epoch": 1, "test_source_acc": at_val},
                        {"epoch": 2, "test_source_acc": last}]}


def test_source_class_accuracy_is_paired_per_seed_at_each_runs_validation_epoch():
    result = {"experiment": "asym", "runs": [
        _source_run("SGD", 0, 0.6, 0.9), _source_run("SGD", 1, 0.5, 0.9), _source_run("SGD", 2, 0.7, 0.9),
        _source_run("SAM", 0, 0.4, 0.1), _source_run("SAM", 1, 0.4, 0.1), _source_run("SAM", 2, 0.5, 0.1),
    ]}
    # by hand, at epoch 1 (not the last): SAM − SGD = (0.4−0.6, 0.4−0.5, 0.5−0.7)
    assert paired_differences(result, "SAM", "SGD", "source_acc_at_val") == pytest.approx([-0.2, -0.1, -0.2])
    [sgd_vs_sam] = _against(result, "SAM", "source_acc_at_val")
    # +0.167 ± 0.033 (s.e.): t = 5.0 with 2 df, p = 0.038, a family of one
    assert sgd_vs_sam["method"] == "SGD" and sgd_vs_sam["holds"] and sgd_vs_sam["p_holm"] == pytest.approx(sgd_vs_sam["p"])
    assert sgd_vs_sam["t"] == pytest.approx(5.0)
    assert sgd_vs_sam["claim"] == ("SGD's test accuracy on the classes that lose labels, at the validation-chosen epoch "
                                   "is above SAM's (paired over seeds)")
