"""Vectorised per-example and per-chunk gradients (torch.func) for 1-SAM, m-SAM and the
per-example forms of L-SAM and J-SAM, plus the small pieces every SAM-like method shares.

Taught in notebooks 01–03 (1-SAM, L-SAM and J-SAM are per-example methods; notebook 03
runs them on real images at CPU scale).

How it works. The batch of B examples is reshaped into C = B/m chunks of m examples
(m = 1: one example per chunk). The model becomes a pure function of its trainable
parameters (``torch.func.functional_call``) and ``torch.func.vmap`` maps
``torch.func.grad`` of the chunk's mean loss over the chunks, so the C chunk gradients are
computed in one vectorised call, never in a Python loop. Per-chunk perturbed weights
w + ε_c are a batch of C parameter sets, mapped over by the same ``vmap`` (``in_dims=0``).
``chunk_size`` bounds memory: the chunks are processed in groups of ``chunk_size``
(both passes for one group, then the next), so at most a few parameter-sized tensors
per chunk of one group are alive at once; ``None`` processes all chunks together. For
m > 1 the same ``vmap`` over chunks is used (one code path; each mapped call is an
ordinary m-example forward/backward, so vmap costs no more than a loop over the B/m
chunks and avoids its Python overhead).

BatchNorm: a per-example gradient is not well defined with BatchNorm in training mode
(each example's output depends on the whole batch through the normalisation
statistics). samlab's definition: **per-example (and per-chunk) gradients are taken with
the batch's normalisation statistics held fixed** — the mean and the *biased* variance of
each BatchNorm input in one whole-batch forward pass at w (the first pass), captured with
forward pre-hooks. During the vectorised passes those BatchNorm modules run in eval mode
with ``running_mean`` / ``running_var`` replaced (through ``functional_call``) by these
batch statistics, so each example is normalised exactly as in the whole-batch pass, and
the same statistics are also used at the perturbed points w + ε_c. The whole-batch pass
updates the running statistics once, as an SGD step would; the vectorised passes never
touch them. Models built with ``norm="gn"`` (GroupNorm) normalise each example on its own
and avoid the question. With BatchNorm, ``m = B`` therefore differs from the whole-batch
``m=None`` form, whose passes normalise with the statistics of the batch at w and at w + ε.

Dropout: every pass of a step replays the RNG state of the first pass (``RngReplay``, per
group of chunks) and ``vmap`` runs with ``randomness="different"``, so each example keeps
one dropout mask in all passes of the step (on the CPU it is also the mask of an ordinary
whole-batch forward; ``tests/test_methods_perexample.py`` checks this).

Precision: losses and logit gradients are computed in at least fp32 (bf16 autocast on CUDA
is upcast; float64 models stay float64) and norms are accumulated in at least fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from samlab.losses import per_example_loss, signed_labels
from samlab.methods.base import EPS, RngReplay, autocast, grad_norm, scaled, upcast

__all__ = [
    "FirstPass",
    "FunctionalModel",
    "add_grads",
    "batch_first_pass",
    "batch_statistics",
    "chunk_logit_grads",
    "chunk_logits",
    "chunk_loss_grads",
    "check_chunks",
    "fixed_statistics",
    "forward_losses",
    "input_statistics",
    "logit_grad",
    "perturbation",
    "perturbed_chunks",
    "split_chunks",
    "write_grads",
]

Params = dict[str, torch.Tensor]
T = TypeVar("T")


def forward_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and per-example losses of an ordinary forward pass (with graph)."""
    with autocast(x.device):
        logits = model(x)
    logits = upcast(logits)
    return logits, per_example_loss(logits, y)


def batch_first_pass(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, retain_graph: bool = False
) -> tuple[torch.Tensor, torch.Tensor, list[nn.Parameter], list[torch.Tensor | None]]:
    """Whole-batch first pass: forward at w, backward of the mean loss into ``p.grad``.

    Returns the logits (with their graph if ``retain_graph``), the per-example losses, the
    trainable parameters and their gradients (``None`` for parameters the loss skips).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    for p in model.parameters():
        p.grad = None
    logits, losses = forward_losses(model, x, y)
    losses.mean().backward(retain_graph=retain_graph)
    return logits, losses.detach(), params, [p.grad for p in params]


def logit_grad(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """s = ∂ℓ/∂z per example (no batch-size factor): softmax(z) − e_y for ``(..., K)``
    logits, −ỹ σ(−ỹ z) with ỹ = 2y − 1 for single-logit models (logits shaped like ``y``)."""
    logits = upcast(logits.detach())
    if logits.shape == y.shape:
        ty = signed_labels(y).to(logits.dtype)
        return -ty * torch.sigmoid(-ty * logits)
    classes = torch.arange(logits.shape[-1], device=logits.device)
    onehot = (y.unsqueeze(-1) == classes).to(logits.dtype)
    return torch.softmax(logits, dim=-1) - onehot


def perturbation(
    grads: Sequence[torch.Tensor | None],
    weights: Sequence[torch.Tensor],
    rho: float,
    *,
    adaptive: bool = False,
    eta: float = 0.01,
    batched: bool = False,
) -> list[torch.Tensor | None]:
    """ε = ρ g/‖g‖ (SAM) or ε = ρ T² g/‖T g‖ with T = diag(|w| + η) (ASAM).

    ``grads[k]`` goes with ``weights[k]``; ``None`` gradients give ``None`` (no move).
    With ``batched=True`` every gradient has a leading chunk dimension and each chunk gets
    its own ε (the weights are shared). A zero gradient gives ε = 0 (``EPS`` in the norm).
    """
    if len(grads) != len(weights):
        raise ValueError(f"need one gradient per weight, got {len(grads)} gradients for {len(weights)} weights")
    present = [i for i, g in enumerate(grads) if g is not None]
    tg: list[torch.Tensor | None] = list(grads)
    direction: list[torch.Tensor | None] = list(grads)
    if adaptive and present:
        g = [grads[i] for i in present]
        scales = torch._foreach_add(torch._foreach_abs([weights[i].detach().to(grads[i].dtype) for i in present]), eta)
        if batched:
            scales = [s.unsqueeze(0) for s in scales]
        t1 = torch._foreach_mul(g, scales)
        t2 = torch._foreach_mul(t1, scales)
        for i, a, b in zip(present, t1, t2):
            tg[i], direction[i] = a, b
    norm = grad_norm(tg, batched=batched)
    factor = rho / (norm + EPS)
    if not batched:
        return scaled(direction, factor)
    out: list[torch.Tensor | None] = []
    for d in direction:
        if d is None:
            out.append(None)
            continue
        f = factor.to(device=d.device, dtype=d.dtype)
        out.append(d * f.reshape(-1, *([1] * (d.ndim - 1))))
    return out


def input_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A BatchNorm input's batch mean and *biased* variance per channel (dimension 1), in at
    least fp32: the statistics samlab's per-example definition holds fixed.

    Computed by sums (the corrected two-pass algorithm: mean, then the centred values' sum
    and sum of squares), which on the CPU run several times faster than ``Tensor.var`` over
    dimensions (0, 2, 3) and are as accurate: the centred sum removes the first pass's
    rounding of the mean from the variance."""
    x = upcast(x.detach())
    dims = [0, *range(2, x.ndim)]
    n = x.numel() // x.shape[1]
    mean = x.sum(dims) / n
    centred = x - mean.reshape(1, -1, *([1] * (x.ndim - 2)))
    shift = centred.sum(dims) / n
    return mean + shift, (centred * centred).sum(dims) / n - shift * shift


def _capture(store: dict[str, tuple[torch.Tensor, torch.Tensor]], name: str):
    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        store[name] = input_statistics(args[0])

    return hook


class FunctionalModel:
    """``model`` as a pure function of its trainable parameters, BatchNorm statistics fixed.

    ``params`` are the trainable parameters (detached, by name); everything else the
    forward needs (buffers, frozen parameters, the captured batch statistics) is in
    ``frozen``. Built by :func:`fixed_statistics`.
    """

    def __init__(self, model: nn.Module, overrides: Mapping[str, torch.Tensor] | None = None):
        self.model = model
        named = dict(model.named_parameters())
        self.names = [n for n, p in named.items() if p.requires_grad]
        self.params: Params = {n: named[n].detach() for n in self.names}
        self.frozen: Params = {n: p.detach() for n, p in named.items() if not p.requires_grad}
        self.frozen.update({n: b for n, b in model.named_buffers()})
        self.frozen.update(overrides or {})

    def logits(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Logits at weights ``params`` for inputs ``x`` (at least fp32)."""
        with autocast(x.device):
            out = functional_call(self.model, {**params, **self.frozen}, (x,))
        return upcast(out)


def batch_statistics(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Mean and biased variance of the input of every BatchNorm module in training mode, by
    module name, from one whole-batch forward at w without graph (which also updates the
    running statistics once, as an SGD step's forward would)."""
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, _BatchNorm) and m.training]
    store: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if not bns:
        return store
    hooks = [m.register_forward_pre_hook(_capture(store, n)) for n, m in bns]
    try:
        with torch.no_grad(), autocast(x.device):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return store


@contextlib.contextmanager
def fixed_statistics(model: nn.Module, x: torch.Tensor) -> Iterator[FunctionalModel]:
    """Yield ``model`` as a :class:`FunctionalModel` with the batch's BatchNorm statistics fixed.

    If the model has BatchNorm modules in training mode, one whole-batch forward pass at
    w (no graph) captures each one's batch mean and biased variance and updates the
    running statistics once; inside the block those modules are in eval mode, reading the
    captured statistics in place of their running ones. Without BatchNorm nothing runs.
    """
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, _BatchNorm) and m.training]
    overrides: Params = {}
    if bns:
        for n, (mean, var) in batch_statistics(model, x).items():
            prefix = f"{n}." if n else ""
            overrides[prefix + "running_mean"], overrides[prefix + "running_var"] = mean, var
    try:
        for _, m in bns:
            m.train(False)
        yield FunctionalModel(model, overrides)
    finally:
        for _, m in bns:
            m.train(True)


def check_chunks(batch_size: int, m: int) -> None:
    """Raise a clear error unless chunks of ``m`` examples tile a batch of ``batch_size``."""
    if batch_size % m:
        raise ValueError(f"m={m} must divide the batch size, got a batch of {batch_size} examples")


def split_chunks(t: torch.Tensor, m: int) -> torch.Tensor:
    """``(B, ...)`` -> ``(B/m, m, ...)``."""
    check_chunks(t.shape[0], m)
    return t.reshape(t.shape[0] // m, m, *t.shape[1:])


def _vmap(fn: Any, batched: bool, n_args: int) -> Any:
    in_dims = (0 if batched else None,) + (0,) * n_args
    return vmap(fn, in_dims=in_dims, randomness="different")


def chunk_loss_grads(
    fm: FunctionalModel, params: Params, x: torch.Tensor, y: torch.Tensor, *, batched: bool = False
) -> tuple[Params, torch.Tensor, torch.Tensor]:
    """Per chunk, the gradient of the chunk's mean loss, with its logits and per-example losses.

    ``x``: ``(C, m, ...)``, ``y``: ``(C, m)``. ``params`` are shared (``batched=False``) or
    one set per chunk (``batched=True``, leading dimension C). Returns gradients with a
    leading dimension C, logits ``(C, m[, K])`` and losses ``(C, m)``.
    """

    def f(p: Params, xc: torch.Tensor, yc: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        logits = fm.logits(p, xc)
        losses = per_example_loss(logits, yc)
        return losses.mean(), (logits, losses)

    grads, (logits, losses) = _vmap(grad(f, has_aux=True), batched, 2)(params, x, y)
    return grads, logits, losses


def chunk_logit_grads(
    fm: FunctionalModel, params: Params, x: torch.Tensor, s: torch.Tensor, *, batched: bool = False
) -> Params:
    """Per chunk, the gradient of Σ_j s_j·z_j(w) with ``s`` held fixed (``s`` shaped like the logits)."""

    def f(p: Params, xc: torch.Tensor, sc: torch.Tensor) -> torch.Tensor:
        return (fm.logits(p, xc) * sc).sum()

    return _vmap(grad(f), batched, 2)(params, x, s)


def chunk_logits(fm: FunctionalModel, params: Params, x: torch.Tensor, *, batched: bool = False) -> torch.Tensor:
    """Per chunk, the logits at the chunk's weights (no graph)."""
    with torch.no_grad():
        return _vmap(fm.logits, batched, 1)(params, x)


@dataclass
class FirstPass:
    """What the first (vectorised) pass at w gives the step's :class:`StepInfo`."""

    logits: torch.Tensor  #: ``(B[, K])``
    losses: torch.Tensor  #: ``(B,)``
    grad_norm: float  #: norm of the mean of the chunk gradients (the batch gradient at w)


#: ``second(at, x, y, logits)`` for a group of chunks: the perturbed weights ``at`` (one set
#: per chunk), the chunks' inputs and labels and their first-pass logits.
Second = Callable[[Params, torch.Tensor, torch.Tensor, torch.Tensor], T]


def perturbed_chunks(
    fm: FunctionalModel,
    x: torch.Tensor,
    y: torch.Tensor,
    m: int,
    second: Second,
    *,
    rho: float,
    adaptive: bool = False,
    eta: float = 0.01,
    chunk_size: int | None = None,
) -> tuple[FirstPass, list[T]]:
    """The two vectorised passes of every per-chunk SAM-like method.

    Splits the batch into chunks of ``m`` examples; for each group of ``chunk_size``
    chunks (all of them when None): one ``vmap``-ed pass gives each chunk's gradient g_c
    at w, ε_c = ρ g_c/‖g_c‖ (or ASAM's), then ``second`` runs at w + ε_c with the RNG
    state replayed (same dropout masks). Returns the first pass's logits, losses and
    gradient norm, and ``second``'s output for each group (to bound memory, ``second``
    should reduce over the chunks what it can, e.g. sum their gradients). Groups bound
    the memory to a few parameter-sized tensors per chunk of one group; the loop runs
    over groups of chunks, never over examples.
    """
    xc, yc = split_chunks(x, m), split_chunks(y, m)
    n = xc.shape[0]
    step = n if chunk_size is None else chunk_size
    outs: list[T] = []
    logits, losses = [], []
    gsum: dict[str, torch.Tensor] = {}
    for start in range(0, n, step):
        xs, ys = xc[start : start + step], yc[start : start + step]
        rng = RngReplay(x.device)
        g, z, loss = chunk_loss_grads(fm, fm.params, xs, ys)
        weights = [fm.params[k] for k in fm.names]
        eps = perturbation([g[k] for k in fm.names], weights, rho, adaptive=adaptive, eta=eta, batched=True)
        gsum = add_grads(gsum, {k: v.sum(0) for k, v in g.items()})
        del g  # free it before the second pass
        at = {k: w + e for k, w, e in zip(fm.names, weights, eps)}
        del eps
        rng.replay()
        outs.append(second(at, xs, ys, z))
        logits.append(z)
        losses.append(loss)
    z_all = torch.cat(logits)
    first = FirstPass(
        logits=z_all.reshape(x.shape[0], *z_all.shape[2:]),
        losses=torch.cat(losses).reshape(-1),
        grad_norm=float(grad_norm([v / n for v in gsum.values()])),
    )
    return first, outs


def add_grads(total: Params, part: Mapping[str, torch.Tensor]) -> Params:
    """``total + part`` by name (``total`` may be empty)."""
    return {k: v + total[k] if k in total else v for k, v in part.items()}


def write_grads(model: nn.Module, grads: Mapping[str, torch.Tensor]) -> None:
    """Set ``p.grad`` of every trainable parameter from ``grads`` (by name); others to ``None``."""
    for n, p in model.named_parameters():
        p.grad = grads[n].detach().to(p.dtype) if p.requires_grad and n in grads else None
