"""What a method costs, read from a benchmark: method config → benchmark variant, a result's cost
ratios, the project's goals, and the hours an experiment needs.

:data:`VARIANTS` names every configuration :mod:`samlab.bench.timing` times; :func:`variant_of`
maps an experiment's method config back to one of them (by the options that change a step's cost,
not its coefficients), :func:`bench_costs` reads a result's cost per method from a benchmark record,
and :func:`training_hours` turns one into hours of training (notebook 04). :data:`TARGETS` holds
the project's goals as ratios to SGD.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TARGETS", "VARIANTS", "bench_costs", "targets_for", "training_hours", "variant_of"]

#: label -> (registered method name, hyperparameters). Registered methods not named here
#: are benchmarked with their defaults under their own name.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("sgd", {}),
    "sam": ("sam", {"rho": 0.05}),
    "1-sam": ("sam", {"rho": 0.05, "m": 1}),
    "1-sam[vmap]": ("sam", {"rho": 0.05, "m": 1, "engine": "vmap"}),
    "asam": ("sam", {"rho": 0.5, "adaptive": True}),
    "lsam": ("lsam", {"rho": 0.05}),
    "lsam-1": ("lsam", {"rho": 0.05, "per_example": True}),
    "lsam-1[vmap]": ("lsam", {"rho": 0.05, "per_example": True, "engine": "vmap"}),
    "jsam": ("jsam", {"rho": 0.05}),
    "jsam-1": ("jsam", {"rho": 0.05, "per_example": True}),
    "jsam-1[vmap]": ("jsam", {"rho": 0.05, "per_example": True, "engine": "vmap"}),
    "fsam": ("fsam", {}),
    "obf": ("obf", {}),
    "obf[loop]": ("obf", {"engine": "loop"}),
    "saner(sam)": ("saner", {"inner": {"method": "sam", "rho": 0.1}}),
    "saner(1-sam)": ("saner", {"inner": {"method": "sam", "rho": 0.1, "m": 1}}),
    "saner(1-sam)[vmap]": ("saner", {"inner": {"method": "sam", "rho": 0.1, "m": 1, "engine": "vmap"}}),
    "saner(fsam)": ("saner", {"inner": {"method": "fsam"}}),
    "regsgd": ("regsgd", {}),
    "regsgd-weighted": ("regsgd", {"weighted": True}),
}


def _shape(name: str, cfg: dict[str, Any]) -> tuple[Any, ...]:
    """What decides a method's cost per step: its name and structural options, not its coefficients.

    The engine counts: "vmap" (per-example methods) and "loop" (OBF) are the older engines;
    "auto", "exact" or no field, the exact engine (configs written before the engine field
    existed ran the older engines: their costs are the ``[vmap]``/``[loop]`` variants').
    A wrapper's inner method counts by its own shape."""
    inner = cfg.get("inner")
    return (
        name,
        name == "sam" and cfg.get("m") == 1,
        bool(cfg.get("adaptive")),
        bool(cfg.get("per_example")),
        bool(cfg.get("weighted")),
        _shape(inner["method"], inner) if isinstance(inner, dict) and "method" in inner else None,
        cfg.get("engine") in ("vmap", "loop"),
    )


def variant_of(config: dict[str, Any]) -> str | None:
    """The benchmark label of a method config (``{"method": "sam", "rho": 0.01, "m": 1}`` → ``"1-sam"``),
    matched on the options that change the cost of a step (per-example or not, adaptive, weighted, the
    inner method of a wrapper, the engine), not on coefficients; ``None`` if no variant matches.
    The inverse of :data:`VARIANTS`, derived from it."""
    want = _shape(config["method"], config)
    return next((label for label, (name, kw) in VARIANTS.items() if _shape(name, kw) == want), None)


def bench_costs(result: dict[str, Any], bench_record: dict[str, Any]) -> dict[str, float]:
    """Cost of each method label of ``result`` relative to SGD, read from one model's benchmark record
    (its ``ratio_to_sgd``, by variant; see :func:`variant_of`). Labels with no timed variant are left out."""
    ratios = bench_record["ratio_to_sgd"]
    out: dict[str, float] = {}
    for label, cfg in result["config"]["methods"].items():
        variant = variant_of(cfg)
        if variant in ratios:
            out[label] = float(ratios[variant])
    return out


#: The project's goals, as the largest acceptable ratio to SGD at batch 128: ``(device type, model)``
#: -> label -> ratio, where ``"*"`` stands for any model (a model's own entry wins). The
#: per-example goals are those of the exact engine (issue 15); ``*[vmap]`` variants have none.
#: The two-pass and regulariser goals on the CPU were set for the small CNN (on notebook 03's
#: MLP a step takes about a millisecond and fixed costs dominate; only its per-example goals are set).
TARGETS: dict[tuple[str, str], dict[str, float]] = {
    ("cpu", "small-cnn-gn"): {"sam": 2.1, "jsam": 2.2, "regsgd": 1.15, "1-sam": 2.6, "jsam-1": 2.6, "lsam-1": 2.4},
    ("cpu", "small-cnn-bn"): {"sam": 2.1, "jsam": 2.2, "regsgd": 1.15, "1-sam": 3.0, "jsam-1": 3.0, "lsam-1": 3.0},
    ("cpu", "mlp-mnist"): {"1-sam": 3.0, "jsam-1": 3.0, "lsam-1": 3.0},
    ("cuda", "*"): {"sam": 2.15, "jsam": 2.2, "regsgd": 1.15, "asam": 2.3, "fsam": 2.3, "saner(sam)": 2.3, "obf": 2.4},
    ("cuda", "resnet18-gn"): {"1-sam": 4.0},
}


def targets_for(model: str, device_type: str) -> dict[str, float]:
    """The goals (label -> largest ratio to SGD) that apply to ``model`` on a device of ``device_type``."""
    return {**TARGETS.get((device_type, "*"), {}), **TARGETS.get((device_type, model), {})}


def training_hours(
    methods: dict[str, dict[str, Any]], record: dict[str, Any], *, n_train: int, batch: int, epochs: int, seeds: int = 1
) -> dict[str, float]:
    """Hours of training steps each method label of ``methods`` (an experiment's method configs) needs,
    estimated from one benchmark ``record`` (notebook 04): SGD's ms per step × the method's ratio to SGD
    (:func:`bench_costs`) × ``n_train // batch`` steps per epoch (as :func:`samlab.train.fit`)
    × ``epochs`` × ``seeds``. Evaluation and start-up are left out, so it is a lower bound. Labels whose
    method the benchmark did not time are left out."""
    if record["batch"] != batch:
        raise ValueError(f"batch must be the benchmark's batch ({record['batch']}) for its times to apply, got {batch}")
    if n_train < 1 or epochs < 1 or seeds < 1:
        raise ValueError(f"n_train, epochs and seeds must be >= 1, got {n_train}, {epochs}, {seeds}")
    costs = bench_costs({"config": {"methods": methods}}, record)
    steps = max(1, n_train // batch) * epochs * seeds
    return {label: ratio * record["ms_per_step"]["sgd"] * steps / 3.6e6 for label, ratio in costs.items()}
