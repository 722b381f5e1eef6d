"""FLOPs of one training step of every method, and the arithmetic model of the GPU case.

``--flops`` counts instead the FLOPs of one step of every method (:func:`count_flops`:
torch's ``FlopCounterMode``, matrix products and convolutions only, on the CPU; the exact
engine's convolutions counted in their unfold form), and their ratio to SGD's: the
arithmetic floor under each time ratio, and, for ``resnet18-gn``, the FLOP side of the GPU
case (below) measured rather than modelled.

FLOP and memory model of the GPU case (to be measured; no GPU this session). Per conv
layer with I = C_in·k² inputs per patch, O = C_out, L output positions, batch B, let
F = 2·B·L·I·O be its forward FLOPs; SGD costs ≈ 3F (forward, input and weight
gradients), whole-batch SAM ≈ 6F. The exact engine's 1-SAM: forward F; output gradients
only, ≈ F; then per layer either the per-example gradients G_i = D_i U_iᵀ (F) and the
added term c_i G_i U'_i in the second forward (F) and its input gradient in the second
backward (F), or, where R(I + O) < I·O with R = L rows per example (the deep layers:
ResNet-18's stages 3–4 at 32×32), the ghost form whose Gram products cost
≈ 6·B·L²(I + O) ≪ F; plus the second forward and backward (3F). So ≈ 8F (≈ 2.7× SGD) on
materialised layers and ≈ 5F (≈ 1.7×) on ghost layers, with im2col traffic (k²× the
layer's input, twice, plus col2im) on top; the vmap engine does similar FLOPs but as
grouped convolutions with B groups, which run far below peak (21× SGD measured on an
H100). Memory beyond SAM's two passes: B × (parameters of the materialised layers) for
G and again for ε (ResNet-18 width 64: ≈ 0.7M such parameters, ≈ 0.7 GB in fp32 at
B = 128), the unfolded inputs of the ghost layers until the second pass (≈ 0.3 GB), and
B·L² Gram entries — against B × all 11M parameters (≈ 5.6 GB per copy) for vmap.
``chunk_size`` bounds both engines by processing the batch in groups. Materialised convs
use unfold + batched matmul on CUDA; ``samlab.methods.exact.CONV_BACKEND["cuda"] =
"grouped"`` times the grouped-convolution form the CPU uses instead.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from samlab.bench.timing import _model_and_batch, _Runner, _where
from samlab.methods import exact

__all__ = ["count_flops"]

@contextlib.contextmanager
def _countable_convolutions():
    """The exact engine's materialised convolutions as unfold + batched matmul, on every device, while
    FLOPs are counted: torch's counter leaves a convolution's ``groups`` out of its backward, and so
    counts the backward of the grouped form (B groups) B times too high; unfold + batched matmul is the
    same arithmetic, counted right."""
    saved = dict(exact.CONV_BACKEND)
    exact.CONV_BACKEND.clear()
    try:
        yield
    finally:
        exact.CONV_BACKEND.clear()
        exact.CONV_BACKEND.update(saved)


def count_flops(model_key: str, methods_by_label: dict[str, Any], *, batch: int = 128, seed: int = 0) -> dict[str, Any]:
    """FLOPs of one training step of every method on model ``model_key``, on the CPU, the same model
    and batch as :func:`bench_model`; returns the JSON record.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` on each method's second step (the first
    sets up state such as F-SAM's average): the matrix products and convolutions, forward and
    backward, that torch's counter knows; elementwise work (norms, activations, pooling, the
    optimiser) is not counted. A method's ratio to SGD is therefore the ratio of the arithmetic a
    fast kernel must do, the floor its time ratio approaches when that arithmetic dominates. On a
    model with convolutions the vmap engine (``[vmap]`` labels) is skipped: its per-example
    convolutions are grouped, whose backward the counter does not count right (see
    :func:`_countable_convolutions`).
    """
    from torch.utils.flop_counter import FlopCounterMode

    model, x, y = _model_and_batch(model_key, batch, seed)
    convolutional = any(isinstance(m, nn.Conv2d) for m in model.modules())
    flops: dict[str, int] = {}
    skipped: dict[str, str] = {}
    with _countable_convolutions():
        for label, method in methods_by_label.items():
            if label.endswith("[vmap]") and convolutional:
                skipped[label] = "vmap's per-example convolutions are grouped: torch's counter miscounts their backward"
                continue
            runner = _Runner(method, model, seed)
            try:
                runner.step(x, y, timed=False)
                counter = FlopCounterMode(display=False)
                with counter:
                    runner.step(x, y, timed=False)
            except Exception as exc:  # a method that cannot run on this model is reported, not fatal
                skipped[label] = f"failed: {type(exc).__name__}: {exc}"
                continue
            flops[label] = int(counter.get_total_flops())
    base = flops.get("sgd")
    return {
        "device": _where(torch.device("cpu")),
        "model": model_key,
        "batch": batch,
        "flops_per_step": flops,
        "flop_ratio_to_sgd": {k: round(v / base, 3) for k, v in flops.items()} if base else {},
        "skipped": skipped,
    }
