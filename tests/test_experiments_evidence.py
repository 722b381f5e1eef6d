"""The experiment list follows the evidence protocol: five seeds, per-seed noise, the notebook-07 controls,
the tuning grid, and runs that two experiments share."""

from __future__ import annotations

import pytest

from samlab import experiments


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_every_comparison_has_five_seeds_and_per_seed_noise(profile):
    for name in experiments.EXPERIMENTS:
        exp = experiments.get(name, profile)
        assert exp.noise_seed is None and exp.val_fraction == 0.1, name
        assert exp.noise_seed_of(3) == 3
        if name == "memorisation-pilot":   # its own five seeds, none of which a claim uses
            assert exp.seeds == experiments.PILOT_SEEDS and len(exp.seeds) == 5, name
            assert not set(exp.seeds) & set(experiments.SEEDS)
        else:
            assert len(exp.seeds) >= 5 and set(exp.seeds) >= set(experiments.SEEDS), name
        if name in experiments.SELECTION:   # the committed choice was made on some of them
            assert 2 <= len(experiments.choice_seeds(name, profile)) < len(exp.seeds), name
            assert experiments.choice_seeds(name, profile) == experiments.CHOICE_SEEDS[name], name


def test_choice_seeds_are_the_seeds_the_committed_choice_was_made_on():
    assert experiments.choice_seeds("tuning-rho-30", "cpu") == (0, 1, 2)
    assert experiments.choice_seeds("memorisation-pilot", "cpu") == (10, 11)
    assert experiments.choice_seeds("tuning-rho-30", "smoke") == (0,)        # smoke's one seed is among them
    assert experiments.choice_seeds("memorisation-pilot", "smoke") == (0,)   # none is: all of smoke's
    with pytest.raises(ValueError, match="name must be a selection experiment"):
        experiments.choice_seeds("logit-jacobian-30", "cpu")


def test_smoke_keeps_one_seed():
    assert all(experiments.get(name, "smoke").seeds == (0,) for name in experiments.EXPERIMENTS)


@pytest.mark.parametrize("sym, asym", [("symmetric-10", "asymmetric-20"), ("symmetric-20", "asymmetric-40")])
def test_symmetric_controls_match_the_asymmetric_runs_but_for_the_noise(sym, asym):
    s, a = experiments.get(sym, "cpu"), experiments.get(asym, "cpu")
    assert s.noise == "symmetric-flip" and a.noise == "asymmetric"
    assert s.rate == a.rate / 2  # asymmetric noise at r moves labels of half the classes: about r/2 of all labels
    assert s.methods == a.methods and s.fit == a.fit and s.seeds == a.seeds and s.model_options == a.model_options


def test_asymmetric_runs_have_1sam_at_jsams_rho():
    for name in ("asymmetric-20", "asymmetric-40"):
        m = experiments.get(name, "cpu").methods
        assert m["1-SAM"] == {"method": "sam", "rho": experiments.RHO_PER_EXAMPLE, "m": 1}
        assert m["J-SAM"]["rho"] == m["1-SAM"]["rho"]


def test_tuning_grid():
    m = experiments.get("tuning-rho-30", "cpu").methods
    rhos = lambda fam: sorted(c["rho"] for k, c in m.items() if k.split(" ")[0] == fam)  # noqa: E731
    assert rhos("SAM") == [0.02, 0.05, 0.1]
    assert rhos("1-SAM") == rhos("J-SAM") == [0.005, 0.01, 0.02]
    assert sorted(c["gamma_w"] for k, c in m.items() if k.startswith("reg")) == [1e-3, 1e-2]


def test_shared_runs_are_identical_configurations():
    cheap, beyond = experiments.get("cheap-regularisers-30", "cpu"), experiments.get("beyond-sam-30", "cpu")
    assert experiments.shared_runs(cheap, beyond) == {"SGD": "SGD", "SAM": "SAM"}
    lj = experiments.get("logit-jacobian-30", "cpu")
    assert experiments.shared_runs(lj, beyond) == {"SGD": "SGD", "SAM": "SAM"}
    tuning = experiments.get("tuning-rho-30", "cpu")
    assert experiments.shared_runs(tuning, lj) == {f"SAM ρ={experiments.RHO:g}": "SAM",
                                                  f"1-SAM ρ={experiments.RHO_PER_EXAMPLE:g}": "1-SAM",
                                                  f"J-SAM ρ={experiments.RHO_PER_EXAMPLE:g}": "J-SAM",
                                                  "SGD lr=0.05": "SGD"}   # the learning-rate check's own lr: SGD's runs
    # another noise rate: nothing shared
    assert experiments.shared_runs(lj, experiments.get("logit-jacobian-50", "cpu")) == {}


def test_memorisation_pilot_ranks_settings_of_the_memorisation_runs():
    pilot, mem = experiments.get("memorisation-pilot", "cpu"), experiments.get("memorisation", "cpu")
    assert set(experiments.SELECTION) <= set(experiments.EXPERIMENTS)
    assert all(getattr(pilot, f) == getattr(mem, f) for f in ("dataset", "noise", "rate", "model", "model_options"))
    assert all(c["method"] == "sgd" for c in pilot.methods.values())
    assert not set(pilot.seeds) & set(mem.seeds)  # the claims' runs took no part in choosing their setting
    assert experiments.shared_runs(pilot, mem) == {}
    # the chosen setting is among the candidates: memorisation trains with the pilot's fit and one of its overrides
    chosen = [label for label, c in pilot.methods.items() if {**pilot.fit, **c.get("fit", {})} == mem.fit]
    assert len(chosen) == 1, chosen


def test_the_experiments_radii_are_those_tuning_chose_on_validation():
    """Once ``tuning-rho-30`` is complete on its choice seeds, RHO and RHO_PER_EXAMPLE must be its
    validation choices on them (``results.select_on_validation`` on the committed file); until then this
    says how far it is."""
    from samlab import results

    tuning = experiments.get("tuning-rho-30", "cpu")
    seeds = experiments.choice_seeds("tuning-rho-30", "cpu")
    radii = [label for label in tuning.methods if label.split(" ")[0] in ("SAM", "1-SAM", "J-SAM")]
    expected = len(radii) * len(seeds)
    saved = results.load("tuning-rho-30", "cpu")
    done = 0 if saved is None else sum(1 for r in saved["runs"] if r.get("val_acc") is not None
                                       and r["seed"] in seeds and r["method"] in radii)
    if done < expected:
        pytest.skip(f"tuning-rho-30 has {done} of its {expected} runs on seeds {seeds}: no choice yet")
    choice = results.select_on_validation(saved, seeds=seeds)
    assert all(c["seeds"] == list(seeds) for c in choice.values())
    picked = {fam: experiments.TUNING[p["label"]]["rho"] for fam, p in choice.items() if fam in ("SAM", "1-SAM", "J-SAM")}
    assert picked["SAM"] == experiments.RHO, f"validation chose SAM ρ = {picked['SAM']}: set experiments.RHO (and re-run)"
    assert picked["1-SAM"] == picked["J-SAM"] == experiments.RHO_PER_EXAMPLE, (
        f"validation chose 1-SAM ρ = {picked['1-SAM']}, J-SAM ρ = {picked['J-SAM']}: set experiments.RHO_PER_EXAMPLE "
        f"(if they differ, decide how notebook 03 compares them at one ρ, and say so)")


def test_notebook_07s_regulariser_is_the_one_notebook_05_chose_on_validation():
    """Once ``cheap-regularisers-30`` is complete, REGULARISER must be its validation choice."""
    from samlab import preregistered, results

    cheap = experiments.get("cheap-regularisers-30", "cpu")
    for name in ("asymmetric-20", "asymmetric-40", "symmetric-10", "symmetric-20"):
        assert experiments.REGULARISER in experiments.get(name, "cpu").methods
    saved = results.load("cheap-regularisers-30", "cpu")
    done = 0 if saved is None else sum(1 for r in saved["runs"] if r.get("val_acc") is not None)
    if done < len(cheap.methods) * len(cheap.seeds):
        pytest.skip(f"cheap-regularisers-30 has {done} of its {len(cheap.methods) * len(cheap.seeds)} runs: no choice yet")
    chosen = preregistered.resolve(preregistered.VALIDATION_BEST, saved)
    assert chosen == experiments.REGULARISER, f"validation chose {chosen}: set experiments.REGULARISER (and re-run notebook 07)"


def test_run_all_trains_the_selection_experiments_first():
    from samlab import runner

    order = runner.run_order()
    assert sorted(order) == sorted(experiments.EXPERIMENTS) and len(order) == len(set(order))
    assert order[: len(experiments.SELECTION)] == list(experiments.SELECTION)
    assert order.index("cheap-regularisers-30") < min(order.index(n) for n in order if "symmetric" in n)
