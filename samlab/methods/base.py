"""The one interface every optimisation method implements, and the mechanics they share.

Taught in notebook 00 (SGD through this interface) and notebook 03 (the SAM family).

A method turns a batch into a gradient left in ``p.grad`` and then calls the base
optimiser's ``step()``: the base optimiser (SGD with momentum and weight decay) owns the
learning rate, its scheduler and weight decay. ``step`` returns a :class:`StepInfo` with
what the training loop logs for free. Method state (an EMA, a schedule) lives in the
method's ``state_dict()``, never the weight backup.

Shared mechanics, done once here:

* :func:`grad_norm`: the global L2 norm over all parameters, in fp32, skipping ``None``.
* :func:`perturbed`: move the weights by ``eps`` for the duration of a ``with`` block,
  then restore them *by copy* (subtracting ``eps`` drifts in low precision) together with
  every buffer (BatchNorm running statistics are untouched by the perturbed pass).
* :class:`RngReplay`: replay the RNG state of the first pass so that dropout draws the
  same mask in both passes.
* :func:`autocast`: bf16 autocast on CUDA, a no-op on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from samlab.losses import per_example_loss

__all__ = [
    "EPS",
    "Method",
    "RngReplay",
    "StepInfo",
    "autocast",
    "descend_at",
    "first_pass",
    "grad_norm",
    "perturbed",
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

    @property
    def loss(self) -> float:
        return float(self.losses.mean())


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def grad_norm(tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """Global L2 norm of a list of tensors in fp32; ``None`` entries are skipped."""
    present = [t.detach().float() for t in tensors if t is not None]
    if not present:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in present]))


@contextlib.contextmanager
def perturbed(model: nn.Module, eps: Sequence[torch.Tensor | None]) -> Iterator[None]:
    """Within the block the trainable weights are ``w + eps``; on exit, exactly ``w`` again.

    Buffers (BatchNorm running statistics and counters) are saved and restored too, so
    the perturbed forward pass leaves them as the first pass left them.
    """
    params = trainable(model)
    if len(eps) != len(params):
        raise ValueError(f"eps must have one entry per trainable parameter ({len(params)}), got {len(eps)}")
    saved = [p.detach().clone() for p in params]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        with torch.no_grad():
            for p, e in zip(params, eps):
                if e is not None:
                    p.add_(e.to(p.dtype))
        yield
    finally:
        with torch.no_grad():
            for p, w in zip(params, saved):
                p.copy_(w)
            for b, v in buffers:
                b.copy_(v)


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


def descend_at(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[torch.Tensor | None], rng: RngReplay) -> None:
    """Leave ∇L_B(w + eps) in ``p.grad``, with w, the buffers and dropout as in the first pass."""
    with perturbed(model, eps):
        rng.replay()
        for p in model.parameters():
            p.grad = None
        with autocast(x.device):
            out = model(x)
        per_example_loss(upcast(out), y).mean().backward()


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
