"""Confusion matrices: counts of (true class, other label) pairs, for the noise and for a model.

Every result file records the noise's confusion (true vs observed training labels) and
each run's final test confusion (true vs predicted); notebook 07 reads them.
"""

from __future__ import annotations

import torch

__all__ = ["confusion", "confusion_counts"]


def confusion_counts(y_true: torch.Tensor, y_other: torch.Tensor, num_classes: int) -> list[list[int]]:
    """Counts C[i][j] of examples with ``y_true == i`` and ``y_other == j``."""
    if y_true.shape != y_other.shape:
        raise ValueError(f"y_true and y_other must have the same shape, got {tuple(y_true.shape)} and {tuple(y_other.shape)}")
    counts = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    counts.index_put_((y_true.cpu().long(), y_other.cpu().long()), torch.ones(len(y_true), dtype=torch.int64), accumulate=True)
    return counts.tolist()


@torch.no_grad()
def confusion(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, batch_size: int = 2048) -> list[list[int]]:
    """Counts C[i][j] of examples of class ``i`` (rows: the labels ``y``) predicted as ``j``."""
    was_training = model.training
    model.eval()
    preds = []
    for i in range(0, len(x), batch_size):
        out = model(x[i : i + batch_size])
        preds.append(out.argmax(-1) if out.ndim == 2 and out.shape[-1] > 1 else (out.reshape(-1) > 0).long())
    model.train(was_training)
    return confusion_counts(y, torch.cat(preds), num_classes)
