"""ipywidgets panels that rerun an experiment and redraw its figure when a control moves.

On the static website a panel shows its build-time state; on Colab or Jupyter it is live.
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

from bncourse.experiments import DISTRIBUTIONS, bn_activations
from bncourse.plots import plot_bn_activations

__all__ = ["bn_explorer", "format_bn_stats"]


def format_bn_stats(result) -> str:
    """One line of batch statistics of a :func:`bn_activations` result, for a label."""
    d = result.data
    return (
        f"batch: mean {d['x'].mean():+.3f}, std {d['x'].std():.3f} -> after BN: mean {d['y_mean'][0]:+.1e}, "
        f"std {d['y_std'][0]:.4f}; std of mu_B over batches {d['mu_B'].std():.3f}"
    )


def bn_explorer(
    batch_size: int = 32, dist: str = "normal", loc: float = 3.0, scale: float = 2.0, draw: bool = True
) -> widgets.VBox:
    """Controls for batch size, input distribution, mean and scale -> activations before/after BN.

    Args:
        batch_size, dist, loc, scale: initial values of the controls (see :func:`bn_activations`).
        draw: draw the figure for the initial values now; with False the figure appears when a control
            moves (for a page that has already drawn the default figure as a plain plot).

    Returns:
        A ``VBox`` with the controls, a statistics label and an output area holding the figure.
    """
    style = {"description_width": "initial"}
    size = widgets.IntSlider(value=batch_size, min=2, max=256, step=1, description="batch size m", style=style)
    kind = widgets.Dropdown(options=list(DISTRIBUTIONS), value=dist, description="input", style=style)
    mean = widgets.FloatSlider(value=loc, min=-10.0, max=10.0, step=0.5, description="input mean", style=style)
    std = widgets.FloatSlider(value=scale, min=0.1, max=10.0, step=0.1, description="input std", style=style)
    stats = widgets.HTML()
    out = widgets.Output()

    def redraw(_=None, figure: bool = True) -> None:
        result = bn_activations(batch_size=size.value, dist=kind.value, loc=mean.value, scale=std.value)
        stats.value = f"<small>{format_bn_stats(result)}</small>"
        if not figure:
            return
        with out:
            out.clear_output(wait=True)
            fig = plot_bn_activations(result)
            display(fig)
            plt.close(fig)

    for control in (size, kind, mean, std):
        control.observe(redraw, names="value")
    redraw(figure=draw)
    return widgets.VBox([widgets.HBox([size, kind]), widgets.HBox([mean, std]), stats, out])
