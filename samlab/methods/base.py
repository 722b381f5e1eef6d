"""The one interface every optimisation method implements, and the mechanics they share.

Taught in notebook 00 (SGD through this interface) and notebook 03 (the SAM family).

A method turns a batch into a gradient left in ``p.grad`` and then calls the base
optimiser's ``step()``: the base optimiser (SGD with momentum and weight decay) owns the
learning rate, its scheduler and weight decay. ``step`` returns a :class:`StepInfo` with
what the training loop logs for free. Method state (an EMA, a schedule) lives in the
method's ``state_dict()``, never the weight backup.

Shared mechanics, done once here:

* :func:`grad_norm`: the one global L2 norm over all parameters (or per chunk), skipping
  ``None``, accumulated in fp32 — in float64 for float64 tensors, so a float64 model keeps
  float64 precision in every method (SAM, F-SAM, OBF, ... alike). Multi-tensor
  (``torch._foreach_norm``): one kernel launch per dtype on the GPU, not one per parameter.
* :func:`perturbed`: move the weights by ``eps`` for the duration of a ``with`` block,
  then restore them *by copy* (subtracting ``eps`` drifts in low precision) together with
  every buffer (BatchNorm running statistics are untouched by the perturbed pass); the
  save, move and restore are multi-tensor ``torch._foreach_*`` operations.
* :func:`ascent`, :func:`scaled`: ε = ρ d/‖d‖ (multi-tensor).
* :func:`descend_at`: the second pass of every two-pass method, at w + ε.
* :func:`upcast`, :func:`acc_dtype`: the precision rules; :func:`check_rho`,
  :func:`check_m`, :func:`check_chunk_size`, :func:`check_engine`: the shared field checks.
* :class:`RngReplay`: replay the RNG state of the first pass so that dropout draws the
  same mask in both passes.
* :func:`autocast`: bf16 autocast on CUDA, a no-op on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from samlab.losses import per_example_loss

__all__ = [
    "ENGINES",
    "EPS",
    "Method",
    "RngReplay",
    "StepInfo",
    "acc_dtype",
    "ascent",
    "autocast",
    "check_chunk_size",
    "check_engine",
    "check_m",
    "check_rho",
    "descend_at",
    "first_pass",
    "grad_norm",
    "perturbed",
    "scaled",
    "trainable",
    "upcast",
]

#: Added to every norm that divides a perturbation, so a zero gradient gives eps = 0.
EPS = 1e-12


@dataclass
class StepInfo:
    """What one step returns to the training loop (all detached)."""

    logits: torch.Tensor  #: first-pass logits at w
    losses: torch.Tensor  #: first-pass per-example losses at w
    grad_norm: float  #: norm of the first-pass (descent, for SGD) gradient
    extras: dict[str, float] = field(default_factory=dict)
    #: ∇L_B(w), SGD's gradient, per trainable parameter, when the method computed it on the
    #: way without leaving it in ``p.grad`` (the exact per-example engine); SANER reads it.
    batch_grad: list[torch.Tensor | None] | None = None

    @property
    def loss(self) -> float:
        return float(self.losses.mean())


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def acc_dtype(t: torch.Tensor) -> torch.dtype:
    """The accumulation dtype of norms and sums of ``t``: fp32, or float64 for float64."""
    return torch.promote_types(t.dtype, torch.float32)


def grad_norm(tensors: Sequence[torch.Tensor | None], batched: bool = False) -> torch.Tensor:
    """Global L2 norm of a list of tensors; ``None`` entries are skipped.

    Accumulated in fp32, or in float64 when a tensor is float64 (:func:`acc_dtype`). With
    ``batched=True`` every tensor has a leading chunk dimension and one norm per chunk is
    returned (shape ``(C,)``).
    """
    present = [t.detach() for t in tensors if t is not None]
    if not present:
        return torch.zeros(())
    dtype = functools.reduce(torch.promote_types, [acc_dtype(t) for t in present])
    if batched:
        sq = torch.stack([t.to(dtype).flatten(1).square().sum(1) for t in present]).sum(0)
        return sq.sqrt()
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(present, 2, dtype=dtype)))


def scaled(tensors: Sequence[torch.Tensor | None], factor: torch.Tensor) -> list[torch.Tensor | None]:
    """``factor · t`` for every tensor (``None`` stays ``None``; each keeps its dtype), in one
    multi-tensor ``torch._foreach_mul``; ``factor`` is a 0-d tensor."""
    out: list[torch.Tensor | None] = [None] * len(tensors)
    index = [i for i, t in enumerate(tensors) if t is not None]
    if index:
        present = [tensors[i] for i in index]
        for i, t in zip(index, torch._foreach_mul(present, factor.to(present[0].device))):
            out[i] = t
    return out


def ascent(tensors: Sequence[torch.Tensor | None], rho: float) -> tuple[list[torch.Tensor | None], torch.Tensor]:
    """ε = ρ d/‖d‖ for the direction ``tensors`` (``None`` entries skipped) and ‖d‖; d = 0 gives ε = 0."""
    norm = grad_norm(tensors)
    return scaled(tensors, rho / (norm + EPS)), norm


@contextlib.contextmanager
def perturbed(model: nn.Module, eps: Sequence[torch.Tensor | None]) -> Iterator[None]:
    """Within the block the trainable weights are ``w + eps``; on exit, exactly ``w`` again.

    Buffers (BatchNorm running statistics and counters) are saved and restored too, so
    the perturbed forward pass leaves them as the first pass left them.
    """
    params = trainable(model)
    if len(eps) != len(params):
        raise ValueError(f"eps must have one entry per trainable parameter ({len(params)}), got {len(eps)}")
    with torch.no_grad():
        weights = [p.detach() for p in params]
        buffers = [b for b in model.buffers()]
        saved = [w.clone() for w in weights] if weights else []
        saved_buffers = [b.clone() for b in buffers] if buffers else []
    try:
        with torch.no_grad():
            moved = [(w, e.to(w.dtype)) for w, e in zip(weights, eps) if e is not None]
            if moved:
                torch._foreach_add_([w for w, _ in moved], [e for _, e in moved])
        yield
    finally:
        with torch.no_grad():
            if weights:
                torch._foreach_copy_(weights, saved)
            if buffers:
                torch._foreach_copy_(buffers, saved_buffers)


class RngReplay:
    """Record the RNG state now; :meth:`replay` restores it (same dropout mask twice)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.cpu_state = torch.get_rng_state()
        self.cuda_state = torch.cuda.get_rng_state(device) if self.cuda else None
        self.device = device

    def replay(self) -> None:
        torch.set_rng_state(self.cpu_state)
        if self.cuda:
            torch.cuda.set_rng_state(self.cuda_state, self.device)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; nothing on the CPU (fp32 there)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def upcast(t: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 (autocast) -> fp32; fp32 and fp64 unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def first_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward at w; backward of the mean loss into ``p.grad`` (zeroed first).

    Returns the logits and per-example losses (with graph-free copies for logging).
    """
    for p in model.parameters():
        p.grad = None
    with autocast(x.device):
        logits = model(x)
    losses = per_example_loss(upcast(logits), y)
    losses.mean().backward()
    return upcast(logits.detach()), losses.detach()


def descend_at(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[torch.Tensor | None],
    rng: RngReplay,
    objective: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Leave ∇ objective(z(w + eps)) in ``p.grad`` (default: the mean loss, ∇L_B(w + eps)),
    with w, the buffers and dropout as in the first pass; ``objective`` maps the upcast
    logits to a scalar (J-SAM: Σ_i sg(s_i(w))·z_i)."""
    with perturbed(model, eps):
        rng.replay()
        for p in model.parameters():
            p.grad = None
        with autocast(x.device):
            out = upcast(model(x))
        (per_example_loss(out, y).mean() if objective is None else objective(out)).backward()


#: The engines of per-example methods: "exact" (:mod:`samlab.methods.exact`), "vmap"
#: (:mod:`samlab.methods.perexample`), "auto" (exact where the model allows it).
ENGINES = ("auto", "exact", "vmap")


def check_rho(rho: float) -> None:
    if not rho >= 0:
        raise ValueError(f"rho must be >= 0, got rho={rho}")


def check_m(m: int | None) -> None:
    if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
        raise ValueError(f"m must be None (whole batch) or an integer >= 1, got m={m!r}")


def check_chunk_size(chunk_size: int | None) -> None:
    if chunk_size is not None and (not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1):
        raise ValueError(f"chunk_size must be None or an integer >= 1, got chunk_size={chunk_size!r}")


def check_engine(engine: str, allowed: tuple[str, ...] = ENGINES) -> None:
    if engine not in allowed:
        raise ValueError(f"engine must be one of {allowed}, got engine={engine!r}")


class Method:
    """Base class of every method. Subclasses are dataclasses of their hyperparameters.

    Subclasses set ``name`` (the registry key) and implement :meth:`gradient`, which
    leaves the descent direction in ``p.grad`` without stepping; :meth:`step` then lets
    the base optimiser step. (Wrappers such as SANER call an inner method's
    ``gradient``.) Methods that need the epoch (a schedule) override :meth:`start_epoch`;
    methods with state override :meth:`state_dict` / :meth:`load_state_dict`.
    """

    name: ClassVar[str] = ""

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepInfo:
        """Leave this method's descent direction in ``p.grad``; do not step."""
        raise NotImplementedError

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> StepInfo:
        """One training step: :meth:`gradient`, then ``optimizer.step()``."""
        info = self.gradient(model, x, y)
        optimizer.step()
        return info

    def start_epoch(self, epoch: int, num_epochs: int) -> None:
        """Called by the training loop before epoch ``epoch`` (0-based)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{self.name} has no state, got keys {sorted(state)}")

    def config(self) -> dict[str, Any]:
        """The hyperparameters, as a plain dict (part of every result file)."""
        out: dict[str, Any] = {"method": self.name}
        if dataclasses.is_dataclass(self):
            for f in dataclasses.fields(self):
                value = getattr(self, f.name)
                out[f.name] = value.config() if isinstance(value, Method) else value
        return out

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "method")
        return f"{self.name}({args})"
