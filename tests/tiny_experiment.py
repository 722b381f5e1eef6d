"""The tiny experiment the runner and cluster tests train: two methods on noisy digits, two seeds."""

from __future__ import annotations

from samlab import experiments


def tiny_experiment(name: str = "tiny", epochs: int = 2, description: str = "two methods on noisy digits") -> experiments.Experiment:
    return experiments.Experiment(
        name=name,
        description=description,
        dataset="digits",
        noise="symmetric-flip",
        rate=0.3,
        model="mlp",
        model_options={"hidden": 16, "depth": 1},
        methods={"SGD": {"method": "sgd"}, "SAM": {"method": "sam", "rho": 0.05}},
        fit={"epochs": epochs, "lr": 0.05, "batch_size": 128},
        seeds=(0, 1),
    )
