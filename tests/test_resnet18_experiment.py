"""Notebook 04's experiment definition, and why it uses GroupNorm."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from samlab import data, experiments, methods, models, runner


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_resnet18_experiment_profiles(profile):
    exp = experiments.get("resnet18-cifar10-30", profile)
    assert exp.model == "resnet18" and exp.model_options["norm"] == "gn"
    assert exp.noise == "symmetric-flip" and exp.rate == 0.3
    assert set(exp.methods) == {"SGD", "SAM", "1-SAM", "J-SAM", "reg SGD"}
    assert exp.methods["1-SAM"]["m"] == 1 and exp.methods["J-SAM"]["per_example"]
    for cfg in exp.methods.values():
        methods.get({k: v for k, v in cfg.items() if k != "fit"})  # every method builds
    assert exp.fit["schedule"] == "cosine"
    if profile == "gpu":
        assert exp.dataset == "cifar10" and exp.model_options == {"norm": "gn"}  # full width
        assert exp.fit == {"epochs": 200, "lr": 0.01, "batch_size": 128, "schedule": "cosine", "augment": True,
                           "image_storage": "uint8", "memory_format": "channels_last"}
    if profile == "smoke":
        assert exp.dataset == "digits" and exp.data_options == {"images": True}


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_mini_variant_is_the_gpu_protocol_on_cifar10_mini(profile):
    """resnet18-cifar10-mini-30 changes only the data of the gpu protocol; elsewhere it is the parent."""
    parent, mini = experiments.get("resnet18-cifar10-30", profile), experiments.get("resnet18-cifar10-mini-30", profile)
    assert mini.name == "resnet18-cifar10-mini-30"
    if profile != "gpu":
        assert dataclasses.replace(mini, name=parent.name) == parent
        return
    assert mini.dataset == "cifar10-mini" and mini.seeds == parent.seeds == experiments.SEEDS
    assert dataclasses.replace(mini, name=parent.name, dataset=parent.dataset, seeds=parent.seeds,
                               description=parent.description) == parent


def test_run_all_trains_the_mini_variant_only_where_it_differs():
    names = sorted(experiments.EXPERIMENTS)
    for profile in ("smoke", "cpu"):
        keep, same = runner.distinct(names, profile)
        assert same == {"resnet18-cifar10-mini-30": "resnet18-cifar10-30"}
        assert keep == [n for n in names if n != "resnet18-cifar10-mini-30"]
    assert runner.distinct(names, "gpu") == (names, {})


def _grads(model, method, x, y):
    model.zero_grad()
    method.gradient(model, x, y)
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("norm, same", [("gn", True), ("bn", False)])
def test_per_example_methods_at_rho_zero_are_sgd_only_without_batchnorm(norm, same):
    """With BatchNorm, per-example gradients (batch statistics held fixed) drop the gradient through
    the statistics, so even at ρ = 0 1-SAM is not SGD: the reason notebook 04 uses GroupNorm."""
    ds = data.load("digits", images=True)
    x, y = ds.x_train[:32], ds.y_train[:32]
    model = models.build("resnet18", ds.input_shape, ds.num_classes, seed=0, width=4, norm=norm).double()
    x = x.double()
    sgd = _grads(model, methods.get("sgd"), x, y)
    one_sam = _grads(model, methods.get("sam", rho=0.0, m=1), x, y)
    assert torch.allclose(sgd, one_sam, rtol=1e-6, atol=1e-9) == same
