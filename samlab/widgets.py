"""Interactive views for the notebooks: thin ipywidgets wrappers over tested functions.

Notebook 01: :func:`linear_explorer` puts sliders for ρ and the noise rate over
:func:`linear_view`, which trains GD and 1-SAM on the two-Gaussian mixture (our toy
data) through :func:`samlab.probes.run_linear_grid` and draws
:func:`samlab.plots.linear.plot_linear_view`. Call :func:`linear_view` directly for a
static figure (what the notebook shows when read without a live kernel).
"""

from __future__ import annotations

import functools

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from samlab import data as _data
from samlab.plots.linear import plot_linear_view
from samlab.probes import run_linear_grid
from samlab.train import History

__all__ = ["RHO_OPTIONS", "linear_explorer", "linear_runs", "linear_view"]

#: The ρ values offered by the slider of :func:`linear_explorer`.
RHO_OPTIONS = (0.03, 0.1, 0.3, 1.0, 3.0)


@functools.lru_cache(maxsize=32)
def linear_runs(
    rho: float, rate: float, n: int = 1000, d: int = 200, separation: float = 3.0, epochs: int = 60, lr: float = 0.5,
    every: int = 2, noise_seed: int = 0,
) -> tuple[dict[str, History], float]:
    """GD and 1-SAM at ``rho`` on the mixture with ``rate`` symmetric-flip noise, and the
    mean ‖x‖ of its training inputs. Cached: moving a slider back costs nothing."""
    ds = _data.load("gaussian", n=n, d=d, separation=separation, noise="symmetric-flip", rate=rate, noise_seed=noise_seed,
                    val_fraction=0.0)  # notebook 01: the full-batch linear model sees every example
    runs = run_linear_grid(ds, [rho], epochs=epochs, lr=lr, every=every, batch_sam=False)
    return runs, float(torch.linalg.vector_norm(ds.x_train, dim=1).mean())


def linear_view(rho: float = 0.3, rate: float = 0.3, **sizes) -> Figure:
    """The static view: r(m) at ``rho`` and the clean/noisy ratio for GD vs 1-SAM at ``rate``."""
    runs, norm_x = linear_runs(float(rho), float(rate), **sizes)
    return plot_linear_view(runs, rho, norm_x, title=f"two-Gaussian mixture (our toy data), {rate:.0%} flipped labels, ρ={rho:g}")


def linear_explorer(rho: float = 0.3, rate: float = 0.3, **sizes):
    """Sliders for ρ and the noise rate over :func:`linear_view` (needs a live kernel)."""
    import ipywidgets as widgets

    def show(rho: float, rate: float) -> None:
        linear_view(rho, rate, **sizes)
        plt.show()

    return widgets.interactive(
        show,
        rho=widgets.SelectionSlider(options=sorted({*RHO_OPTIONS, rho}), value=rho, description="ρ", continuous_update=False),
        rate=widgets.FloatSlider(value=rate, min=0.05, max=0.45, step=0.05, description="noise rate", continuous_update=False),
    )
