"""Classifiers that expose ``features(x)`` (penultimate activations) and ``head``.

Taught across the path: ``LinearModel`` in notebook 01, ``DeepLinear`` (two- and
three-layer linear networks) in notebook 02, ``SmallCNN`` in notebooks 00 and 03,
``resnet18`` in notebook 04.

Every model computes ``forward(x) = head(features(x))``. The regularisers of notebook 05
and the analysis read ``features`` and ``head`` directly. A model with ``num_classes=1``
outputs one logit per example, trained with the logistic loss (see :mod:`samlab.losses`).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MODELS", "Classifier", "LinearModel", "DeepLinear", "MLP", "SmallCNN", "ResNet18", "build"]


class Classifier(nn.Module):
    """Base class: subclasses set ``self.head`` and implement ``features``."""

    head: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x))
        return out.squeeze(-1) if self.head.out_features == 1 else out


class LinearModel(Classifier):
    """z = w^T x (+ b): the model of notebook 01. ``features`` is the flattened input."""

    def __init__(self, in_features: int, num_classes: int = 1, bias: bool = False):
        super().__init__()
        self.head = nn.Linear(in_features, num_classes, bias=bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class DeepLinear(Classifier):
    """A deep *linear* network f = v^T W_L ... W_1 x (no biases, no nonlinearity).

    ``depth=2`` is the two-layer network f = v^T W x of notebook 02; ``features`` is the
    last hidden activation (``W x`` for depth 2), ``head`` is ``v``.
    """

    def __init__(self, in_features: int, hidden: int, num_classes: int = 1, depth: int = 2):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2 (use LinearModel for depth 1), got depth={depth}")
        dims = [in_features] + [hidden] * (depth - 1)
        self.body = nn.Sequential(*[nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:])])
        self.head = nn.Linear(hidden, num_classes, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))


class MLP(Classifier):
    """A ReLU multilayer perceptron on flattened inputs."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 256, depth: int = 2):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got depth={depth}")
        layers: list[nn.Module] = []
        d = in_features
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        # about 4 channels per group, at most 32 groups; the group count must divide the channels
        groups = max(1, min(32, channels // 4))
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of ('bn', 'gn', 'none'), got norm={kind!r}")


class SmallCNN(Classifier):
    """Three conv blocks (conv-norm-ReLU-maxpool), global average pool, linear head.

    The CPU model of notebooks 00 and 03 (32-64-128 channels by default). ``norm="gn"``
    gives a GroupNorm variant in which per-example gradients are well defined.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, widths=(32, 64, 128), norm: str = "bn"):
        super().__init__()
        blocks: list[nn.Module] = []
        c = in_channels
        for w in widths:
            blocks += [nn.Conv2d(c, w, 3, padding=1, bias=False), _norm(norm, w), nn.ReLU(), nn.MaxPool2d(2)]
            c = w
        self.body = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = _norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = _norm(norm, cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(norm, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.n1(self.conv1(x)))
        return torch.relu(self.n2(self.conv2(out)) + self.short(x))


class ResNet18(Classifier):
    """ResNet-18 with the CIFAR stem (3×3 conv, no max-pool): the model of notebook 04."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, norm: str = "bn", width: int = 64):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 3, 1, 1, bias=False), _norm(norm, w), nn.ReLU())
        layers, cin = [], w
        for i, cout in enumerate((w, 2 * w, 4 * w, 8 * w)):
            stride = 1 if i == 0 else 2
            layers += [_BasicBlock(cin, cout, stride, norm), _BasicBlock(cout, cout, 1, norm)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(cin, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.layers(self.stem(x)))


MODELS = ("linear", "deep-linear", "mlp", "small-cnn", "resnet18")


def build(name: str, input_shape: tuple[int, ...], num_classes: int, seed: int = 0, **options) -> Classifier:
    """Build model ``name`` for inputs of ``input_shape`` (without the batch dimension).

    Weights are initialised from ``seed`` so that every method in a comparison starts
    from the same point.
    """
    if name not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got name={name!r}")
    if name in ("small-cnn", "resnet18") and len(input_shape) != 3:
        raise ValueError(f"{name} needs image inputs (C, H, W), got input_shape={input_shape}")
    flat = 1
    for s in input_shape:
        flat *= s
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "linear":
            return LinearModel(flat, num_classes, **options)
        if name == "deep-linear":
            return DeepLinear(flat, num_classes=num_classes, **options)
        if name == "mlp":
            return MLP(flat, num_classes, **options)
        if name == "small-cnn":
            return SmallCNN(input_shape[0], num_classes, **options)
        return ResNet18(input_shape[0], num_classes, **options)
