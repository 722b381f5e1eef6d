"""The beyond-sam experiments of notebook 06: notebook 03's setting, the variants' settings."""

from __future__ import annotations

import pytest

from samlab import experiments, methods


@pytest.mark.parametrize("rate", [30, 50])
@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_beyond_sam_is_notebook_03s_setting_with_the_variants(rate, profile):
    exp = experiments.get(f"beyond-sam-{rate}", profile)
    base = experiments.get(f"logit-jacobian-{rate}", profile)
    for field in ("dataset", "noise", "rate", "model", "model_options", "fit", "noise_seed", "data_options"):
        assert getattr(exp, field) == getattr(base, field)
    assert list(exp.methods) == ["SGD", "SAM", "F-SAM", "OBF", "SANER(SAM)", "SANER(F-SAM)"]
    assert exp.seeds == ((0,) if profile == "smoke" else experiments.SEEDS)
    built = {label: methods.get(cfg) for label, cfg in exp.methods.items()}
    assert built["SAM"].rho == built["F-SAM"].rho == built["SANER(SAM)"].inner.rho == built["SANER(F-SAM)"].inner.rho
    assert (built["F-SAM"].sigma, built["F-SAM"].lam) == (1.0, 0.95)
    assert built["SANER(F-SAM)"].inner.config() == built["F-SAM"].config()
    assert built["SANER(SAM)"].alpha == 0.5 and built["SANER(SAM)"].k == exp.fit["epochs"] // 2
    assert exp.fit["batch_size"] % built["OBF"].m == 0
