"""Per-example losses and predictions, for K-class and single-logit models.

Taught in notebook 00 (cross-entropy) and notebook 01 (the logistic loss with labels ±1).

A model with one output per example (logits of shape ``(N,)``) is a binary classifier
with labels in {0, 1}, trained with the logistic loss log(1 + exp(-ỹ z)), ỹ = 2y - 1.
A model with logits of shape ``(N, K)`` is trained with cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["per_example_loss", "predictions", "signed_labels"]


def signed_labels(y: torch.Tensor) -> torch.Tensor:
    """Labels {0, 1} -> {-1, +1}."""
    return 2.0 * y.to(torch.float32) - 1.0


def per_example_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for ``(N, K)`` logits, logistic loss for ``(N,)`` logits; shape ``(N,)``."""
    if logits.ndim == 1 or (logits.ndim == 0):
        return F.softplus(-signed_labels(y).to(logits.dtype) * logits)
    if logits.ndim != 2 or logits.shape[0] != y.shape[0]:
        raise ValueError(f"logits must have shape (N, K) or (N,) matching y {tuple(y.shape)}, got {tuple(logits.shape)}")
    return F.cross_entropy(logits, y, reduction="none")


def predictions(logits: torch.Tensor) -> torch.Tensor:
    """Predicted class: the sign for single-logit models, the argmax otherwise."""
    if logits.ndim <= 1:
        return (logits > 0).long()
    return logits.argmax(dim=-1)
