"""The exact engine: per-example (and per-chunk) SAM without per-example weights.

Taught in notebook 03 (why 1-SAM need not cost a model copy per example); used by 1-SAM,
m-SAM, ASAM with m, per-example L-SAM / J-SAM, OBF and SANER around any of them, selected
with their ``engine`` field (``"auto"``: this engine when every parametrised layer of the
model is supported, else :mod:`samlab.methods.perexample`'s ``vmap`` engine).

**The algebra.** Every parametrised layer this engine supports is *linear in its
parameters for a fixed input*: Linear z = a Wᵀ + b, Conv2d z = W ⋆ a + b (= W U(a) + b
with U the unfolded patches of a), GroupNorm and BatchNorm z = x̂(a) ⊙ γ + β (BatchNorm
under samlab's per-example definition, the batch statistics of the first pass held fixed,
:func:`samlab.methods.perexample.fixed_statistics`; GroupNorm normalises each example on
its own). Write layer(a; W) for any of them and layer_W(a; V) = layer(a; V) − layer(a; 0)
for its weight part. Then for any V

    layer(a; W + V) = layer(a; W) + layer_W(a; V)      (bias terms likewise: + V_b)

The per-example perturbation of 1-SAM is ε_i = c_i G_i with G_i = ∇_W ℓ_i(w) the example's
gradient for the layer's parameters and c_i = ρ/‖g_i‖, ‖g_i‖ the example's global gradient
norm over all layers. Example i's perturbed forward is therefore the ordinary forward at w
in which every parametrised layer adds c_i·layer_W(a'_i; G_i) to its output, a'_i being
the layer's input *in that perturbed forward* (it depends on the perturbations of the
layers below). Hold c_i G_i constant (detached) but keep a'_i in the graph. Then the
gradient of ℓ_i(z'_i) with respect to W (the one copy of the weights every example shares)
is exactly ∇_W ℓ_i(w + ε_i): W enters layer(a'_i; W) exactly where W + ε_i enters the
perturbed layer, and the derivative of the added term with respect to a'_i is that of
layer(a'_i; ε_i), so backpropagation through the layers above sees the perturbed weights.
Summed over the batch, one ordinary backward of Σ_i ℓ_i(z'_i)/B through this perturbed,
*batched* forward leaves in W.grad exactly (1/B) Σ_i ∇_W ℓ_i(w + ε_i): the 1-SAM gradient.

The per-example gradients G_i come from one batched pass at w: each supported module's
forward is replaced for the step (``_Forwards``) by one that keeps the layer's input a, and
the gradient D = ∂(Σ_i ℓ_i)/∂z of each layer's output comes from one
``torch.autograd.grad`` (no weight gradients are formed, except the ordinary Σ_i G_i of
ghost-form weights, below). A norm layer computes its output from x̂ itself, so that
each pass normalises once (the second pass adds its per-example terms to γ and β). Per example,

* Linear: G_i = D_iᵀ A_i (A_i, D_i the example's rows; several rows when the input has
  extra dimensions), bias D_i summed over rows;
* Conv2d (any stride, padding, dilation; groups = 1): U_i = unfold(a_i), the
  (C_in k_h k_w) × L matrix of patches, G_i = D_i U_iᵀ, one batched matmul; the bias
  gradient is D_i summed over the L positions;
* GroupNorm / BatchNorm: G_γ,i = Σ_positions D_i ⊙ x̂_i, G_β,i = Σ_positions D_i.

The added term is computed the same way: a batched matmul of the unfolded perturbed input
with c_i G_i (Conv2d), of the input rows with c_i G_iᵀ (Linear), x̂'_i ⊙ c_i G_γ,i + c_i G_β,i
(norms). No per-example copy of the model and no vmap: two ordinary batched forward
passes, one backward for the layer-output gradients, one ordinary backward, plus per
layer a few batched matmuls of the size of the layer's weight gradient per example.

Two cheaper forms of the same quantities, chosen per layer:

* **Ghost form** (Linear and Conv2d weights, not with ASAM): with X_c the chunk's R input
  rows (patches) and Y_c its output-gradient rows, G_c = Y_cᵀ X_c is never formed:
  ‖G_c‖² = ⟨X_c X_cᵀ, Y_c Y_cᵀ⟩ and the added term X'_c G_cᵀ = (X'_c X_cᵀ) Y_c, which costs
  O(R²(I + O)) instead of O(R·I·O): used where R(I + O) < I·O (an MLP at m = 1, R = 1;
  convolutions on small feature maps).
* **Grouped convolution** (materialised Conv2d on the CPU, :data:`CONV_BACKEND`): G_c is
  the weight gradient, and the added term the output, of one convolution whose groups
  are the chunks (examples side by side as channel groups) — the same numbers as unfold +
  batched matmul, faster with mkldnn. On CUDA unfold + batched matmul is the default
  (grouped convolutions with B groups are what slows the vmap engine there).

**Chunks (m-SAM) and the other methods.** With chunks of m consecutive examples, G_c =
Σ_{i∈c} G_i (rows of the chunk's examples concatenated: G_c = D_cᵀ A_c, D_c U_cᵀ) and ε_c =
ρ G_c/‖G_c‖ is added to every example of the chunk; the descent direction is the mean over
chunks of ∇L_c(w + ε_c) = (1/B) Σ_i ∇ℓ_i(w + ε_{c(i)}), again one ordinary backward.
ASAM's ε_c = ρ T² G_c/‖T G_c‖, T = diag(|w| + η), is (chunk scale) × (element-wise scaled
G_c) and goes through unchanged. Per-example J-SAM is the backward through the perturbed
forward of Σ_i sg(s_i(w))·z'_i/B; per-example L-SAM takes s_i(w + ε_i) from the perturbed
forward without graph and backpropagates Σ_i sg(s_i(w + ε_i))·z_i(w)/B through the graph
of the first pass. OBF's first pass backpropagates its logit vector Σ_i v_i·z_i instead of
the loss. SANER wraps any of them.

**Memory and ``chunk_size``.** The G_c of one group are alive at once: C × (the model's
parameter count) numbers, as in the vmap engine. ``chunk_size`` (a number of chunks)
bounds it: the batch is processed in groups of ``chunk_size`` chunks, both passes per
group, accumulating into ``p.grad``. With BatchNorm and more than one group, one extra
whole-batch forward without graph first fixes the statistics (the ungrouped path reads
them in its first pass). Dropout: every pass of a group replays the group's RNG state, so
each example keeps one mask (on the CPU, the whole-batch mask, as the vmap engine).

**Limits.** Supported: Linear, Conv2d with ``groups=1`` and ``padding_mode="zeros"``,
GroupNorm, BatchNorm1d/2d/3d, and any module without trainable parameters of its own
(activations, pooling, dropout, flatten, containers). A model with any other module
that owns a trainable parameter (LayerNorm, an embedding, a custom layer), a parameter
shared by two modules, or a supported layer called twice in one forward is refused
(``engine="exact"``) or handed to the vmap engine (``engine="auto"``, with a warning
naming the layer; a layer called twice is only detected during the step and raises). The
model must use its parameters only through these modules' forward passes. A model compiled
in place (``model.compile()``, ``FitConfig(compile=True)``) runs eagerly inside the engine.

Precision: G, norms and added terms are computed in at least fp32 (float64 models stay
float64); under CUDA autocast the added term is cast to the layer output's dtype.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from samlab.losses import per_example_loss
from samlab.methods.base import EPS, RngReplay, acc_dtype, autocast, check_engine, upcast
from samlab.methods.perexample import batch_statistics, check_chunks, input_statistics, logit_grad

__all__ = ["DESCENTS", "ExactResult", "exact_step", "select_engine", "unsupported_layer"]

#: What the second pass does: "loss" (SAM: ∇ mean ℓ(w + ε_i)), "jsam", "lsam".
DESCENTS = ("loss", "jsam", "lsam")

#: How a Conv2d layer whose per-chunk gradient is materialised computes G_c and its added
#: term, by device type: "grouped" (a convolution with one group per chunk: G_c as its
#: weight gradient, the term as its output; mkldnn runs these 3–5× faster than unfold +
#: batched matmul on the CPU, measured on the small CNN's layers) or "unfold" (unfold +
#: batched matmul, the default elsewhere: cuDNN's grouped convolutions with B groups are
#: what makes the vmap engine slow on GPUs). Both are exact; tests run both.
CONV_BACKEND: dict[str, str] = {"cpu": "grouped"}


def _exact_type(module: nn.Module, base: type) -> bool:
    """``module`` is ``base`` or a subclass that keeps its forward (so its algebra is ours)."""
    return isinstance(module, base) and type(module).forward is base.forward


def _kind(module: nn.Module) -> str | None:
    """The supported kind of a module that owns trainable parameters, or None."""
    if isinstance(module, _BatchNorm) and type(module).forward is _BatchNorm.forward:
        return "norm"
    if _exact_type(module, nn.GroupNorm):
        return "norm"
    if _exact_type(module, nn.Linear):
        return "linear"
    if _exact_type(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros":
        if not isinstance(module.padding, str) or module.padding == "valid":
            return "conv"
    return None


def unsupported_layer(model: nn.Module) -> str | None:
    """Why the exact engine cannot run ``model`` (naming the layer), or None when it can."""
    owners: dict[int, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        own = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        label = f"{name or '<model>'} ({type(module).__name__})"
        if _kind(module) is None:
            return f"layer {label} is not supported by the exact engine"
        if any(n not in ("weight", "bias") for n, _ in own):
            return f"layer {label} has parameters other than weight and bias"
        for _, p in own:
            if id(p) in owners and owners[id(p)] != name:
                return f"layer {label} shares a parameter with {owners[id(p)]}"
            owners[id(p)] = name
    return None


# ----------------------------------------------------------------------------- one layer


def _chunk_rows(t: torch.Tensor, chunks: int) -> torch.Tensor:
    """``(B, ..., F)`` -> ``(C, rows of the chunk's examples, F)``."""
    return t.reshape(chunks, -1, t.shape[-1])


def _chunk_columns(t: torch.Tensor, chunks: int) -> torch.Tensor:
    """``(B, F, L)`` -> ``(C, F, m·L)``: the chunk's examples side by side along L."""
    b, f, length = t.shape
    return t.reshape(chunks, b // chunks, f, length).transpose(1, 2).reshape(chunks, f, -1)


def _chunk_channels(t: torch.Tensor, chunks: int) -> torch.Tensor:
    """``(B, Ch, H, W)`` -> ``(m, C·Ch, H, W)``: chunk c's examples in channel group c."""
    b, ch = t.shape[:2]
    if b == chunks:
        return t.reshape(1, b * ch, *t.shape[2:])
    grouped = t.reshape(chunks, b // chunks, ch, *t.shape[2:]).transpose(0, 1)
    return grouped.reshape(b // chunks, chunks * ch, *t.shape[2:])


def _unchunk_channels(t: torch.Tensor, chunks: int) -> torch.Tensor:
    """Inverse of :func:`_chunk_channels`: ``(m, C·O, H, W)`` -> ``(B, O, H, W)``."""
    m, co = t.shape[:2]
    per_example = t.reshape(m, chunks, co // chunks, *t.shape[2:]).transpose(0, 1)
    return per_example.reshape(m * chunks, co // chunks, *t.shape[2:])


def _unchunk_columns(t: torch.Tensor, batch: int) -> torch.Tensor:
    """Inverse of :func:`_chunk_columns`: ``(C, F, m·L)`` -> ``(B, F, L)``."""
    chunks, f, _ = t.shape
    return t.reshape(chunks, f, batch // chunks, -1).transpose(1, 2).reshape(batch, f, -1)


class _Layer:
    """Hooks and algebra of one supported module (see the module docstring)."""

    def __init__(self, name: str, module: nn.Module):
        self.name, self.module, self.kind = name, module, _kind(module)
        self.params = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        self.stats: tuple[torch.Tensor, torch.Tensor] | None = None  # BatchNorm, fixed statistics
        #: BatchNorm normalising with batch statistics (training mode or no running ones),
        #: decided once: the engine puts BatchNorm in eval mode for its later passes.
        self.batch_mode = isinstance(module, _BatchNorm) and (module.training or module.running_mean is None)
        self.clear()

    def clear(self) -> None:
        self.input: torch.Tensor | None = None
        self.normed: torch.Tensor | None = None
        self.output: torch.Tensor | None = None
        self.eps: dict[str, torch.Tensor] = {}
        self.direction: dict[str, torch.Tensor] = {}
        self.ghost: tuple[torch.Tensor, torch.Tensor] | None = None
        self.grouped = False
        self.calls = 0

    # --- normalisation
    def normalise(self, a: torch.Tensor) -> torch.Tensor:
        """x̂(a): GroupNorm per example, BatchNorm with the fixed (or running) statistics."""
        m = self.module
        if isinstance(m, nn.GroupNorm):
            return F.group_norm(upcast(a), m.num_groups, None, None, m.eps)
        mean, var = self.stats if self.batch_mode else (m.running_mean, m.running_var)
        shape = (1, -1, *([1] * (a.ndim - 2)))
        return (upcast(a) - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + m.eps)

    def affine(self, normed: torch.Tensor) -> torch.Tensor:
        m, shape = self.module, (1, -1, *([1] * (normed.ndim - 2)))
        out = normed if m.weight is None else normed * m.weight.reshape(shape)
        return out if m.bias is None else out + m.bias.reshape(shape)

    # --- passes (``original`` is the module's own forward)
    def _count(self) -> None:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError(
                f"the exact engine needs each parametrised layer called once per forward; {self.name} "
                f"({type(self.module).__name__}) was called again: use engine='vmap'"
            )

    def _norm_dtype(self, a: torch.Tensor) -> torch.dtype:
        """The dtype the module itself would return: GroupNorm runs in fp32 under autocast."""
        if isinstance(self.module, nn.GroupNorm) and torch.is_autocast_enabled(a.device.type):
            return upcast(a).dtype
        return a.dtype

    def first(self, a: torch.Tensor, original: Callable) -> torch.Tensor:
        """The forward at w; keeps what the per-example gradients need. A norm layer computes
        its output from x̂ itself (one normalisation, with the statistics held fixed)."""
        self._count()
        self.input = a.detach() if self.params else None  # kept for the per-example gradients
        if self.kind != "norm":
            self.output = original(a)
            return self.output
        if self.batch_mode and self.module.training:  # BatchNorm: the running statistics move once, as in SGD
            with torch.no_grad():
                original(a)
        if self.batch_mode and self.stats is None:
            self.stats = input_statistics(a)
        normed = self.normalise(a)
        if any(n == "weight" for n, _ in self.params):  # G_γ needs x̂
            self.normed = normed.detach()
        self.output = self.affine(normed).to(self._norm_dtype(a))
        return self.output

    # --- Linear and Conv2d as matrix products of rows: z_rows = x_rows Wᵀ (+ b)
    def sizes(self, a: torch.Tensor, d: torch.Tensor, chunks: int) -> tuple[int, int, int]:
        """R rows per chunk, I inputs and O outputs per row (without unfolding anything)."""
        if self.kind == "linear":
            return a.numel() // (a.shape[-1] * chunks), a.shape[-1], d.shape[-1]
        m = self.module
        return (a.shape[0] // chunks) * d[0, 0].numel(), m.weight[0].numel(), m.out_channels

    def rows(self, a: torch.Tensor, chunks: int) -> torch.Tensor:
        """The input as ``(C, R, I)`` rows per chunk: Linear, its rows; Conv2d, its patches."""
        m = self.module
        if self.kind == "linear":
            return _chunk_rows(upcast(a), chunks)
        u = F.unfold(upcast(a), m.kernel_size, m.dilation, _padding(m), m.stride)
        return _chunk_columns(u, chunks).transpose(1, 2)

    def out_rows(self, d: torch.Tensor, chunks: int) -> torch.Tensor:
        """A layer output (or its gradient) as ``(C, R, O)`` rows per chunk."""
        return _chunk_rows(d, chunks) if self.kind == "linear" else _chunk_columns(d.flatten(2), chunks).transpose(1, 2)

    def uses_ghost(self, chunks: int, adaptive: bool) -> bool:
        """After the first forward: whether the weight takes the ghost form (see :meth:`first_grads`)."""
        if self.kind not in ("linear", "conv") or adaptive or not any(n == "weight" for n, _ in self.params):
            return False
        r, i, o = self.sizes(self.input, self.output, chunks)
        return r * (i + o) < i * o

    def first_grads(
        self, d: torch.Tensor | None, chunks: int, adaptive: bool, eta: float, weight_total: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """After the first pass: Σ_c of the squared (T-scaled) norms ``(C,)`` and, per
        parameter, Σ_i G_i over the batch; keeps the per-chunk direction for the second pass.

        Linear/Conv2d weights use the ghost form (never materialise G_c = Y_cᵀ X_c; norms
        from the Gram matrices, ‖G_c‖² = ⟨X_c X_cᵀ, Y_c Y_cᵀ⟩; the added term X'_c G_cᵀ =
        (X'_c X_cᵀ) Y_c) when the R rows per chunk make it cheaper, R(I + O) < I·O, and ASAM
        is off; otherwise G_c is formed by one batched matmul. A ghost weight's Σ_i G_i is
        ``weight_total``, the ordinary weight gradient the first backward computed.
        """
        a, m = self.input, self.module
        dtype = acc_dtype(a)
        sq = torch.zeros(chunks, dtype=dtype, device=a.device)
        totals: dict[str, torch.Tensor] = {}
        self.direction, self.ghost = {}, None
        names = {n for n, _ in self.params}
        if d is None:
            d = torch.zeros_like(self.output)
        d = upcast(d.detach())
        if self.kind == "norm":
            per = d.reshape(chunks, -1, d.shape[1], d[0, 0].numel())
            if "weight" in names:
                self.direction["weight"] = (per * self.normed.reshape(per.shape)).sum((1, 3))
            if "bias" in names:
                self.direction["bias"] = per.sum((1, 3))
        else:
            r, i, o = self.sizes(a, d, chunks)
            ghost = self.uses_ghost(chunks, adaptive)
            self.grouped = self.kind == "conv" and not ghost and CONV_BACKEND.get(a.device.type) == "grouped"
            if ghost:
                x, y = self.rows(a, chunks), self.out_rows(d, chunks)
                sq = sq + (torch.bmm(x, x.transpose(1, 2)) * torch.bmm(y, y.transpose(1, 2))).sum((1, 2))
                total = torch.zeros_like(m.weight) if weight_total is None else weight_total
                totals["weight"] = total.to(dtype).reshape(m.weight.shape)
                self.ghost = (x, y)
            elif "weight" in names and self.grouped:  # G_c as the weight gradient of a grouped conv
                g = torch.nn.grad.conv2d_weight(
                    _chunk_channels(upcast(a), chunks), (chunks * o, *m.weight.shape[1:]), _chunk_channels(d, chunks),
                    m.stride, _padding(m), m.dilation, groups=chunks,
                )
                self.direction["weight"] = g.reshape(chunks, o, i)
            elif "weight" in names:
                self.direction["weight"] = torch.bmm(self.out_rows(d, chunks).transpose(1, 2), self.rows(a, chunks))
            if "bias" in names:
                self.direction["bias"] = self.out_rows(d, chunks).sum(1)
        for n, p in self.params:
            if n not in self.direction:
                continue
            g = self.direction[n]
            totals[n] = g.sum(0).reshape(p.shape)
            if adaptive:  # ε = ρ T² g/‖T g‖, T = |w| + η
                g = g * (p.detach().abs() + eta).to(g.dtype).reshape(g.shape[1:])
            sq = sq + torch.linalg.vector_norm(g.flatten(1), dim=1, dtype=dtype).square()
            if adaptive:
                g = g * (p.detach().abs() + eta).to(g.dtype).reshape(g.shape[1:])
            self.direction[n] = g
        self.input = self.normed = self.output = None
        return sq, totals

    def scale(self, factor: torch.Tensor) -> None:
        """ε_c = factor_c × direction_c, for the second pass."""
        self.eps = {n: g * factor.to(g.dtype).reshape(-1, *([1] * (g.ndim - 1))) for n, g in self.direction.items()}
        if self.ghost is not None:
            x, y = self.ghost
            self.ghost = (x, y * factor.to(y.dtype)[:, None, None])
        self.direction = {}

    def second(self, a: torch.Tensor, original: Callable) -> torch.Tensor:
        """The perturbed forward: the output at w plus c_i·layer_W(a'_i; G_i) per example
        (a norm layer: x̂' ⊙ (γ + ε_γ,i) + β + ε_β,i, one normalisation)."""
        self._count()
        e = self.eps
        if self.kind == "norm":
            m, normed = self.module, self.normalise(a)
            if not e:
                return self.affine(normed).to(self._norm_dtype(a))
            chunks = next(iter(e.values())).shape[0]
            per = normed.reshape(chunks, a.shape[0] // chunks, normed.shape[1], -1)

            def part(name: str, p: torch.Tensor | None) -> torch.Tensor | None:
                if p is None:
                    return None
                p = p.to(per.dtype).reshape(1, 1, -1, 1)
                return p + e[name][:, None, :, None].to(per.dtype) if name in e else p

            scale, shift = part("weight", m.weight), part("bias", m.bias)
            if scale is not None:
                per = per * scale if shift is None else torch.addcmul(shift, per, scale)
            elif shift is not None:
                per = per + shift
            return per.reshape(normed.shape).to(self._norm_dtype(a))
        out = original(a)
        if not e and self.ghost is None:
            return out
        chunks = self.ghost[0].shape[0] if self.ghost is not None else next(iter(e.values())).shape[0]
        if self.kind == "conv" and self.ghost is None and "weight" in e and self.grouped:
            m, w = self.module, e["weight"]
            term = F.conv2d(
                _chunk_channels(upcast(a), chunks), w.reshape(-1, *m.weight.shape[1:]).to(upcast(a).dtype), None,
                m.stride, _padding(m), m.dilation, groups=chunks,
            )
            term = _unchunk_channels(term, chunks)
            if "bias" in e:
                per = term.reshape(chunks, -1, term.shape[1], term[0, 0].numel()) + e["bias"][:, None, :, None]
                term = per.reshape(term.shape)
            return out + term.to(out.dtype)
        x = self.rows(a, chunks)
        if self.kind == "conv":  # in columns (C, O, R): contiguous for the output's layout
            if self.ghost is not None:
                x0, y0 = self.ghost
                term = torch.bmm(y0.transpose(1, 2), torch.bmm(x0, x.transpose(1, 2)))
            elif "weight" in e:
                term = torch.bmm(e["weight"], x.transpose(1, 2))
            else:
                term = x.new_zeros(chunks, e["bias"].shape[-1], x.shape[1])
            if "bias" in e:
                term = term + e["bias"][:, :, None]
            return out + _unchunk_columns(term, out.shape[0]).reshape(out.shape).to(out.dtype)
        if self.ghost is not None:
            x0, y0 = self.ghost
            term = torch.bmm(torch.bmm(x, x0.transpose(1, 2)), y0)
        elif "weight" in e:
            term = torch.bmm(x, e["weight"].transpose(1, 2))
        else:
            term = x.new_zeros(*x.shape[:2], e["bias"].shape[-1])
        if "bias" in e:
            term = term + e["bias"][:, None, :]
        return out + term.reshape(out.shape).to(out.dtype)


def _padding(conv: nn.Conv2d) -> tuple[int, ...]:
    return (0, 0) if conv.padding == "valid" else conv.padding


# ----------------------------------------------------------------------------- the model


class _Forwards:
    """Every supported module's forward replaced for the engine's passes; ``phase`` says
    what it does ("off": the module's own forward)."""

    def __init__(self, model: nn.Module):
        self.layers = [
            _Layer(n, mod)
            for n, mod in model.named_modules()
            if _kind(mod) is not None
            and (any(p.requires_grad for p in mod.parameters(recurse=False)) or isinstance(mod, _BatchNorm))
        ]
        self.phase = "off"
        self.saved: list[tuple[nn.Module, Callable | None]] = []

    def _forward(self, layer: _Layer, original: Callable) -> Callable:
        def forward(*args: object, **kwargs: object) -> torch.Tensor:
            if self.phase == "first":
                return layer.first(args[0], original)
            if self.phase == "second":
                return layer.second(args[0], original)
            return original(*args, **kwargs)

        return forward

    def __enter__(self) -> _Forwards:
        for layer in self.layers:
            module = layer.module
            self.saved.append((module, module.__dict__.get("forward")))
            module.forward = self._forward(layer, module.forward)
        return self

    def __exit__(self, *exc: object) -> None:
        for module, forward in self.saved:
            if forward is None:
                del module.forward
            else:
                module.forward = forward
        self.saved = []
        for layer in self.layers:
            layer.clear()

    @contextlib.contextmanager
    def running(self, phase: str) -> Iterator[None]:
        for layer in self.layers:
            layer.calls = 0
        self.phase = phase
        try:
            yield
        finally:
            self.phase = "off"


@contextlib.contextmanager
def _eager(model: nn.Module) -> Iterator[None]:
    """Modules compiled in place (``module.compile()``) run eagerly within the block: a
    compiled graph does not see the forwards this engine replaces and restores at every step
    (it silently returned the unperturbed gradient in our check)."""
    compiled = [m for m in model.modules() if m.__dict__.get("_compiled_call_impl") is not None]
    saved = [m.__dict__["_compiled_call_impl"] for m in compiled]
    try:
        for m in compiled:
            m._compiled_call_impl = None
        yield
    finally:
        for m, impl in zip(compiled, saved):
            m._compiled_call_impl = impl


@contextlib.contextmanager
def _batchnorm_frozen(layers: list[_Layer]) -> Iterator[None]:
    """BatchNorm modules in eval mode (running statistics untouched); training flags restored."""
    bns = [layer.module for layer in layers if isinstance(layer.module, _BatchNorm) and layer.module.training]
    try:
        for m in bns:
            m.train(False)
        yield
    finally:
        for m in bns:
            m.train(True)


@dataclass
class ExactResult:
    """What the exact engine's first pass gives the step's ``StepInfo`` (all detached)."""

    logits: torch.Tensor  #: first-pass logits at w, ``(B[, K])``
    losses: torch.Tensor  #: first-pass per-example losses at w, ``(B,)``
    grad_norm: float  #: norm of the mean over examples of the first-pass objective's gradients
    chunk_norms: torch.Tensor  #: ‖G_c‖ per chunk of the first-pass objective (summed over the chunk)
    #: ∇L_B(w) per trainable parameter (Σ_i G_i/B), when that is SGD's gradient: the loss is the
    #: first-pass objective and no BatchNorm normalises with batch statistics; else None.
    batch_grad: list[torch.Tensor | None] | None = None


def exact_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    m: int,
    rho: float,
    descent: str = "loss",
    ascent: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    adaptive: bool = False,
    eta: float = 0.01,
    chunk_size: int | None = None,
) -> ExactResult:
    """Leave in ``p.grad`` the per-chunk SAM-like gradient; return the first pass's figures.

    Chunks of ``m`` consecutive examples. First pass at w: the objective Σ_i ascent_i
    (``ascent(logits, y)`` returns per-example values; default the per-example loss) gives
    G_c per chunk and ε_c = ρ G_c/‖G_c‖ (ASAM's with ``adaptive``). Second pass (see
    ``descent`` in :data:`DESCENTS`) as in the module docstring, scaled by 1/B. Groups of
    ``chunk_size`` chunks are processed one after the other.
    """
    if descent not in DESCENTS:
        raise ValueError(f"descent must be one of {DESCENTS}, got descent={descent!r}")
    reason = unsupported_layer(model)
    if reason is not None:
        raise ValueError(f"engine='exact' cannot run this model: {reason}; use engine='vmap' or 'auto'")
    check_chunks(x.shape[0], m)
    chunks = x.shape[0] // m
    step = chunks if chunk_size is None else min(chunk_size, chunks)
    for p in model.parameters():
        p.grad = None
    logits, losses, norms = [], [], []
    total: dict[int, torch.Tensor] = {}
    with _eager(model), _Forwards(model) as passes:
        grouped = step < chunks
        if grouped and any(layer.batch_mode for layer in passes.layers):
            rng = RngReplay(x.device)
            stats = batch_statistics(model, x)  # updates the running statistics once
            rng.replay()  # the groups draw the dropout masks this pass drew
            for layer in passes.layers:
                if layer.batch_mode:
                    layer.stats = stats[layer.name]
        with contextlib.ExitStack() as stack:
            if grouped:
                stack.enter_context(_batchnorm_frozen(passes.layers))
            for start in range(0, chunks, step):
                sl = slice(start * m, min(chunks, start + step) * m)
                z, loss, sq = _group(
                    passes, model, x[sl], y[sl], x.shape[0], m, rho, descent, ascent, adaptive, eta, total
                )
                logits.append(z)
                losses.append(loss)
                norms.append(sq)
    params = [p for layer in passes.layers for _, p in layer.params]
    grad = [total[id(p)] / x.shape[0] for p in params if id(p) in total]
    norm = torch.stack([g.square().sum() for g in grad]).sum().sqrt() if grad else torch.zeros(())
    batch_grad = None
    if ascent is None and not any(layer.batch_mode for layer in passes.layers):
        mean = {id(p): (total[id(p)] / x.shape[0]).to(p.dtype) for p in params if id(p) in total}
        batch_grad = [mean.get(id(p)) for p in model.parameters() if p.requires_grad]
    return ExactResult(torch.cat(logits), torch.cat(losses), float(norm), torch.cat(norms).sqrt(), batch_grad)


def _group(
    passes: _Forwards,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch: int,
    m: int,
    rho: float,
    descent: str,
    ascent: Callable | None,
    adaptive: bool,
    eta: float,
    total: dict[int, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both passes for one group of chunks; accumulates into ``p.grad`` and ``total``."""
    chunks = x.shape[0] // m
    rng = RngReplay(x.device)
    with passes.running("first"), autocast(x.device), torch.set_grad_enabled(True):
        out = model(x)
    z = upcast(out)
    loss = per_example_loss(z, y)
    objective = (loss if ascent is None else ascent(z, y)).sum()
    live = [layer for layer in passes.layers if layer.params and layer.output is not None and layer.output.requires_grad]
    outputs = [layer.output for layer in live]
    ghost = [layer.module.weight for layer in live if layer.uses_ghost(chunks, adaptive)]
    grads = torch.autograd.grad(objective, outputs + ghost, retain_graph=descent == "lsam", allow_unused=True)
    ds, weight_totals = grads[: len(outputs)], dict(zip(map(id, ghost), grads[len(outputs) :]))
    sq = torch.zeros(chunks, dtype=acc_dtype(z), device=x.device)
    for layer, d in zip(live, ds):
        weight = getattr(layer.module, "weight", None)
        part, totals = layer.first_grads(d, chunks, adaptive, eta, weight_totals.get(id(weight)))
        sq = sq + part.to(sq.dtype)
        for n, p in layer.params:
            total[id(p)] = total.get(id(p), 0) + totals[n].to(acc_dtype(p))
    del ds, grads, weight_totals
    factor = rho / (sq.sqrt() + EPS)
    for layer in live:
        layer.scale(factor)
    rng.replay()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_batchnorm_frozen(passes.layers))
        stack.enter_context(passes.running("second"))
        if descent == "lsam":
            stack.enter_context(torch.no_grad())
        with autocast(x.device):
            out_at = upcast(model(x))
    for layer in passes.layers:
        layer.eps, layer.ghost = {}, None
    if descent == "loss":
        per_example_loss(out_at, y).sum().div(batch).backward()
    elif descent == "jsam":
        (out_at * logit_grad(z, y)).sum().div(batch).backward()
    else:
        (z * logit_grad(out_at, y)).sum().div(batch).backward()
    return z.detach(), loss.detach(), sq


def select_engine(model: nn.Module, engine: str) -> str:
    """"exact" or "vmap" for ``model`` under the method's ``engine`` field.

    "auto" takes the exact engine when :func:`unsupported_layer` finds nothing, else warns
    (naming the layer) and takes vmap; "exact" raises a ValueError on an unsupported layer.
    """
    check_engine(engine)
    if engine == "vmap":
        return "vmap"
    reason = unsupported_layer(model)
    if reason is None:
        return "exact"
    if engine == "exact":
        raise ValueError(f"engine='exact' cannot run this model: {reason}; use engine='vmap' or 'auto'")
    warnings.warn(f"engine='auto' falls back to the vmap engine: {reason}", stacklevel=3)
    return "vmap"
