"""The experiment runner (samlab.runner) and result files (samlab.results): schema, resume after
interruption, splitting a sweep across processes, summaries, the README table."""

from __future__ import annotations

import dataclasses
import json
import statistics

import numpy as np
import pytest
import torch

from samlab import confusion, data, experiments, results, runner, train
from tiny_experiment import tiny_experiment


@pytest.fixture
def tiny(monkeypatch):
    def tiny_exp(profile: str) -> experiments.Experiment:
        return tiny_experiment()

    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", tiny_exp)
    return tiny_exp


def test_result_file_has_the_documented_schema(tmp_path, tiny):
    res = runner.run("tiny", "smoke", results_root=tmp_path / "r", checkpoint_root=tmp_path / "c", progress=False)
    saved = json.loads((tmp_path / "r" / "smoke" / "tiny.json").read_text())
    assert saved["runs"] and len(saved["runs"]) == 4
    for key in ("experiment", "profile", "config", "git_commit", "hardware", "runs", "realised_noise_rate", "command"):
        assert key in saved, key
    for run in saved["runs"]:
        for key in ("method", "seed", "oracle_test_acc", "final_test_acc", "seconds_per_epoch", "history"):
            assert key in run, key
        assert len(run["history"]) == 3  # epoch 0 + 2 epochs
        assert run["oracle_test_acc"] == max(r["test_acc"] for r in run["history"])
    assert res["config"]["methods"]["SAM"] == {"method": "sam", "rho": 0.05}


def test_interrupted_sweep_resumes_without_retraining(tmp_path, tiny, monkeypatch):
    kw = dict(results_root=tmp_path / "r", checkpoint_root=tmp_path / "c", progress=False)
    real_fit = train.fit
    calls = []

    def dying_fit(model, method, data, config):
        calls.append(method.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_fit(model, method, data, config)

    monkeypatch.setattr(train, "fit", dying_fit)
    with pytest.raises(KeyboardInterrupt):
        runner.run("tiny", "smoke", **kw)
    partial = json.loads((tmp_path / "r" / "smoke" / "tiny.json").read_text())
    # seed-major: the two runs finished before the interruption are both methods' seed 0
    assert [(r["method"], r["seed"]) for r in partial["runs"]] == [("SGD", 0), ("SAM", 0)]

    calls.clear()
    res = runner.run("tiny", "smoke", **kw)
    assert calls == ["sgd", "sam"]  # only the missing runs (seed 1) were trained
    # the file lists runs method by method, whatever the training order
    assert [(r["method"], r["seed"]) for r in res["runs"]] == [("SGD", 0), ("SGD", 1), ("SAM", 0), ("SAM", 1)]


def test_extending_an_experiments_seeds_keeps_its_finished_runs(tmp_path, tiny, monkeypatch):
    kw = dict(results_root=tmp_path / "r", checkpoint_root=tmp_path / "c", progress=False)
    one_seed = lambda profile: dataclasses.replace(tiny(profile), seeds=(0,))  # noqa: E731
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", one_seed)
    first = runner.run("tiny", "smoke", **kw)
    real_fit, calls = train.fit, []

    def counting_fit(model, method, data, config):
        calls.append((method.name, config.seed))
        return real_fit(model, method, data, config)

    monkeypatch.setattr(train, "fit", counting_fit)
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", tiny)  # seeds (0, 1)
    res = runner.run("tiny", "smoke", **kw)
    assert calls == [("sgd", 1), ("sam", 1)]  # seed 0 was kept, not retrained
    assert tuple(res["config"]["seeds"]) == (0, 1)
    kept = {(r["method"], r["seed"]): r for r in res["runs"]}
    sam0 = next(r for r in first["runs"] if r["method"] == "SAM")
    assert kept[("SAM", 0)]["wall_seconds"] == sam0["wall_seconds"]  # the very run of the first call
    # a changed method configuration retrains that method only (and drops its old runs)
    calls.clear()
    retuned = lambda profile: dataclasses.replace(  # noqa: E731
        tiny(profile), methods={**tiny(profile).methods, "SAM": {"method": "sam", "rho": 0.02}})
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", retuned)
    res = runner.run("tiny", "smoke", **kw)
    assert calls == [("sam", 0), ("sam", 1)]
    assert {r["method_config"]["rho"] for r in res["runs"] if r["method"] == "SAM"} == {0.02}
    # the old configuration's checkpoints were set aside, not resumed from and not deleted
    assert len(list((tmp_path / "c" / "smoke" / "tiny").glob("SAM-seed*.stale-*"))) == 2
    assert [r["wall_seconds"] for r in res["runs"] if r["method"] == "SGD"] == [
        kept[("SGD", s)]["wall_seconds"] for s in (0, 1)]  # SGD's runs kept
    # any other change of the configuration still starts afresh
    calls.clear()
    other = lambda profile: dataclasses.replace(tiny(profile), rate=0.2)  # noqa: E731
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", other)
    runner.run("tiny", "smoke", **{**kw, "checkpoint_root": tmp_path / "c2"})
    assert len(calls) == 4


def test_summary_and_table_match_hand_computation(tmp_path, tiny):
    res = runner.run("tiny", "smoke", results_root=tmp_path / "r", checkpoint_root=tmp_path / "c", progress=False)
    rows = {r["method"]: r for r in results.summarise(res)}
    sam = [r for r in res["runs"] if r["method"] == "SAM"]
    oracle = [max(h["test_acc"] for h in r["history"]) for r in sam]
    assert rows["SAM"]["oracle_mean"] == pytest.approx(statistics.mean(oracle))
    assert rows["SAM"]["final_std"] == pytest.approx(statistics.stdev(r["history"][-1]["test_acc"] for r in sam))
    assert rows["SGD"]["cost_vs_sgd"] == pytest.approx(1.0)
    table = results.table_markdown([res])
    assert table.count("\n") == 3 and "| tiny | smoke |" in table
    h = results.histories(res, seed=1)
    assert set(h) == {"SGD", "SAM"} and len(h["SAM"]) == 3
    # the notebooks' text table: the same numbers, the interval from scipy's t quantile
    from scipy import stats as st

    text = results.summary_text(res, costs={"SAM": 2.5}).splitlines()
    vals = [r["test_at_val"] for r in sam]
    half = st.t.ppf(0.975, len(vals) - 1) * statistics.stdev(vals) / len(vals) ** 0.5
    line = next(x for x in text if x.startswith("SAM "))
    assert f"{statistics.mean(vals):.3f} ± {half:.3f}" in line and line.endswith("2.50")
    assert f"{statistics.mean(r['oracle_test_acc'] for r in sam):.3f}" in line  # the oracle column
    assert "× SGD: from the benchmark" in text[-1]


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="experiment must be one of"):
        experiments.get("nope", "cpu")
    with pytest.raises(ValueError, match="profile must be one of"):
        experiments.get("memorisation", "tpu")


def test_cli_lists_experiments(capsys):
    assert runner.main(["list"]) == 0
    assert "memorisation" in capsys.readouterr().out


def test_readme_results_table_is_generated_from_the_committed_files(readme_section):
    """The README's table is exactly what `make results-table` writes from data/results/."""
    inside = readme_section(results.README_MARKERS)
    assert inside == results.committed_table().strip(), "run `make results-table` and commit README.md"


def test_update_readme_replaces_only_between_markers(tmp_path):
    start, end = results.README_MARKERS
    p = tmp_path / "R.md"
    p.write_text(f"head\n{start}\nold\n{end}\ntail\n")
    results.update_readme(p, "NEW")
    assert p.read_text() == f"head\n{start}\nNEW\n{end}\ntail\n"
    p.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        results.update_readme(p, "x")


def test_disjoint_only_sets_merge_into_one_file(tmp_path, tiny):
    """Two processes may each train some methods of one experiment: the file gets all runs."""
    kw = dict(results_root=tmp_path / "r", checkpoint_root=tmp_path / "c", progress=False)
    runner.run("tiny", "smoke", only=["SAM"], **kw)
    res = runner.run("tiny", "smoke", only=["SGD"], **kw)
    assert [(r["method"], r["seed"]) for r in res["runs"]] == [("SGD", 0), ("SGD", 1), ("SAM", 0), ("SAM", 1)]
    saved = json.loads((tmp_path / "r" / "smoke" / "tiny.json").read_text())
    assert [(r["method"], r["seed"], r["oracle_test_acc"]) for r in saved["runs"]] == [
        (r["method"], r["seed"], r["oracle_test_acc"]) for r in res["runs"]
    ]
    with pytest.raises(ValueError, match="only must name"):
        runner.run("tiny", "smoke", only=["ADAM"], **kw)


def test_seed_subsets_split_a_sweep_and_match_the_whole(tmp_path, tiny):
    """Splitting by seed (and method) gives the same runs, bit for bit, as one process training all."""
    whole = runner.run("tiny", "smoke", results_root=tmp_path / "w", checkpoint_root=tmp_path / "wc", progress=False)
    kw = dict(results_root=tmp_path / "r", checkpoint_root=tmp_path / "c", progress=False)
    runner.run("tiny", "smoke", seeds=[1], **kw)
    part = runner.run("tiny", "smoke", only=["SAM"], seeds=[0], **kw)
    assert [(r["method"], r["seed"]) for r in part["runs"]] == [("SGD", 1), ("SAM", 0), ("SAM", 1)]
    res = runner.run("tiny", "smoke", seeds=[0], **kw)
    key = lambda r: (r["method"], r["seed"], r["oracle_test_acc"], r["final_test_acc"])  # noqa: E731
    assert [key(r) for r in res["runs"]] == [key(r) for r in whole["runs"]]
    with pytest.raises(ValueError, match="seeds must be among"):
        runner.run("tiny", "smoke", seeds=[5], **kw)


def test_per_method_fit_overrides_reach_the_training_loop(tmp_path, monkeypatch):
    def exp(profile: str) -> experiments.Experiment:
        return experiments.Experiment(
            name="wd", description="", dataset="digits", noise="symmetric-flip", rate=0.2, model="linear",
            methods={"SGD": {"method": "sgd"}, "WD×10": {"method": "sgd", "fit": {"weight_decay": 5e-3}}},
            fit={"epochs": 1, "lr": 0.05, "batch_size": 256, "weight_decay": 5e-4},
        )

    monkeypatch.setitem(experiments.EXPERIMENTS, "wd", exp)
    seen = {}
    real_fit = train.fit

    def spy(model, method, data, config):
        seen[len(seen)] = config.weight_decay
        return real_fit(model, method, data, config)

    monkeypatch.setattr(train, "fit", spy)
    res = runner.run("wd", "smoke", save=False, progress=False)
    assert seen == {0: 5e-4, 1: 5e-3}
    assert [r["fit_overrides"] for r in res["runs"]] == [{}, {"weight_decay": 5e-3}]
    assert res["runs"][1]["method_config"] == {"method": "sgd"}  # "fit" is not a method hyperparameter


def test_load_or_run_prefers_the_saved_file(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("SAMLAB_DATA", str(tmp_path))
    first = runner.load_or_run("tiny", "cpu", progress=False)
    assert (tmp_path / "results" / "cpu" / "tiny.json").exists()
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("a saved result must not be retrained"))
    again = runner.load_or_run("tiny", "cpu")
    assert [r["wall_seconds"] for r in again["runs"]] == [r["wall_seconds"] for r in first["runs"]]


def test_confusion_counts_match_scikit_learn():
    from sklearn.metrics import confusion_matrix

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 4, (200,), generator=gen), torch.randint(0, 4, (200,), generator=gen)
    assert confusion.confusion_counts(a, b, 4) == confusion_matrix(a.numpy(), b.numpy(), labels=range(4)).tolist()
    with pytest.raises(ValueError, match="same shape"):
        confusion.confusion_counts(a, b[:10], 4)


def test_run_records_noise_and_test_confusion(tmp_path, tiny):
    from samlab import data as data_mod

    res = runner.run("tiny", "smoke", save=False, progress=False)
    total = torch.zeros(10, 10, dtype=torch.int64)
    for run in res["runs"]:
        # each seed draws its own noise (noise seed = seed) and validation split: as data.load does
        ds = data_mod.load("digits", noise="symmetric-flip", rate=0.3, noise_seed=run["seed"])
        assert run["noise_seed"] == run["seed"] and run["dataset"] == ds.describe()
        noise = torch.tensor(run["noise_confusion"])
        assert int(noise.sum()) == len(ds.y_train)
        assert 1 - noise.diagonal().sum().item() / noise.sum().item() == pytest.approx(run["realised_noise_rate"])
        assert run["realised_noise_rate"] == pytest.approx(ds.train_noise_rate)
        assert run["val_noise_rate"] == pytest.approx(ds.val_noise_rate)
        c = torch.tensor(run["test_confusion"])
        assert int(c.sum()) == len(ds.y_test)
        assert c.diagonal().sum().item() / c.sum().item() == pytest.approx(run["final_test_acc"], abs=1e-6)
        if run["method"] == "SGD":
            total += noise
    # the result-level fields: sum of the seeds' counts, mean of their rates
    assert res["noise_confusion"] == total.tolist() and res["noise_seeds"] == [0, 1]
    rates = [r["realised_noise_rate"] for r in res["runs"] if r["method"] == "SGD"]
    assert res["realised_noise_rate"] == pytest.approx(sum(rates) / 2)
    assert 1 - total.diagonal().sum().item() / total.sum().item() == pytest.approx(res["realised_noise_rate"])
    assert "each seed draws its own noise" in res["dataset"]


def test_seeds_draw_their_own_noise_unless_it_is_fixed(tiny, monkeypatch):
    exp = tiny("smoke")
    a, b = runner.dataset_for_seed(exp, 0), runner.dataset_for_seed(exp, 1)
    assert not torch.equal(a.split.val_index, b.split.val_index)
    assert not torch.equal(a.noise.is_noisy, b.noise.is_noisy)
    fixed = dataclasses.replace(exp, noise_seed=7)
    c, d = runner.dataset_for_seed(fixed, 0), runner.dataset_for_seed(fixed, 1)
    assert torch.equal(c.y_train, d.y_train) and torch.equal(c.y_val, d.y_val) and c.noise.seed == 7
    # the runner's data is data.load's
    ref = data.load("digits", noise="symmetric-flip", rate=0.3, noise_seed=1, val_fraction=0.1)
    assert torch.equal(b.x_train, ref.x_train) and torch.equal(b.y_val, ref.y_val) and b.describe() == ref.describe()
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", lambda profile: dataclasses.replace(tiny(profile), noise_seed=7))
    res = runner.run("tiny", "smoke", save=False, progress=False)
    assert {r["noise_seed"] for r in res["runs"]} == {7}
    sgd = [r for r in res["runs"] if r["method"] == "SGD"]
    assert sgd[0]["noise_confusion"] == sgd[1]["noise_confusion"]
    with pytest.raises(ValueError, match="noise_seed must be None"):
        dataclasses.replace(exp, noise_seed=-1)


def test_runs_report_validation_selected_and_last5_accuracy(tmp_path, tiny):
    res = runner.run("tiny", "smoke", save=False, progress=False)
    for run in res["runs"]:
        h = train.History(records=run["history"])
        assert run["val_epoch"] == h.val_epoch and run["test_at_val"] == h.at_epoch(run["val_epoch"])["test_acc"]
        assert run["oracle_test_acc"] == max(r["test_acc"] for r in run["history"])
        assert "best_test_acc" not in run  # the maximum only under a name that says oracle
        assert run["last5_test_acc"] == pytest.approx(sum(r["test_acc"] for r in run["history"][1:]) / 2)  # 2 epochs


def test_load_bench_reads_one_model_with_provenance(tmp_path):
    path = tmp_path / "cpu" / "bench.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"command": "python -m samlab.bench", "hardware": "CPU", "records": [
        {"model": "a", "ratio_to_sgd": {"sgd": 1.0}}, {"model": "small-cnn-gn", "ratio_to_sgd": {"sgd": 1.0, "sam": 2.0}}]}))
    rec = results.load_bench("cpu", root=tmp_path)
    assert rec["ratio_to_sgd"]["sam"] == 2.0 and rec["hardware"] == "CPU" and rec["command"] == "python -m samlab.bench"
    assert results.load_bench("cpu", model="zzz", root=tmp_path) is None
    assert results.load_bench("gpu", root=tmp_path) is None
    (tmp_path / "cpu" / "flops.json").write_text(json.dumps({"command": "python -m samlab.bench --flops", "records": [
        {"model": "resnet18-gn", "flop_ratio_to_sgd": {"sgd": 1.0, "1-sam": 2.4}}]}))
    flops = results.load_bench("cpu", model="resnet18-gn", root=tmp_path, file="flops")
    assert flops["flop_ratio_to_sgd"]["1-sam"] == 2.4 and flops["command"].endswith("--flops")
    assert results.load_bench("cpu", model="resnet18-gn", root=tmp_path) is None  # the times file has no such model


def _tuning_run(method, seed, val, test):
    return {"method": method, "seed": seed, "val_acc": val, "test_at_val": test, "oracle_test_acc": test}


def test_select_on_validation_picks_by_mean_val_acc_and_never_reads_test():
    result = {"experiment": "tune", "runs": [
        # SAM family: ρ=0.05 has the best mean val acc (0.52 vs 0.50 vs 0.45) but the worst test accuracy
        _tuning_run("SAM ρ=0.02", 0, 0.50, 0.70), _tuning_run("SAM ρ=0.02", 1, 0.50, 0.70),
        _tuning_run("SAM ρ=0.05", 0, 0.53, 0.10), _tuning_run("SAM ρ=0.05", 1, 0.51, 0.10),
        _tuning_run("SAM ρ=0.1", 0, 0.40, 0.90), _tuning_run("SAM ρ=0.1", 1, 0.50, 0.90),
        # reg family: seed 1 only for one label, so both are compared on seed 0
        _tuning_run("reg W+A 0.001", 0, 0.30, 0.5), _tuning_run("reg W+A 0.01", 0, 0.35, 0.1),
        _tuning_run("reg W+A 0.001", 1, 0.99, 0.5),
    ]}
    picked = results.select_on_validation(result)
    assert picked["SAM"]["label"] == "SAM ρ=0.05" and picked["SAM"]["val_acc"] == pytest.approx(0.52)
    assert picked["SAM"]["candidates"] == pytest.approx({"SAM ρ=0.02": 0.50, "SAM ρ=0.05": 0.52, "SAM ρ=0.1": 0.45})
    assert picked["reg"]["label"] == "reg W+A 0.01" and picked["reg"]["seeds"] == [0]
    # the test accuracies may be anything: the choice does not change
    scrambled = {**result, "runs": [{**r, "test_at_val": 0.0, "oracle_test_acc": 1.0} for r in result["runs"]]}
    assert {k: v["label"] for k, v in results.select_on_validation(scrambled).items()} == {"SAM": "SAM ρ=0.05", "reg": "reg W+A 0.01"}
    by_rho = results.select_on_validation(result, family=lambda label: "all")
    assert by_rho["all"]["label"] == "SAM ρ=0.05"
    with pytest.raises(ValueError, match="predates the validation split"):
        results.select_on_validation({"experiment": "old", "runs": [{"method": "SGD", "seed": 0, "oracle_test_acc": 0.5}]})
    # on seed 1 alone: SAM ρ=0.02 and ρ=0.1 tie at 0.50 with ρ=0.05 at 0.51 (hand-computed); reg has only ρ=0.001 there
    on_1 = results.select_on_validation(result, seeds=[1])
    assert on_1["SAM"]["label"] == "SAM ρ=0.05" and on_1["SAM"]["val_acc"] == pytest.approx(0.51)
    assert on_1["reg"] == {"label": "reg W+A 0.001", "val_acc": pytest.approx(0.99), "seeds": [1],
                           "candidates": {"reg W+A 0.001": pytest.approx(0.99)}}
    on_0 = results.select_on_validation(result, seeds=(0, 7))   # a seed with no runs is ignored
    assert on_0["SAM"]["label"] == "SAM ρ=0.05" and on_0["SAM"]["val_acc"] == pytest.approx(0.53) and on_0["SAM"]["seeds"] == [0]
    assert results.select_on_validation(result, seeds=[0, 1]) == picked
    with pytest.raises(ValueError, match="seeds must include a seed"):
        results.select_on_validation(result, seeds=[5])


def _curve_run(method, seed, val, test=None):
    test = test or [0.5] * len(val)
    return {"method": method, "seed": seed, "val_acc": max(val),
            "history": [{"epoch": e, "val_acc": v, "test_acc": t} for e, (v, t) in enumerate(zip(val, test))]}


def test_memorisation_contrast_by_hand_and_on_validation_only():
    val = [0.1, 0.3, 0.5, 0.6, 0.5, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3]
    # by hand: truncated centred 3-epoch mean; its max is (0.5 + 0.6 + 0.5)/3 at epoch 3; the last 5
    # trained epochs average 0.3; scatter = sample sd of val − smoothed (numpy, ddof=1)
    v = np.array(val)
    s = np.array([v[max(0, i - 1):i + 2].mean() for i in range(len(v))])
    want = (1.6 / 3 - 0.3) / np.std(v - s, ddof=1)
    assert results.memorisation_contrast(_curve_run("a", 0, val)) == pytest.approx(want)
    flat = [0.1, 0.3] + [0.3, 0.31] * 4 + [0.3]
    assert results.memorisation_contrast(_curve_run("b", 0, flat)) < 1 < want
    # select_on_validation with this score: the peaked curve wins, whatever the test accuracies
    runs = [_curve_run("peaked", 0, val, test=[0.0] * 11), _curve_run("flat", 0, flat, test=[1.0] * 11)]
    picked = results.select_on_validation({"experiment": "pilot", "runs": runs}, family=lambda _: "all",
                                          score=results.memorisation_contrast)
    assert picked["all"]["label"] == "peaked" and picked["all"]["val_acc"] == pytest.approx(want)
    with pytest.raises(ValueError, match="fewer than 3 epochs"):
        results.memorisation_contrast(_curve_run("c", 0, [0.1, 0.2]))


def test_table_shows_intervals_oracle_and_marks_old_files(tmp_path, tiny):
    from scipy import stats as st

    res = runner.run("tiny", "smoke", save=False, progress=False)
    rows = {r["method"]: r for r in results.summarise(res)}
    sam = [r["test_at_val"] for r in res["runs"] if r["method"] == "SAM"]
    half = st.t.ppf(0.975, 1) * statistics.stdev(sam) / 2**0.5
    assert rows["SAM"]["val_mean"] == pytest.approx(statistics.mean(sam)) and rows["SAM"]["val_half"] == pytest.approx(half)
    table = results.table_markdown([res])
    assert "oracle: max test acc" in table and "test acc at val. epoch" in table and "—†" not in table
    assert f"{100 * statistics.mean(sam):.1f} ± {100 * half:.1f}" in table
    # a file from before the validation split: no oracle_* either (its maximum was stored as best_test_acc)
    dropped = ("test_at_val", "last5_test_acc", "val_epoch", "val_acc", "oracle_test_acc", "oracle_epoch")
    old = {**res, "runs": [{k: v for k, v in r.items() if k not in dropped} for r in res["runs"]]}
    old_rows = {r["method"]: r for r in results.summarise(old)}
    assert not old_rows["SAM"]["validation"] and old_rows["SAM"]["val_mean"] is None
    assert old_rows["SAM"]["last5_mean"] == pytest.approx(rows["SAM"]["last5_mean"])  # recomputed from the history
    oracle = [max(h["test_acc"] for h in r["history"]) for r in res["runs"] if r["method"] == "SAM"]
    assert old_rows["SAM"]["oracle_mean"] == pytest.approx(statistics.mean(oracle))  # from the history
    old_table = results.table_markdown([old])
    assert "—†" in old_table and old_table.endswith(results.OLD_FILE_NOTE)


@pytest.mark.slow
def test_run_parallel_workers_write_the_file_one_process_writes(tmp_path, monkeypatch):
    """--jobs 2: each (method, seed) in its own subprocess; the merged file has the same runs as one process."""
    exp = experiments.get("logit-jacobian-30", "smoke")
    only = ["SGD", "SAM"]
    one = runner.run("logit-jacobian-30", "smoke", only=only, results_root=tmp_path / "one" / "results",
                     checkpoint_root=tmp_path / "one" / "ckpt", progress=False)
    monkeypatch.setenv("SAMLAB_DATA", str(tmp_path / "par"))
    assert runner.main(["run", "logit-jacobian-30", "--profile", "smoke", "--only", ",".join(only), "--jobs", "2"]) == 0
    par = json.loads((tmp_path / "par" / "results" / "smoke" / "logit-jacobian-30.json").read_text())
    key = lambda r: (r["method"], r["seed"])  # noqa: E731
    assert sorted(map(key, par["runs"])) == sorted(map(key, one["runs"])) == [(m, s) for m in sorted(only) for s in exp.seeds]
    for a, b in zip(sorted(par["runs"], key=key), sorted(one["runs"], key=key)):
        assert [r["test_acc"] for r in a["history"]] == [r["test_acc"] for r in b["history"]]
    with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
        runner.run_parallel("logit-jacobian-30", "smoke", jobs=0)


def test_a_run_another_experiment_trained_is_stored_once_not_retrained(tmp_path, tiny, monkeypatch):
    kw = dict(results_root=tmp_path / "r", checkpoint_root=tmp_path / "c", progress=False)
    twin = lambda profile: dataclasses.replace(  # noqa: E731
        tiny(profile), name="tiny-twin", description="another comparison on the same data",
        methods={"SGD": {"method": "sgd"}, "SAM ρ=0.1": {"method": "sam", "rho": 0.1}, "sam": {"method": "sam", "rho": 0.05}})
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny-twin", twin)
    assert experiments.shared_runs(twin("smoke"), tiny("smoke")) == {"SGD": "SGD", "sam": "SAM"}
    assert runner.shared_finished(twin("smoke"), "smoke", tmp_path / "r") == {}  # nothing trained yet
    first = runner.run("tiny", "smoke", **kw)
    real_fit, calls = train.fit, []

    def counting_fit(model, method, data, config):
        calls.append((method.config().get("rho"), config.seed))
        return real_fit(model, method, data, config)

    monkeypatch.setattr(train, "fit", counting_fit)
    res = runner.run("tiny-twin", "smoke", **kw)
    results.write(tmp_path / "twin-as-returned.json", res)  # as JSON (NaN -> null), to compare with a loaded file
    assert calls == [(0.1, 0), (0.1, 1)]  # only the new configuration was trained
    assert len(first["runs"]) == 4
    saved_first = json.loads((tmp_path / "r" / "smoke" / "tiny.json").read_text())
    original = {(r["method"], r["seed"]): r for r in saved_first["runs"]}
    for r in res["runs"]:
        if r["method"] == "SAM ρ=0.1":
            assert "shared_from" not in r
            continue
        src = original[("SAM" if r["method"] == "sam" else "SGD", r["seed"])]
        assert r["shared_from"] == {"experiment": "tiny", "method": src["method"]}
        assert r["history"] == src["history"] and r["git_commit"] == src["git_commit"]
    raw = json.loads((tmp_path / "r" / "smoke" / "tiny-twin.json").read_text())
    assert [r.get("shared_from", {}).get("experiment") for r in raw["runs"]] == ["tiny", "tiny", None, None, "tiny", "tiny"]
    # the file holds a reference, not a second copy of the history ...
    for r in raw["runs"]:
        assert ("history" in r) == ("shared_from" not in r)
        if "shared_from" in r:
            assert set(r) == {"method", "seed", "method_config", "fit_overrides", "shared_from", "digest"}
    # ... and loading it reads the stored run from tiny's file, under this experiment's label
    saved = results.load("tiny-twin", "smoke", tmp_path / "r")
    assert saved["runs"] == json.loads((tmp_path / "twin-as-returned.json").read_text())["runs"]
    assert results.committed("smoke", "tiny-twin", tmp_path / "r") == saved
    # the notebook's note names each shared label, its seeds and where it was trained
    assert results.shared_note(saved, root=tmp_path / "r").splitlines() == [
        "SGD seeds 0, 1: the runs of tiny's 'SGD' (same settings, trained once and stored there)",
        "sam seeds 0, 1: the runs of tiny's 'SAM' (same settings, trained once and stored there)"]
    # ... and the source's note names where its runs are used (read from the other result files)
    assert results.shared_note(saved_first, root=tmp_path / "r").splitlines() == [
        "SAM seeds 0, 1: also the runs of tiny-twin's 'sam' (stored here, read there)",
        "SGD seeds 0, 1: also the runs of tiny-twin's 'SGD' (stored here, read there)"]
    # a third experiment sharing the twin's label refers to the file that stores the run, not to the twin
    # an experiment that sorts first refers through the twin's references to the file that stores each run
    first_name = lambda profile: dataclasses.replace(  # noqa: E731
        twin(profile), name="a-first", methods={"s": {"method": "sam", "rho": 0.05}, "r": {"method": "sam", "rho": 0.1}})
    monkeypatch.setitem(experiments.EXPERIMENTS, "a-first", first_name)
    calls.clear()
    third = runner.run("a-first", "smoke", **kw)
    assert calls == [] and [(r["method"], r["shared_from"]) for r in third["runs"]] == [
        ("s", {"experiment": "tiny", "method": "SAM"})] * 2 + [("r", {"experiment": "tiny-twin", "method": "SAM ρ=0.1"})] * 2
    # ... and one that finds the run first in a-first's file (a reference) still refers to tiny, which stores it
    chain = lambda profile: dataclasses.replace(twin(profile), name="b-chain", methods={"x": {"method": "sam", "rho": 0.05}})  # noqa: E731
    monkeypatch.setitem(experiments.EXPERIMENTS, "b-chain", chain)
    assert runner.shared_finished(chain("smoke"), "smoke", tmp_path / "r")[("x", 0)][0] == "a-first"
    assert [r["shared_from"] for r in runner.run("b-chain", "smoke", **kw)["runs"]] == [{"experiment": "tiny", "method": "SAM"}] * 2
    assert calls == []
    # --no-share trains everything
    calls.clear()
    runner.run("tiny-twin", "smoke", share=False, results_root=tmp_path / "r2", checkpoint_root=tmp_path / "c2", progress=False)
    assert len(calls) == 6


def test_retraining_the_experiment_that_stores_a_shared_run_loses_no_run_another_file_shows(tmp_path, tiny, monkeypatch):
    kw = dict(results_root=tmp_path / "r", checkpoint_root=tmp_path / "c", progress=False)
    twin = lambda profile: dataclasses.replace(tiny(profile), name="tiny-twin", methods={"sam": {"method": "sam", "rho": 0.05}})  # noqa: E731
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny-twin", twin)
    runner.run("tiny", "smoke", **kw)
    shown = runner.run("tiny-twin", "smoke", **kw)["runs"]
    assert [r["shared_from"]["experiment"] for r in shown] == ["tiny", "tiny"]
    # tiny is trained again for 3 epochs (a change of every run): the twin's file gets its own copies first
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", lambda profile: tiny_experiment(epochs=3))
    runner.run("tiny", "smoke", **kw)
    assert all(len(r["history"]) == 4 for r in results.load("tiny", "smoke", tmp_path / "r")["runs"])
    assert results.load("tiny-twin", "smoke", tmp_path / "r")["runs"] == json.loads(json.dumps(shown))
    raw = json.loads((tmp_path / "r" / "smoke" / "tiny-twin.json").read_text())["runs"]
    assert [len(r["history"]) for r in raw] == [3, 3]   # copies of the 2-epoch runs, kept
    assert results.shared_note(results.load("tiny-twin", "smoke", tmp_path / "r"), root=tmp_path / "r") == (
        "sam seeds 0, 1: the runs of tiny's 'SAM' (same settings, trained once; a copy is kept here)")
    # a new 2-epoch experiment finds those runs in the twin's file, and refers to the twin, which stores them now
    third = lambda profile: dataclasses.replace(twin(profile), name="tiny-third", methods={"x": {"method": "sam", "rho": 0.05}})  # noqa: E731
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny-third", third)
    got = runner.run("tiny-third", "smoke", **kw)["runs"]
    assert [r["shared_from"] for r in got] == [{"experiment": "tiny-twin", "method": "sam"}] * 2
    assert [r["history"] for r in got] == [r["history"] for r in json.loads(json.dumps(shown))]
    assert results.shared_note(results.load("tiny-twin", "smoke", tmp_path / "r"), root=tmp_path / "r").splitlines()[1:] == [
        "sam seeds 0, 1: also the runs of tiny-third's 'x' (stored here, read there)"]
    # a twin whose source file is gone: its references are not finished any more, and a run trains them
    twin2 = lambda profile: dataclasses.replace(tiny_experiment(epochs=3), name="twin-2", methods={"SGD": {"method": "sgd"}})  # noqa: E731
    monkeypatch.setitem(experiments.EXPERIMENTS, "twin-2", twin2)
    assert all("shared_from" in r for r in runner.run("twin-2", "smoke", **kw)["runs"])
    (tmp_path / "r" / "smoke" / "tiny.json").unlink()
    with pytest.raises(ValueError, match="that file does not exist"):
        results.load("twin-2", "smoke", tmp_path / "r")
    path = results.path("twin-2", "smoke", tmp_path / "r")
    assert runner.finished(path, twin2("smoke").config()) == {}
    again = runner.run("twin-2", "smoke", **kw)["runs"]
    assert [("shared_from" in r, len(r["history"])) for r in again] == [(False, 4), (False, 4)]   # trained anew


def test_describe_names_every_commit_that_trained_the_files_own_runs():
    head = {"dataset": "d", "date": "2026-11-30", "hardware": "CPU", "samlab": "0.1.0", "git_commit": "bbb",
            "command": "python -m samlab.experiments run x"}
    run = lambda commit, **kw: {"method": "SGD", "seed": 0, "git_commit": commit, **kw}  # noqa: E731
    one = results.describe({**head, "runs": [run("bbb"), run("bbb")]})
    assert one.splitlines() == ["d", "run of 2026-11-30 on CPU, samlab 0.1.0 (bbb)", "command: python -m samlab.experiments run x"]
    # a run shared from another file (resolved by results.load) is that file's: its commit is not counted here
    shared = results.describe({**head, "runs": [run("bbb"), run("zzz", shared_from={"experiment": "y", "method": "SGD"})]})
    assert shared == one
    mixed = results.describe({**head, "runs": [run("aaa"), run("bbb"), run("aaa")]}).splitlines()
    assert mixed[2] == "its runs were trained at: aaa (2 runs), bbb (1 run)" and mixed[3].startswith("command:")
    other = results.describe({**head, "runs": [run("aaa")]}).splitlines()   # the file last written at another commit
    assert other[2] == "its runs were trained at: aaa (1 run)"
