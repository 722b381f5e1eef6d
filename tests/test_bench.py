"""The benchmark (samlab.bench): ms per step and ratios to SGD, throughput of the fast path, the
committed files and the README tables generated from them, and the method-config ↔ variant mapping."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from samlab import bench, fast, methods, models
from samlab.methods import exact


def _cost_run(method: str, at_val: float, last5: float, spe: float) -> dict:
    accuracies = {"test_at_val": at_val, "last5_test_acc": last5, "oracle_test_acc": at_val}
    return {"method": method, "seed": 0, "seconds_per_epoch": spe, **accuracies}


def test_throughput_measures_every_configuration():
    ds = fast.synthetic_images(n=64, n_test=16, seed=0)
    model = models.build("small-cnn", ds.input_shape, ds.num_classes, seed=0, widths=(4, 8))
    res = bench.throughput(model, methods.get("sgd"), ds, batch=32, steps=6, warmup=1)
    assert set(res) == {"default", "uint8", "uint8+channels_last"}
    for r in res.values():
        assert r["images_per_second"] > 0 and r["ms_per_step"] > 0
    assert "speed-up" in bench.throughput_table(res)


def test_bench_costs_map_method_configs_to_benchmark_variants():
    from samlab.claims import recovery

    result = {"config": {"methods": {"SGD": {"method": "sgd"}, "WD": {"method": "sgd", "fit": {"weight_decay": 5e-3}},
                                     "SAM": {"method": "sam", "rho": 0.05}, "1-SAM": {"method": "sam", "m": 1},
                                     "J-SAM": {"method": "jsam", "per_example": True},
                                     "regw": {"method": "regsgd", "weighted": True}, "odd": {"method": "nothing"},
                                     "S(F)": {"method": "saner", "inner": {"method": "fsam", "rho": 0.05}},
                                     "S(SAM)": {"method": "saner", "inner": {"method": "sam"}}}},
              "runs": [_cost_run("SGD", 0.5, 0.4, 10.0), _cost_run("SAM", 0.6, 0.5, 30.0), _cost_run("regw", 0.55, 0.45, 5.0)]}
    record = {"ratio_to_sgd": {"sgd": 1.0, "sam": 1.9, "1-sam": 3.8, "jsam-1": 4.1, "regsgd-weighted": 1.05,
                              "saner(fsam)": 2.02, "saner(sam)": 2.01}}
    costs = bench.bench_costs(result, record)
    assert costs == {"SGD": 1.0, "WD": 1.0, "SAM": 1.9, "1-SAM": 3.8, "J-SAM": 4.1, "regw": 1.05, "S(F)": 2.02, "S(SAM)": 2.01}
    rows = {r["method"]: r for r in recovery(result, costs=costs)}
    assert rows["SAM"]["cost"] == 1.9 and rows["regw"]["cost"] == 1.05 and rows["regw"]["cheap"]
    assert {r["method"]: r["cost"] for r in recovery(result)}["SAM"] == 3.0  # without costs: seconds per epoch


def test_bench_main_runs_and_ends_with_a_json_line(capsys):
    assert bench.main(["--models", "mlp", "--repeats", "1", "--warmup", "0", "--batch", "4"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    record = json.loads(out[-1])
    assert record["model"] == "mlp" and record["batch"] == 4
    for label in ("sgd", "fsam", "obf", "saner(sam)", "saner(fsam)", "regsgd"):
        assert record["ms_per_step"][label] > 0
    assert record["ratio_to_sgd"]["sgd"] == 1.0
    assert set(record["ms_per_step"]) | set(record["skipped"]) >= set(bench.VARIANTS)


def test_bench_out_file_holds_the_printed_records_and_provenance(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--models", "mlp", "--repeats", "1", "--warmup", "0", "--batch", "4", "--methods", "sam", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads(out.read_text())
    assert saved["records"] == [printed]
    assert saved["command"].startswith("python -m samlab.bench --models mlp")
    assert {"hardware", "git_commit", "date"} <= set(saved)


def test_readme_benchmark_table_is_generated_from_the_committed_file(readme_section):
    """The README's benchmark table is exactly what `make bench-table` writes from data/results/cpu/bench.json."""
    inside = readme_section(bench.README_MARKERS)
    assert inside == bench.committed_table().strip(), "run `make bench-table` and commit README.md"


def test_readme_gpu_benchmark_tables_are_generated_from_the_committed_files(readme_section):
    """The README's GPU tables are exactly what `make bench-table` writes from data/results/gpu/."""
    assert readme_section(bench.README_GPU_MARKERS) == bench.committed_gpu_tables().strip(), "run `make bench-table`"


def test_committed_gpu_benchmark_is_self_consistent():
    """Each ratio in data/results/gpu/bench.json is its method's ms/step over SGD's (rounded), and each target
    says met exactly when the ratio is within it."""
    saved = json.loads((Path(__file__).resolve().parents[1] / "data" / "results" / "gpu" / "bench.json").read_text())
    for rec in saved["records"]:
        ms = rec["ms_per_step"]
        for label, ratio in rec["ratio_to_sgd"].items():
            assert ratio == pytest.approx(ms[label] / ms["sgd"], abs=0.01), (rec["model"], label)
        for label, t in rec["targets"].items():
            assert t["met"] == (t["ratio"] <= t["max"]) and t["ratio"] == rec["ratio_to_sgd"][label]


def test_training_hours_by_hand():
    record = {"batch": 128, "ms_per_step": {"sgd": 10.0, "sam": 20.0}, "ratio_to_sgd": {"sgd": 1.0, "sam": 2.0, "jsam-1": 5.0}}
    cfg = {"SGD": {"method": "sgd"}, "SAM": {"method": "sam", "rho": 0.05},
           "J-SAM": {"method": "jsam", "rho": 0.01, "per_example": True}, "other": {"method": "zzz"}}
    # 1300 // 128 = 10 steps per epoch, 36 epochs, 2 seeds: 720 steps of 10 ms = 7.2 s = 0.002 h for SGD
    hours = bench.training_hours(cfg, record, n_train=1300, batch=128, epochs=36, seeds=2)
    assert hours == pytest.approx({"SGD": 0.002, "SAM": 0.004, "J-SAM": 0.010})
    with pytest.raises(ValueError, match="batch must be the benchmark's batch \\(128\\)"):
        bench.training_hours(cfg, record, n_train=1300, batch=64, epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        bench.training_hours(cfg, record, n_train=1300, batch=128, epochs=0)


def test_benchmark_markdown_table_by_hand():
    saved = {"command": "python -m samlab.bench", "hardware": "CPU", "date": "d", "git_commit": "c", "records": [
        {"model": "m", "device": "cpu", "batch": 4, "ms_per_step": {"sgd": 10.0, "sam": 21.0},
         "ratio_to_sgd": {"sgd": 1.0, "sam": 2.1}, "targets": {"sam": {"max": 2.0, "met": False}}}]}
    table = bench.markdown_table(saved)
    assert "| sam | 21 (2.10×) | ≤ 2× **missed** |" in table
    assert "| sgd | 10 (1.00×) |  |" in table
    two = {**saved, "records": [
        {"model": "a", "device": "cpu", "batch": 4, "ms_per_step": {"sgd": 10.0, "1-sam": 25.0}, "peak_mb": {"1-sam": 264.4},
         "ratio_to_sgd": {"sgd": 1.0, "1-sam": 2.5}, "targets": {"1-sam": {"max": 2.6, "met": True}}},
        {"model": "b", "device": "cpu", "batch": 4, "ms_per_step": {"sgd": 20.0, "1-sam[vmap]": 100.0},
         "ratio_to_sgd": {"sgd": 1.0, "1-sam[vmap]": 5.0}, "targets": {}}]}
    table = bench.markdown_table(two)
    assert "| 1-sam | 25 (2.50×, 264) | — | a ≤ 2.6× met |" in table
    assert "| 1-sam[vmap] | — | 100 (5.00×) |  |" in table


def test_targets_for_merges_the_model_goals_over_the_device_defaults():
    assert bench.targets_for("small-cnn-gn", "cpu")["1-sam"] == 2.6 and bench.targets_for("small-cnn-gn", "cpu")["sam"] == 2.1
    assert bench.targets_for("small-cnn-bn", "cpu")["lsam-1"] == 3.0
    assert bench.targets_for("mlp-mnist", "cpu") == {"1-sam": 3.0, "jsam-1": 3.0, "lsam-1": 3.0}
    assert "1-sam" not in bench.targets_for("resnet18", "cpu")
    assert bench.targets_for("resnet18-gn", "cuda")["1-sam"] == 4.0 and bench.targets_for("resnet18-gn", "cuda")["sam"] == 2.15


@pytest.mark.parametrize("label", list(bench.VARIANTS))
def test_variant_of_inverts_every_variant(label):
    """Each benchmark variant's own config maps back to it, whatever its coefficients."""
    name, kwargs = bench.VARIANTS[label]
    assert bench.variant_of({"method": name, **kwargs}) == label
    assert bench.variant_of({"method": name, **kwargs, "rho": 0.123}) == label


def test_variant_of_by_hand():
    assert bench.variant_of({"method": "sam", "rho": 0.01, "m": 1}) == "1-sam"
    assert bench.variant_of({"method": "sam", "rho": 0.01, "m": 4}) == "sam"  # m-SAM has no variant of its own
    assert bench.variant_of({"method": "obf", "m": 64}) == "obf"
    assert bench.variant_of({"method": "nothing"}) is None


def test_engine_variants_and_the_mnist_mlp(capsys):
    assert bench.variant_of({"method": "sam", "m": 1, "engine": "vmap"}) == "1-sam[vmap]"
    assert bench.variant_of({"method": "sam", "m": 1, "engine": "exact"}) == "1-sam"
    assert bench.variant_of({"method": "jsam", "per_example": True, "engine": "vmap"}) == "jsam-1[vmap]"
    assert bench.variant_of({"method": "saner", "inner": {"method": "sam", "m": 1}}) == "saner(1-sam)"
    assert bench.variant_of({"method": "obf", "m": 64, "engine": "loop"}) == "obf[loop]"
    args = ["--models", "mlp-mnist", "--repeats", "1", "--warmup", "0", "--batch", "4", "--methods", "1-sam,1-sam[vmap]"]
    assert bench.main(args) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["model"] == "mlp-mnist" and set(record["ms_per_step"]) == {"sgd", "1-sam", "1-sam[vmap]"}
    assert set(record["peak_mb"]) == set(record["ms_per_step"]) and all(v >= 0 for v in record["peak_mb"].values())


def test_relabel_names_the_engine_a_pre_engine_record_timed():
    old = {"model": "m", "ms_per_step": {"sgd": 1.0, "1-sam": 21.0, "obf": 4.0, "sam": 2.0},
           "ratio_to_sgd": {"sgd": 1.0, "1-sam": 21.0, "obf": 4.0, "sam": 2.0}, "targets": {"1-sam": {"max": 4.0, "met": False}}}
    new = bench.relabel(old)
    assert new["ratio_to_sgd"] == {"sgd": 1.0, "1-sam[vmap]": 21.0, "obf[loop]": 4.0, "sam": 2.0}
    assert "1-sam[vmap]" in new["targets"] and old["ratio_to_sgd"]["1-sam"] == 21.0  # the input is left alone
    # a config of today (exact engine) finds no GPU cost where none was measured
    assert bench.bench_costs({"config": {"methods": {"1-SAM": {"method": "sam", "m": 1}}}}, new) == {}
    both = {**old, "ms_per_step": {**old["ms_per_step"], "1-sam[vmap]": 30.0}}
    assert bench.relabel(both) is both


def test_count_flops_against_a_hand_count_on_an_mlp(capsys):
    """SGD's FLOPs counted by torch equal the hand count of the MLP's matrix products; SAM does exactly
    twice that; the exact engine's 1-SAM adds only the ghost form's O(B (I + O)) terms per layer (it
    never forms a per-example gradient, B·I·O each); the engine's convolution backend is back as it
    was; on a model with convolutions the vmap engine is skipped."""
    b, layers = 8, [(3 * 32 * 32, 64), (64, 64), (64, 10)]  # bench's "mlp": two hidden layers of 64
    forward = sum(2 * b * i * o for i, o in layers)
    sgd = 3 * forward - 2 * b * 3 * 32 * 32 * 64  # forward, weight and input gradients; no input gradient for the images
    before = dict(exact.CONV_BACKEND)
    built, _ = bench.build_methods(["sgd", "sam", "1-sam", "1-sam[vmap]"], b)
    rec = bench.count_flops("mlp", built, batch=b)
    assert rec["flops_per_step"]["sgd"] == sgd
    assert rec["flops_per_step"]["sam"] == 2 * sgd and rec["flop_ratio_to_sgd"]["sam"] == 2.0
    ghost = sum(10 * b * (i + o) for i, o in layers)  # a generous bound on the ghost form's products
    assert 2 * sgd < rec["flops_per_step"]["1-sam"] < 2 * sgd + ghost
    assert 2 * b * 3 * 32 * 32 * 64 > ghost  # so materialising the first layer's per-example gradients would fail the bound
    # no convolution, so vmap is counted: per-example weights make the same products as SAM's, B small ones each
    assert rec["flops_per_step"]["1-sam[vmap]"] == 2 * sgd
    assert exact.CONV_BACKEND == before
    cnn = bench.count_flops("small-cnn-gn", {k: built[k] for k in ("sgd", "1-sam[vmap]")}, batch=2)
    assert "1-sam[vmap]" in cnn["skipped"] and set(cnn["flops_per_step"]) == {"sgd"}
    # the CLI prints the same record last, and the README table shows it with the time ratio beside
    assert bench.main(["--flops", "--models", "mlp", "--batch", str(b), "--methods", "sam"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["flops_per_step"] == {"sgd": sgd, "sam": 2 * sgd}
    saved = {"command": "c", "hardware": "h", "date": "d", "git_commit": "g", "records": [printed]}
    timed = {"records": [{"model": "mlp", "ms_per_step": {"sgd": 1.0, "sam": 2.5}, "ratio_to_sgd": {"sgd": 1.0, "sam": 2.5},
                          "peak_mb": {}}]}
    table = bench.flops_markdown_table(saved, timed)
    assert f"| sam | {2 * sgd / 1e9:.3g} (2.00×; 2.50×) |" in table
