"""F-SAM, Friendly Sharpness-Aware Minimization (Li et al., CVPR 2024). Taught in notebook 06.

SAM's perturbation ε = ρ g/‖g‖ mixes a *full-gradient* component (the direction of the
expected gradient) and a *stochastic* component (the batch's deviation from it). F-SAM
argues that only the stochastic part helps, and removes an estimate of the full gradient,
an exponential moving average (EMA) of past batch gradients:

    d_t = g_t − σ m_{t−1}
    m_t = λ m_{t−1} + (1 − λ) g_t
    ε   = ρ d_t/‖d_t‖,   descend with ∇L_B(w + ε)

with g_t = ∇L_B(w_t) the batch gradient. As in the official code (nblt/F-SAM), the EMA
starts at the first gradient: at the first step m_1 = g_1 and d_1 = g_1 (a plain SAM step).
σ = 0 is SAM exactly. Defaults σ = 1, λ = 0.95 (the authors later use λ = 0.6 for
CIFAR-100), ρ = 0.1.

The EMA is the method's state: :meth:`FSAM.state_dict` returns it (tensors), so that a
run resumed from a checkpoint takes exactly the step the uninterrupted run would have
taken. ``start_epoch(0, ...)`` (the start of a fresh run in :func:`samlab.train.fit`)
clears it. ``StepInfo.extras["cos_g_ema"]`` is the cosine between g_t and m_{t−1}
(NaN at the first step), the quantity notebook 06 plots: how much of the batch gradient
the EMA explains.

Cost: as SAM (two forward and two backward passes) plus one parameter-sized EMA buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from samlab.methods.base import (
    Method,
    RngReplay,
    StepInfo,
    acc_dtype,
    ascent,
    check_rho,
    descend_at,
    first_pass,
    grad_norm,
    trainable,
)
from samlab.methods.registry import register

__all__ = ["FSAM"]


@register
@dataclass
class FSAM(Method):
    """F-SAM: SAM whose perturbation direction is g_t − σ m_{t−1} (see the module docstring).

    Fields: ``rho`` (≥ 0), ``sigma`` in [0, 1] (how much of the EMA is removed; 0 gives
    SAM, 1 removes the whole estimated full gradient, the paper's default), ``lam`` in
    [0, 1) (the EMA's decay).
    """

    name = "fsam"
    #: SANER may read the SGD gradient from this method's first backward pass (no extra pass).
    first_pass_is_sgd = True
    rho: float = 0.1
    sigma: float = 1.0
    lam: float = 0.95

    def __post_init__(self) -> None:
        check_rho(self.rho)
        if not 0 <= self.sigma <= 1:
            raise ValueError(f"sigma must be in [0, 1], got sigma={self.sigma}")
        if not 0 <= self.lam < 1:
            raise ValueError(f"lam must be in [0, 1), got lam={self.lam}")
        self._ema: list[torch.Tensor | None] | None = None
        self._steps = 0

    def start_epoch(self, epoch: int, num_epochs: int) -> None:
        if epoch == 0:  # a fresh run: forget any EMA left from an earlier one
            self._ema, self._steps = None, 0

    def direction(self, grads: list[torch.Tensor | None]) -> tuple[list[torch.Tensor | None], float]:
        """d_t = g_t − σ m_{t−1} from the batch gradient ``grads``; updates the EMA in place.

        Returns d_t and the cosine between g_t and m_{t−1} (NaN when there is no EMA yet).
        Parameters seen for the first time start their EMA at their gradient (d = g there).
        """
        if self._ema is None:
            self._ema = [None] * len(grads)
        if len(self._ema) != len(grads):
            raise ValueError(
                f"fsam's EMA has {len(self._ema)} entries but the model has {len(grads)} trainable parameters; "
                "was the state loaded from another model?"
            )
        out: list[torch.Tensor | None] = []
        sums: list[torch.Tensor] = []  # per parameter: (g·m, ‖g‖², ‖m‖²), summed once at the end
        for i, g in enumerate(grads):
            if g is None:
                out.append(None)
                continue
            m = self._ema[i]
            if m is None:
                self._ema[i] = g.detach().clone()
                out.append(g)
                continue
            m = m.to(device=g.device, dtype=g.dtype)
            ga, ma = g.to(acc_dtype(g)), m.to(acc_dtype(m))
            sums.append(torch.stack([(ga * ma).sum(), ga.square().sum(), ma.square().sum()]))
            out.append(g - self.sigma * m)
            self._ema[i] = m.mul_(self.lam).add_(g, alpha=1 - self.lam)
        self._steps += 1
        if not sums:
            return out, float("nan")
        dot, gg, mm = torch.stack([t.to(sums[0]) for t in sums]).sum(0).double().tolist()
        return out, dot / max((gg * mm) ** 0.5, 1e-300)

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepInfo:
        rng = RngReplay(x.device)
        logits, losses = first_pass(model, x, y)
        grads = [p.grad for p in trainable(model)]
        norm = grad_norm(grads)
        d, cos = self.direction(grads)
        eps, d_norm = ascent(d, self.rho)
        descend_at(model, x, y, eps, rng)
        return StepInfo(
            logits=logits, losses=losses, grad_norm=float(norm), extras={"cos_g_ema": cos, "d_norm": float(d_norm)}
        )

    def state_dict(self) -> dict[str, Any]:
        ema = None if self._ema is None else [None if t is None else t.detach().clone() for t in self._ema]
        return {"ema": ema, "steps": self._steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            self._ema, self._steps = None, 0
            return
        if set(state) != {"ema", "steps"}:
            raise ValueError(f"fsam state must have keys ['ema', 'steps'], got {sorted(state)}")
        ema = state["ema"]
        self._ema = None if ema is None else [None if t is None else t.detach().clone() for t in ema]
        self._steps = int(state["steps"])
