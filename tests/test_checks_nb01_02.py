"""The notebook-01 and -02 exercise checks accept right answers, explain wrong ones and never print the solution."""

from __future__ import annotations

import torch

from samlab import data, theory
from samlab.checks import nb01, nb02


def _said(capsys, *words: str) -> str:
    out = capsys.readouterr().out
    for w in words:
        assert w in out, f"expected {w!r} in {out!r}"
    return out


# --------------------------------------------------------------------------- notebook 01


def test_check_upweight(capsys):
    right = lambda m, c: torch.sigmoid(-m + c) / torch.sigmoid(-m)  # noqa: E731
    assert nb01.check_upweight(right)
    _said(capsys, "✓")
    assert nb01.check_upweight(lambda m, c: torch.exp(torch.nn.functional.logsigmoid(c - m) - torch.nn.functional.logsigmoid(-m)))
    _said(capsys, "rises from 1")
    assert not nb01.check_upweight(lambda m, c: torch.sigmoid(-m) / torch.sigmoid(-m + c))
    _said(capsys, "reciprocal")
    assert not nb01.check_upweight(lambda m, c: torch.sigmoid(m + c) / torch.sigmoid(m))
    _said(capsys, "sign")
    assert not nb01.check_upweight(lambda m, c: torch.sigmoid(-m + c))
    _said(capsys, "ratio")
    assert not nb01.check_upweight(lambda m, c: (torch.sigmoid(-m + c) / torch.sigmoid(-m)).sum())
    _said(capsys, "shape", "element-wise")
    assert not nb01.check_upweight(lambda m, c: 1 / 0)
    _said(capsys, "ZeroDivisionError")
    assert not nb01.check_upweight(3.0)
    _said(capsys, "function")


def test_check_sam_example_grads(capsys):
    def right(w, x, y, rho):
        ty = 2.0 * y.double() - 1.0
        m = ty * (x @ w)
        return (-torch.sigmoid(-m + rho * x.norm(dim=1)) * ty).unsqueeze(1) * x

    assert nb01.check_sam_example_grads(right)
    _said(capsys, "✓")
    assert not nb01.check_sam_example_grads(lambda w, x, y, rho: right(w, x, y, rho).mean(0))
    _said(capsys, "mean", "one gradient per example")
    assert not nb01.check_sam_example_grads(lambda w, x, y, rho: right(w, x, y, rho).T)
    _said(capsys, "transposed")
    assert not nb01.check_sam_example_grads(lambda w, x, y, rho: -right(w, x, y, rho))
    _said(capsys, "sign")
    assert not nb01.check_sam_example_grads(lambda w, x, y, rho: right(w, x, y, 0.0))
    _said(capsys, "plain GD")
    assert not nb01.check_sam_example_grads(lambda w, x, y, rho: 2 * right(w, x, y, rho))
    _said(capsys, "factor of 2")

    def rho_only(w, x, y, rho):
        ty = 2.0 * y.double() - 1.0
        return (-torch.sigmoid(-ty * (x @ w) + rho) * ty).unsqueeze(1) * x

    assert not nb01.check_sam_example_grads(rho_only)
    _said(capsys, "ρ‖x_i‖")


def test_check_grad_ratio(capsys):
    ds = data.load("gaussian", n=80, d=6, separation=2.0, n_test=10, noise="symmetric-flip", rate=0.3, noise_seed=0)
    w = torch.randn(6, generator=torch.Generator().manual_seed(0))
    norms = theory.linear_grad_norms(w, ds.x_train, ds.y_train)
    truth = theory.clean_noisy_ratio(norms, ds.is_noisy)
    assert nb01.check_grad_ratio(truth, w, ds)
    out = _said(capsys, "✓")
    assert f"{truth:.3f}" not in out
    assert nb01.check_grad_ratio(torch.tensor(truth), w, ds)
    capsys.readouterr()
    assert not nb01.check_grad_ratio(1 / truth, w, ds)
    _said(capsys, "noisy over clean")
    sig = torch.sigmoid(-theory.margins(w, ds.x_train, ds.y_train))
    assert not nb01.check_grad_ratio(theory.clean_noisy_ratio(sig, ds.is_noisy), w, ds)
    _said(capsys, "‖x_i‖")
    assert not nb01.check_grad_ratio(float(norms[~ds.is_noisy].sum() / norms[ds.is_noisy].sum()), w, ds)
    _said(capsys, "means")
    assert not nb01.check_grad_ratio("0.5", w, ds)
    _said(capsys, "number")
    assert not nb01.check_grad_ratio(torch.ones(3), w, ds)
    _said(capsys, "shape")


# --------------------------------------------------------------------------- notebook 02


def _nsq(W, v, x):
    return (x @ W.T).square().sum(1) + v.square().sum() * x.square().sum(1)


def test_check_grad_f_norm_sq(capsys):
    assert nb02.check_grad_f_norm_sq(_nsq)
    _said(capsys, "✓")
    assert not nb02.check_grad_f_norm_sq(lambda W, v, x: _nsq(W, v, x).sqrt())
    _said(capsys, "square")
    assert not nb02.check_grad_f_norm_sq(lambda W, v, x: (x @ W.T).square().sum(1))
    _said(capsys, "v-block")
    assert not nb02.check_grad_f_norm_sq(lambda W, v, x: v.square().sum() * x.square().sum(1))
    _said(capsys, "W-block")
    assert not nb02.check_grad_f_norm_sq(lambda W, v, x: 0.5 * _nsq(W, v, x))
    _said(capsys, "factor of 2")
    assert not nb02.check_grad_f_norm_sq(lambda W, v, x: _nsq(W, v, x).sum())
    _said(capsys, "shape")


def test_check_grad_v_at_eps(capsys):
    def right(W, v, x, y, rho):
        ty = (2.0 * y.double() - 1.0).unsqueeze(1)
        return x @ W.T - rho * ty * x.square().sum(1, keepdim=True) * v / _nsq(W, v, x).sqrt().unsqueeze(1)

    assert nb02.check_grad_v_at_eps(right)
    _said(capsys, "✓")
    assert not nb02.check_grad_v_at_eps(lambda W, v, x, y, rho: x @ W.T)
    _said(capsys, "at w")
    assert not nb02.check_grad_v_at_eps(lambda W, v, x, y, rho: 2 * (x @ W.T) - right(W, v, x, y, rho))
    _said(capsys, "wrong sign")

    def n_squared(W, v, x, y, rho):
        ty = (2.0 * y.double() - 1.0).unsqueeze(1)
        return x @ W.T - rho * ty * x.square().sum(1, keepdim=True) * v / _nsq(W, v, x).unsqueeze(1)

    assert not nb02.check_grad_v_at_eps(n_squared)
    _said(capsys, "not by N²")
    assert not nb02.check_grad_v_at_eps(lambda W, v, x, y, rho: right(W, v, x, y, rho).T)
    _said(capsys, "transposed")


def test_check_jsam_weights(capsys):
    def right(W, v, x, y, rho):
        ty = 2.0 * y.double() - 1.0
        return rho * torch.sigmoid(-ty * ((x @ W.T) @ v)) / _nsq(W, v, x).sqrt()

    assert nb02.check_jsam_weights(right)
    _said(capsys, "✓")

    def sign(W, v, x, y, rho):
        ty = 2.0 * y.double() - 1.0
        return rho * torch.sigmoid(ty * ((x @ W.T) @ v)) / _nsq(W, v, x).sqrt()

    assert not nb02.check_jsam_weights(sign)
    _said(capsys, "sign inside σ")
    assert not nb02.check_jsam_weights(lambda W, v, x, y, rho: right(W, v, x, y, rho) / _nsq(W, v, x).sqrt())
    _said(capsys, "not N²")
    assert not nb02.check_jsam_weights(lambda W, v, x, y, rho: right(W, v, x, y, rho) * _nsq(W, v, x).sqrt())
    _said(capsys, "forgot to divide")
    assert not nb02.check_jsam_weights(lambda W, v, x, y, rho: rho / _nsq(W, v, x).sqrt())
    _said(capsys, "logit-scale")
    assert not nb02.check_jsam_weights(lambda W, v, x, y, rho: right(W, v, x, y, rho)[:2])
    _said(capsys, "shape")
