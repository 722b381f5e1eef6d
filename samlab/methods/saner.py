"""SANER (Luong et al., AISTATS 2026): SAM's element-wise gradient down-weighting, made explicit.

Taught in notebook 06.

Luong et al. compare SAM's gradient with SGD's element by element. With g the SGD
gradient at w and g̃ the SAM-like gradient, r = g̃/(g + 1e-8) (element-wise) splits the
parameters in three groups:

* **amplified** r ≥ 1: SAM pushes further than SGD in that coordinate;
* **shrunk** 0 < r < 1: same sign, SAM down-weights it — where, by their analysis, noisy
  gradients dominate;
* **flipped** r ≤ 0: SAM reverses (or zeroes) SGD's direction.

SANER multiplies the *shrunk* entries of g̃ by α_t and keeps all others, so it stacks on
any SAM variant (``inner``: SAM by default, F-SAM, ASAM, ...). α_t falls linearly from 1 to
``alpha`` over the first ``k`` epochs: α_t = 1 − (1 − alpha)·min(epoch, k)/k at the 0-based
``epoch`` (α_t = alpha from the start when k = 0), set by :meth:`SANER.start_epoch`, which
the training loop calls. This is the official code's rule (lhchau/sam-label-noise,
``optimizer/saner.py``: ``p.grad * mask * condition``); their README writes the factor as
1 − α, identical at the default α = 0.5. Defaults α = 0.5, k = 50, inner SAM with ρ = 0.1.

Cost. g̃ is the inner method's ``gradient``; g is read from the inner's own first
backward pass when the inner computes ∇L_B(w) there — methods declare it with a
``first_pass_is_sgd`` attribute (True for F-SAM, and for SAM / ASAM / L-SAM / J-SAM in
their whole-batch forms); SGD qualifies too. A gradient hook copies each parameter's
gradient the first time it is accumulated during the inner's step, so SANER costs what its
inner method costs plus one parameter-sized copy and an element-wise pass. The exact
per-example engine (1-SAM, m-SAM, per-example L-SAM / J-SAM, :mod:`samlab.methods.exact`)
hands g over in ``StepInfo.batch_grad`` (Σ_i g_i/B from its first pass) when that is the
SGD gradient, i.e. without BatchNorm in training mode; no extra pass then. For any other
inner method (m-SAM / 1-SAM, per-example L-SAM / J-SAM, OBF, ...) g is computed by one
extra forward and backward pass at w after the inner's step, with the BatchNorm buffers,
the RNG state (same dropout mask as the inner's first pass) and the inner's gradient
restored; ``StepInfo.extras["extra_pass"]`` says which path ran (0 or 1).

``StepInfo.extras`` also reports the fractions of gradient entries in each group
(``frac_amplified``, ``frac_shrunk``, ``frac_flipped``; the last one is the complement of
the first two, so they sum to 1) and ``alpha_t``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from samlab.methods.base import Method, RngReplay, StepInfo, first_pass, trainable
from samlab.methods.registry import get, register

__all__ = ["SANER", "first_pass_is_sgd"]

#: Added to g before dividing, as in the official code.
RATIO_EPS = 1e-8


def _default_inner() -> Method:
    from samlab.methods.sam import SAM

    return SAM(rho=0.1)


def first_pass_is_sgd(method: Method) -> bool:
    """Whether ``method.gradient`` starts with one backward pass of the mean loss at w.

    The method's own ``first_pass_is_sgd`` attribute when it has one (F-SAM; SAM, L-SAM and
    J-SAM declare it for their whole-batch forms); otherwise True for SGD and for a SAM
    without the attribute and with ``m`` unset. SANER then reads g from that pass.
    """
    declared = getattr(method, "first_pass_is_sgd", None)
    if declared is not None:
        return bool(declared)
    from samlab.methods.sam import SAM
    from samlab.methods.sgd import SGD

    if type(method) is SGD:
        return True
    return type(method) is SAM and getattr(method, "m", None) is None


class _FirstGrads:
    """Within the block, copy each parameter's gradient the first time it is accumulated."""

    def __init__(self, params: list[nn.Parameter]):
        self.params = params
        self.grads: list[torch.Tensor | None] = [None] * len(params)
        self.handles: list[Any] = []

    def _hook(self, i: int):
        def hook(p: torch.Tensor) -> None:
            if self.grads[i] is None and p.grad is not None:
                self.grads[i] = p.grad.detach().clone()

        return hook

    def __enter__(self) -> _FirstGrads:
        self.handles = [p.register_post_accumulate_grad_hook(self._hook(i)) for i, p in enumerate(self.params)]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def _sgd_gradient_after(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, rng: RngReplay
) -> list[torch.Tensor | None]:
    """∇L_B(w) by one extra pass, leaving ``p.grad``, the buffers and the RNG state as found.

    ``rng`` is the RNG state before the inner method ran, so dropout draws the inner's
    first-pass mask.
    """
    params = trainable(model)
    kept = [p.grad for p in model.parameters()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    after = RngReplay(x.device)
    try:
        rng.replay()
        first_pass(model, x, y)
        return [p.grad for p in params]
    finally:
        after.replay()
        with torch.no_grad():
            for b, v in buffers:
                b.copy_(v)
        for p, g in zip(model.parameters(), kept):
            p.grad = g


@register
@dataclass
class SANER(Method):
    """SANER over ``inner``: shrunk entries (0 < g̃/g < 1) of the inner gradient times α_t.

    Fields: ``inner`` (a Method, a registered name, or a config dict; default SAM with
    ρ = 0.1), ``alpha`` in (0, 1] (the final factor; 1 gives the inner method exactly),
    ``k`` (≥ 0, the number of epochs over which α_t falls from 1 to ``alpha``).
    """

    name = "saner"
    inner: Method = field(default_factory=_default_inner)
    alpha: float = 0.5
    k: int = 50

    def __post_init__(self) -> None:
        if isinstance(self.inner, (str, dict)):
            self.inner = get(self.inner)
        if not isinstance(self.inner, Method):
            raise ValueError(f"inner must be a samlab Method, a method name or a config dict, got inner={self.inner!r}")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got alpha={self.alpha}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise ValueError(f"k must be an integer >= 0 (epochs), got k={self.k!r}")
        self._epoch = 0
        self._alpha_t = self.alpha_at(0)

    def alpha_at(self, epoch: int) -> float:
        """α_t at 0-based ``epoch``: linear from 1 (epoch 0) to ``alpha`` (epoch ≥ k)."""
        if self.k == 0:
            return float(self.alpha)
        return 1.0 - (1.0 - self.alpha) * min(max(epoch, 0), self.k) / self.k

    @property
    def alpha_t(self) -> float:
        return self._alpha_t

    def start_epoch(self, epoch: int, num_epochs: int) -> None:
        self._epoch = epoch
        self._alpha_t = self.alpha_at(epoch)
        self.inner.start_epoch(epoch, num_epochs)

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepInfo:
        params = trainable(model)
        rng = RngReplay(x.device)
        sgd: list[torch.Tensor | None] | None = None
        if first_pass_is_sgd(self.inner):
            with _FirstGrads(params) as capture:
                info = self.inner.gradient(model, x, y)
            if all(c is not None or p.grad is None for c, p in zip(capture.grads, params)):
                sgd = capture.grads
        else:
            info = self.inner.gradient(model, x, y)
            if info.batch_grad is not None:  # the exact per-example engine computed ∇L_B(w)
                sgd = list(info.batch_grad)
        extra = sgd is None
        if sgd is None:  # not readable from the inner's passes: one extra pass at w
            sgd = _sgd_gradient_after(model, x, y, rng)

        counts: list[torch.Tensor] = []
        total = 0
        for p, g in zip(params, sgd):
            tilde = p.grad
            if tilde is None or g is None:
                continue
            r = tilde / (g + RATIO_EPS)
            shrunk = (r > 0) & (r < 1)
            counts.append(torch.stack([(r >= 1).sum(), shrunk.sum()]))
            total += r.numel()
            if self._alpha_t != 1.0:
                p.grad = torch.where(shrunk, tilde * self._alpha_t, tilde)
        n_amp, n_shrunk = torch.stack([c.to(counts[0].device) for c in counts]).sum(0).tolist() if counts else (0, 0)
        frac = (lambda n: n / total) if total else (lambda n: float("nan"))
        extras = {
            **info.extras,
            "alpha_t": self._alpha_t,
            "frac_amplified": frac(n_amp),
            "frac_shrunk": frac(n_shrunk),
            "frac_flipped": frac(total - n_amp - n_shrunk),
            "extra_pass": float(extra),
        }
        return dataclasses.replace(info, extras=extras)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "alpha_t": self._alpha_t, "inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            self._epoch, self._alpha_t = 0, self.alpha_at(0)
            self.inner.load_state_dict({})
            return
        if set(state) != {"epoch", "alpha_t", "inner"}:
            raise ValueError(f"saner state must have keys ['alpha_t', 'epoch', 'inner'], got {sorted(state)}")
        self._epoch = int(state["epoch"])
        self._alpha_t = float(state["alpha_t"])
        self.inner.load_state_dict(state["inner"])
