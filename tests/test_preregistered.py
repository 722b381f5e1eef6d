"""The pre-registered claim families: they name real experiments, labels and quantities, and are
tested as one Holm family, with the validation-chosen regulariser resolved without reading test accuracy."""

from __future__ import annotations

import pytest
from scipy import stats as st

from samlab import claims, experiments, preregistered, stats


@pytest.mark.parametrize("notebook", sorted(preregistered.FAMILIES))
def test_families_name_real_experiments_labels_and_quantities(notebook):
    fam = preregistered.family(notebook)
    assert fam and len(set(fam)) == len(fam)
    for where, method, baseline, quantity, direction in fam:
        assert quantity in claims.QUANTITIES and direction in stats.DIRECTIONS
        for name in where if isinstance(where, tuple) else (where,):
            exp = experiments.get(name, "cpu")
            for label in (method, baseline):
                assert label == preregistered.VALIDATION_BEST or label in exp.methods, (name, label)
    assert all(label in experiments.get(name, "cpu").methods for name, label in preregistered.labels_used(notebook))
    with pytest.raises(ValueError, match="notebook must be one of"):
        preregistered.family("99")


def _run(method, seed, val, test, noisy):
    hist = [{"epoch": e, "head_norm": 1.0, "feature_norm": 1.0, "noisy_fit": noisy} for e in range(6)]
    return {"method": method, "seed": seed, "val_acc": val, "test_at_val": test, "last5_test_acc": test - 0.05,
            "last5_noisy_fit": noisy, "oracle_test_acc": test + 0.01, "history": hist}


def test_notebook_05_family_on_a_synthetic_result():
    labels = list(experiments.get("cheap-regularisers-30", "cpu").methods)
    runs = []
    for seed in range(5):
        for i, label in enumerate(labels):
            # "reg A 1e-2" has the best validation accuracy but the worst test accuracy: it must still be chosen
            val = 0.9 if label == "reg A 1e-2" else 0.3 + 0.01 * i
            test = 0.1 + 0.001 * seed if label == "reg A 1e-2" else 0.4 + 0.01 * i + 0.003 * seed * (i % 3)
            runs.append(_run(label, seed, val, test, noisy=0.5 - 0.02 * i + 0.001 * seed * i))
    result = {"experiment": "cheap-regularisers-30", "runs": runs}
    assert preregistered.resolve(preregistered.VALIDATION_BEST, result) == "reg A 1e-2"
    out = preregistered.evaluate("05", load=lambda name, profile: result)
    assert len(out) == 5 and all(c["family_size"] == 5 for c in out)
    assert [c["as_registered"] for c in out] == preregistered.family("05")
    assert out[2]["method"] == "reg A 1e-2" and out[4]["baseline"] == "reg A 1e-2"
    # one claim against scipy: SAM vs SGD in test accuracy at the validation epoch
    by = {(r["method"], r["seed"]): r for r in runs}
    ref = st.ttest_rel([by[("SAM", s)]["test_at_val"] for s in range(5)], [by[("SGD", s)]["test_at_val"] for s in range(5)])
    assert out[0]["t"] == pytest.approx(ref.statistic) and out[0]["p"] == pytest.approx(ref.pvalue)
    assert out[0]["p_holm"] == pytest.approx(stats.holm([c["p"] for c in out])[0])
    # SAM above a regulariser that is chosen on validation and scores low on test: holds, and the verdict says so
    assert out[4]["holds"] and out[4]["verdict"] == "holds"


def test_a_missing_result_is_named():
    with pytest.raises(ValueError, match="logit-jacobian-30 at the cpu profile"):
        preregistered.evaluate("03", load=lambda name, profile: None)


def test_last5_norm_quantities_average_the_last_five_trained_epochs():
    hist = [{"epoch": e, "head_norm": float(e), "feature_norm": 10.0 * e} for e in range(8)]  # epochs 3..7 are the last 5
    run = {"method": "SGD", "seed": 0, "history": hist}
    get_head = claims.QUANTITIES["last5_head_norm"][2]({"runs": [run]})
    get_feat = claims.QUANTITIES["last5_feature_norm"][2]({"runs": [run]})
    assert get_head(run) == pytest.approx((3 + 4 + 5 + 6 + 7) / 5) and get_feat(run) == pytest.approx(50.0)
    assert claims.QUANTITIES["last5_head_norm"][0] == "less"


def test_source_accuracy_is_read_at_the_validation_epoch():
    hist = [{"epoch": e, "test_source_acc": 0.1 * e} for e in range(6)]
    run = {"method": "SGD", "seed": 0, "val_epoch": 2, "history": hist}
    get = claims.QUANTITIES["source_acc_at_val"][2]({"runs": [run]})
    assert get(run) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="val_epoch"):
        get({**run, "val_epoch": None})
    with pytest.raises(ValueError, match="test_source_acc"):
        get({**run, "history": [{"epoch": e} for e in range(6)]})


def test_notebook_07_contrasts_pair_each_asymmetric_rate_with_its_symmetric_control(monkeypatch):
    """The contrasts compare SAM's gain over SGD under asymmetric noise with its gain under the
    symmetric control of the matching realised rate, seed by seed (checked against scipy)."""
    contrasts = [c for c in preregistered.family("07") if isinstance(c[0], tuple)]
    assert [c[0] for c in contrasts] == [("asymmetric-20", "symmetric-10"), ("asymmetric-40", "symmetric-20")]
    for (asym, sym), *_ in contrasts:  # the control's symmetric rate is the asymmetric map's realised rate
        a, s = experiments.get(asym, "cpu"), experiments.get(sym, "cpu")
        assert a.noise == "asymmetric" and s.noise == "symmetric-flip" and s.rate == pytest.approx(a.rate / 2)

    def result(name, extra):  # SAM − SGD per seed: 0.01·seed + extra(seed)
        runs = [{"method": m, "seed": seed, "test_at_val": 0.5 + (m == "SAM") * (0.01 * seed + extra(seed))}
                for m in experiments.get(name, "cpu").methods for seed in range(5)]
        return {"experiment": name, "runs": runs}

    asym_gap, sym_gap = (lambda s: 0.0), (lambda s: 0.02 + 0.003 * (s % 2))
    files = {n: result(n, asym_gap if n.startswith("asym") else sym_gap)
             for n in ("asymmetric-20", "asymmetric-40", "symmetric-10", "symmetric-20")}
    monkeypatch.setitem(preregistered.FAMILIES, "07", contrasts)   # the contrasts alone, on synthetic files
    out = preregistered.evaluate("07", load=lambda name, profile: files.get(name))
    assert [c["as_registered"] for c in out] == contrasts and out[0]["experiment"] == "asymmetric-20 vs symmetric-10"
    ref = st.ttest_rel([0.01 * s for s in range(5)], [0.01 * s + sym_gap(s) for s in range(5)])
    assert out[0]["t"] == pytest.approx(ref.statistic) and out[0]["p"] == pytest.approx(ref.pvalue)
    assert out[0]["mean_difference"] == pytest.approx(-0.0212) and out[0]["holds"]  # smaller under asymmetric noise
