"""Chapter 4's ipywidgets panel: running statistics against the true ones.

On the static website the panel shows its build-time state; on Colab or Jupyter it is live.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from bncourse.experiments.inference import running_stats
from bncourse.plots.inference import plot_running_stats
from bncourse.result import Result
from bncourse.widgets import show_figure

__all__ = ["format_running_stats", "running_stats_explorer"]


def format_running_stats(result: Result) -> str:
    """One line: each running average's distance to the true mean and variance after the last step."""
    d, cfg = result.data, result.config
    mean, var = float(d["true_mean"][-1]), float(d["true_var"][-1])
    parts = [
        f"momentum {mom:g}: mean {np.asarray(d['ema_mean'])[k, -1] - mean:+.3f}, "
        f"var {np.asarray(d['ema_var'])[k, -1] / var - 1:+.1%}"
        for k, mom in enumerate(cfg["momenta"])
    ]
    parts.append(f"momentum=None: mean {d['cma_mean'][-1] - mean:+.3f}, var {d['cma_var'][-1] / var - 1:+.1%}")
    return f"after {cfg['num_steps']} steps, error against the truth: " + "; ".join(parts)


def running_stats_explorer(
    momentum: float = 0.1, batch_size: int = 32, num_steps: int = 300, drift: float = 0.0, draw: bool = True
) -> widgets.VBox:
    """Controls for momentum, batch size, number of steps and drift -> running statistics vs the true ones.

    Args:
        momentum, batch_size, num_steps, drift: initial values of the controls (see :func:`running_stats`).
        draw: draw the figure for the initial values now; with False it appears when a control moves (for a
            page that has already drawn the default figure as a plain plot).

    Returns:
        A ``VBox`` with the controls, a line of errors and an output area holding the figure.
    """
    style = {"description_width": "initial"}
    mom = widgets.FloatLogSlider(
        value=momentum, base=10, min=-3, max=0, step=0.1, description="momentum (PyTorch)", style=style
    )
    size = widgets.IntSlider(value=batch_size, min=2, max=512, description="batch size", style=style)
    steps = widgets.IntSlider(value=num_steps, min=10, max=3000, step=10, description="steps", style=style)
    shift = widgets.FloatSlider(value=drift, min=-6.0, max=6.0, step=0.5, description="drift of the mean", style=style)
    stats = widgets.HTML()
    out = widgets.Output()

    def redraw(_=None, figure: bool = True) -> None:
        result = running_stats(momenta=(mom.value,), batch_size=size.value, num_steps=steps.value, drift=shift.value)
        stats.value = f"<small>{format_running_stats(result)}</small>"
        if not figure:
            return
        show_figure(out, plot_running_stats(result))

    for control in (mom, size, steps, shift):
        control.observe(redraw, names="value")
    redraw(figure=draw)
    return widgets.VBox([widgets.HBox([mom, size]), widgets.HBox([steps, shift]), stats, out])
