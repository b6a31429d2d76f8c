"""The book's interactive panels: one spec per panel feeds both the live widget and the website's static grid.

A :class:`Panel` names its controls (:class:`Control`: label, kind, the values or range it offers, and the
values the static grid shows) and wires an experiment to a plot: ``compute(**values) -> result``,
``draw(result) -> Figure`` and, for a line of text under the controls, ``describe(result) -> str``. From
the same spec :func:`live` builds the ipywidgets panel (controls -> compute -> draw) and :func:`static_grid`
draws every point of the grid in advance (:func:`bncourse.static_views.figure_grid_html`). A chapter calls
:func:`show`, which pairs the two in one output; the grid is drawn only while the book is built.

The builders (:func:`sgd_panel`, :func:`critique_panel`, :func:`bn_panel`, :func:`running_stats_panel`,
:func:`lenet_panel`, :func:`batchsize_panel`, :func:`norms_panel`) only wire: experiments compute
(``bncourse.experiments``), plots draw (``bncourse.plots``). A value that a control does not offer (an
initial value, or a value of its static grid) is refused with a ``ValueError`` naming the panel, the
argument and the control, before anything is loaded or trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
from matplotlib.figure import Figure

from bncourse.static_views import LiveOrStatic, book_build, figure_grid_html

__all__ = [
    "CRITIQUE_LRS",
    "CRITIQUE_MLP",
    "LENET_BATCH_SIZES",
    "LENET_SEEDS",
    "SGD_BATCH_SIZES",
    "SGD_INIT_STDS",
    "Control",
    "Panel",
    "batchsize_figure",
    "batchsize_panel",
    "bn_panel",
    "check_option",
    "check_range",
    "critique_panel",
    "format_batchsize_choice",
    "format_bn_stats",
    "format_critique",
    "format_lenet_run",
    "format_running_stats",
    "format_sgd_run",
    "lenet_panel",
    "live",
    "norms_panel",
    "running_stats_panel",
    "sgd_panel",
    "show",
    "show_figure",
    "static_grid",
]

SLIDERS = {"int": widgets.IntSlider, "float": widgets.FloatSlider, "log": widgets.FloatLogSlider}
CHOICES = {"choice": widgets.Dropdown, "toggle": widgets.ToggleButtons, "steps": widgets.SelectionSlider}
STYLE = {"description_width": "initial"}


def check_option(panel: str, argument: str, control: str, value, options) -> None:
    """Refuse a ``value`` that the control offers no option for.

    Args:
        panel: the function building the panel, e.g. ``"bn_panel"``.
        argument: the argument that set the value.
        control: the control's label on the panel.
        value: the value.
        options: the values the control offers (for ``(label, value)`` pairs, the values).

    Raises:
        ValueError: ``value`` is not one of ``options``; the message names the panel, argument and control.
    """
    if not any(value == option for option in options):
        offered = ", ".join(repr(o) for o in options)
        raise ValueError(
            f"{panel}: {argument}={value!r} is not an option of the {control!r} control; choose one of {offered}"
        )


def check_range(panel: str, argument: str, control: str, value, low, high) -> None:
    """Refuse a ``value`` outside a slider's ``[low, high]`` (the slider would silently clamp it).

    Raises:
        ValueError: ``value`` is outside the range; the message names the panel, argument and control.
    """
    if not low <= value <= high:
        raise ValueError(f"{panel}: {argument}={value!r} is outside the {control!r} slider's range {low} to {high}")


def _plain(value):
    """A numpy scalar as the Python number it holds (shown as ``0.3``, not ``np.float64(0.3)``)."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class Control:
    """One control of a panel.

    Attributes:
        name: the keyword of ``compute`` it sets (and the builder's argument for its initial value).
        label: what the panel shows beside it (and what an error message names).
        kind: ``"int"``, ``"float"`` or ``"log"`` (sliders over ``low``..``high`` by ``step``; for ``"log"``
            the step is in powers of ten), ``"choice"`` (drop-down), ``"toggle"`` (buttons) or ``"steps"``
            (a slider over ``options``).
        value: the initial value.
        options: the values a choice offers, or ``(label, value)`` pairs.
        low, high, step: a slider's range.
        grid: the values the static grid shows (it must hold ``value``); empty: fixed at ``value`` there.
    """

    name: str
    label: str
    kind: str
    value: Any
    options: tuple = ()
    low: float = 0.0
    high: float = 0.0
    step: float = 1.0
    grid: tuple = ()

    def values(self) -> list:
        """The values a choice offers (the second item of ``(label, value)`` pairs)."""
        return [o[1] if isinstance(o, tuple) else o for o in self.options]

    def shown(self, value) -> Any:
        """How the static grid shows ``value``: its option label, else the value itself."""
        labels = {o[1]: o[0] for o in self.options if isinstance(o, tuple)}
        return labels.get(value, _plain(value))

    def check(self, panel: str, argument: str, value) -> None:
        """Refuse a ``value`` this control cannot take (see :func:`check_option`, :func:`check_range`)."""
        if self.kind in CHOICES:
            check_option(panel, argument, self.label, value, self.values())
        else:
            check_range(panel, argument, self.label, value, self.low, self.high)

    def widget(self, continuous: bool = True) -> widgets.ValueWidget:
        """A new ipywidgets control at the initial value (sliders report while dragged if ``continuous``)."""
        if self.kind in CHOICES:
            extra = {"continuous_update": continuous} if self.kind == "steps" else {}
            description = "" if self.kind == "toggle" else self.label
            return CHOICES[self.kind](
                options=list(self.options), value=self.value, description=description, style=STYLE, **extra
            )
        limits = {"min": self.low, "max": self.high}
        if self.kind == "log":
            limits = {"base": 10, "min": math.log10(self.low), "max": math.log10(self.high)}
        return SLIDERS[self.kind](
            value=self.value,
            step=self.step,
            description=self.label,
            continuous_update=continuous,
            style=STYLE,
            **limits,
        )


@dataclass(frozen=True)
class Panel:
    """A panel's spec: its controls and how an experiment and a plot are wired to them.

    Construction checks every control's initial value and static-grid values (the message names the
    control), so a wrong value fails before anything is computed, with or without the grid.

    Attributes:
        name: the builder's name, for error messages.
        controls: the controls, in the order shown.
        compute: ``compute(**values) -> result`` for one value of every control.
        draw: ``draw(result) -> Figure``.
        describe: ``describe(result) -> str``, a line shown under the controls; None: no line.
        alt: the figure's alt text on the website (the grid appends the control values).
        slow: ``compute`` trains (seconds): sliders report only when released, ``busy`` is shown while it
            runs, and a panel built with ``draw=False`` computes nothing until a control moves.
        busy: the line shown while a slow ``compute`` runs.
    """

    name: str
    controls: tuple[Control, ...]
    compute: Callable[..., Any]
    draw: Callable[[Any], Figure]
    describe: Callable[[Any], str] | None = None
    alt: str = ""
    slow: bool = False
    busy: str = "training..."

    def __post_init__(self) -> None:
        for c in self.controls:
            c.check(self.name, c.name, c.value)
            for v in c.grid:
                c.check(self.name, f"grid value of {c.name}", v)
            if c.grid and not any(c.value == v for v in c.grid):
                raise ValueError(
                    f"{self.name}: the static grid of the {c.label!r} control must show its value {c.value!r}; "
                    f"it shows {', '.join(repr(_plain(v)) for v in c.grid)}"
                )

    def values(self) -> dict[str, Any]:
        """The initial value of every control, by name."""
        return {c.name: c.value for c in self.controls}

    def figure(self, **values) -> Figure:
        """``draw(compute(**values))``: the figure for these control values."""
        return self.draw(self.compute(**values))


def show_figure(out: widgets.Output, fig) -> None:
    """Replace what ``out`` shows by the matplotlib figure ``fig``, then close ``fig`` (no second copy)."""
    with out:
        out.clear_output(wait=True)
        display(fig)
    plt.close(fig)


def live(panel: Panel, draw: bool = True) -> widgets.VBox:
    """The live ipywidgets panel of ``panel``: moving a control recomputes, redescribes and redraws.

    Args:
        panel: the spec.
        draw: draw the figure for the initial values now; with False it appears when a control moves (for
            a page that has already drawn the default figure as a plain plot). A fast panel still shows its
            line of text at once.

    Returns:
        A ``VBox``: the controls (one wrapping row), the line of text (if the panel has one), the figure.
    """
    controls = {c.name: c.widget(continuous=not panel.slow) for c in panel.controls}
    label, out = widgets.HTML(), widgets.Output()

    def redraw(_=None, figure: bool = True) -> None:
        if panel.slow:
            label.value = f"<small>{panel.busy}</small>"
        result = panel.compute(**{name: w.value for name, w in controls.items()})
        label.value = f"<small>{panel.describe(result)}</small>" if panel.describe else ""
        if figure:
            show_figure(out, panel.draw(result))

    for w in controls.values():
        w.observe(redraw, names="value")
    if draw or not panel.slow:
        redraw(figure=draw)
    row = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
    return widgets.VBox([row, label, out] if panel.describe or panel.slow else [row, out])


def static_grid(panel: Panel, alt: str | None = None, dpi: int = 60, title: str = "") -> str:
    """The website's view of ``panel``: :func:`bncourse.static_views.figure_grid_html` over the controls'
    ``grid`` values (the other controls fixed at their initial values): each point's figure, and its
    ``describe`` line as a caption, from one ``compute``.

    Args:
        panel: the spec.
        alt: the figure's alt text (default ``panel.alt``).
        dpi, title: see :func:`bncourse.static_views.figure_grid_html`.
    """
    shown = [c for c in panel.controls if c.grid]
    by_label = {c.label: {c.shown(v): v for v in c.grid} for c in shown}

    def render(**labels) -> Figure | tuple[Figure, str]:
        chosen = {c.name: by_label[c.label][labels[c.label]] for c in shown}
        result = panel.compute(**{**panel.values(), **chosen})
        return (panel.draw(result), panel.describe(result)) if panel.describe else panel.draw(result)

    grid = {label: list(values) for label, values in by_label.items()}
    defaults = {c.label: c.shown(c.value) for c in shown}
    return figure_grid_html(render, grid, defaults, alt if alt is not None else panel.alt, dpi=dpi, title=title)


def show(
    panel: Panel, draw: bool = True, static: bool | None = None, alt: str | None = None, dpi: int = 60
) -> LiveOrStatic:
    """One output with the live panel and, while the book is built, its static grid (see the module docstring).

    Args:
        panel: the spec.
        draw: see :func:`live`.
        static: draw the static grid; default :func:`bncourse.static_views.book_build`.
        alt, dpi: see :func:`static_grid`.
    """
    if static is None:
        static = book_build()
    return LiveOrStatic(live(panel, draw=draw), static_grid(panel, alt=alt, dpi=dpi) if static else None)


def _dataset(dataset) -> Callable[[], Any]:
    """Load ``dataset`` (a name) once, on first use; a loaded dataset is returned as it is."""
    loaded = [] if isinstance(dataset, str) else [dataset]

    def get():
        if not loaded:
            from bncourse import data as bdata

            loaded.append(bdata.load_dataset(dataset))
        return loaded[0]

    return get


def _precomputed(select: Callable[..., Any], train: Callable[..., Any]) -> Callable[..., Any]:
    """``compute`` that looks a point up with ``select`` and trains it with ``train`` where that finds none
    (``select`` raises ``ValueError``)."""

    def compute(**values):
        try:
            return select(**values)
        except ValueError:
            return train(**values)

    return compute


def _with(grid: Sequence, value) -> tuple:
    """``grid`` and ``value``, sorted, each once (a default grid always shows the initial value)."""
    return tuple(sorted({_plain(v) for v in grid} | {_plain(value)}))


# Chapter 1 -----------------------------------------------------------------------------------------------------

SGD_BATCH_SIZES = [15, 30, 60, 120, 240, 600]  # sgd_panel's drop-downs
SGD_INIT_STDS = [0.01, 0.1, 0.5, 1.0, 2.0, 4.0]


def format_sgd_run(result) -> str:
    """One line about a one-run :func:`bncourse.experiments.sgd_sensitivity.lr_init_sweep` result, for a label."""
    from bncourse.experiments.sgd_sensitivity import OUTCOMES

    d, cfg = result.data, result.config
    size = int(d["batch_sizes"][0])
    return (
        f"lr {float(d['lrs'][0]):g}, batch {size}, init std {float(d['init_stds'][0]):g}: "
        f"{cfg['num_examples'] // size} steps, final training loss {float(d['final_loss'].flat[0]):.3g}, "
        f"test accuracy {float(d['final_acc'].flat[0]):.3f} ({OUTCOMES[int(d['outcome'].flat[0])]})"
    )


def sgd_panel(
    lr: float = 0.3,
    batch_size: int = 60,
    init_std: float = 0.5,
    num_examples: int | None = None,
    num_evals: int | None = None,
    dataset="fashion_mnist",
    reference=None,
    sweep=None,
) -> Panel:
    """Learning rate, batch size and initial weight scale -> loss and accuracy curves of the paper's MLP.

    A point not in ``sweep`` trains the MLP (784-100-100-100-10 sigmoid, seed 0) on ``num_examples``
    examples with :func:`bncourse.experiments.sgd_sensitivity.lr_init_sweep` (a second or a few on a CPU);
    the figure is :func:`bncourse.plots.sgd.plot_training_curves`.

    Args:
        lr, batch_size, init_std: initial values of the controls.
        num_examples: training examples per run (default: the sweep's, else 60,000).
        num_evals: evaluations per run (default: the sweep's, else 5); ``num_examples // batch_size`` must be
            a multiple of it for every offered batch size.
        dataset: a dataset name (loaded on the first run) or a loaded :class:`bncourse.data.Dataset`.
        reference: a one-run result drawn in grey for comparison, or None.
        sweep: an ``lr_init_sweep`` result with these settings: its runs are looked up, not retrained, and the
            static grid shows its learning rates and scales (at ``batch_size``). None: no grid.
    """
    from bncourse.experiments import sgd_sensitivity as exp_sens
    from bncourse.plots import sgd as plot_sgd

    cfg = sweep.config if sweep is not None else {}
    examples = num_examples if num_examples is not None else cfg.get("num_examples", 60_000)
    evals = num_evals if num_evals is not None else cfg.get("num_evals", 5)
    ds = _dataset(dataset)

    def train(lr, batch_size, init_std):
        return exp_sens.lr_init_sweep(
            lrs=(lr,),
            init_stds=(init_std,),
            batch_sizes=(batch_size,),
            num_examples=examples,
            num_evals=evals,
            dataset=ds(),
        )

    grid = {"lrs": (), "init_stds": ()} if sweep is None else {k: tuple(sweep.data[k]) for k in ("lrs", "init_stds")}
    return Panel(
        "sgd_panel",
        (
            Control("lr", "learning rate", "log", lr, low=0.01, high=10.0, step=0.25, grid=grid["lrs"]),
            Control("batch_size", "batch size", "choice", batch_size, tuple(SGD_BATCH_SIZES)),
            Control("init_std", "init std", "choice", init_std, tuple(SGD_INIT_STDS), grid=grid["init_stds"]),
        ),
        train if sweep is None else _precomputed(lambda **v: exp_sens.select_run(sweep, **v), train),
        lambda result: plot_sgd.plot_training_curves(result, reference=reference),
        format_sgd_run,
        alt=f"Training loss and test accuracy against training examples seen for the chosen learning rate and "
        f"initial weight scale (batch {batch_size})" + (", the reference run in grey" if reference else ""),
        slow=True,
    )


# Chapter 2 -----------------------------------------------------------------------------------------------------

CRITIQUE_LRS = (0.02, 0.1, 0.5)  # the learning rates chapter 2 precomputes for critique_panel
CRITIQUE_MLP = {"model": "mlp", "num_steps": 200, "measure_every": 40, "eval_every": 40}  # its MLP runs


def format_critique(result, network: str) -> str:
    """One line about one network of a :func:`bncourse.experiments.critique.critique_run` result, for a label."""
    d, k = result.data, result.config["networks"].index(network)
    return (
        f"{network}, lr {result.config['lr']:g}: test accuracy {float(d['test'][k][-1]):.3f} after "
        f"{int(d['steps'][-1])} steps; ICS mean cos(G, G') {float(np.nanmean(d['ics_cos'][k][:, 1:])):.3f}; "
        f"median effective beta-smoothness {float(np.nanmedian(d['beta'][k])):.3g}"
    )


def critique_panel(
    results: dict | None = None, bn: bool = True, noise: bool = False, lr: float = 0.1, dataset="fashion_mnist"
) -> Panel:
    """BN on/off, noise on/off and learning rate -> the critique's measurements of an MLP.

    The networks are :func:`bncourse.experiments.critique.critique_run` with ``model="mlp"``: standard (BN
    off; the noise toggle then has no effect), BN, and noisy BN (BN on, noise on). A learning rate not in
    ``results`` trains the three networks (a few seconds on a CPU) and is added to it. The figure is
    :func:`bncourse.plots.critique.plot_critique_panel`.

    Args:
        results: precomputed results by learning rate, each holding the three networks (updated in place);
            the static grid shows these learning rates. None starts empty.
        bn, noise, lr: initial values of the controls.
        dataset: a dataset name or a loaded :class:`bncourse.data.Dataset`, used for new learning rates.
    """
    from bncourse.experiments import critique as exp_critique
    from bncourse.plots import critique as plot_critique

    cache = results if results is not None else {}
    rates = tuple(sorted(set(CRITIQUE_LRS) | set(cache) | {lr}))

    def compute(bn, noise, lr):
        if lr not in cache:
            cache[lr] = exp_critique.critique_run(lr=lr, dataset=dataset, **CRITIQUE_MLP)
        return cache[lr], ("standard" if not bn else ("noisy-bn" if noise else "bn"))

    return Panel(
        "critique_panel",
        (
            Control("bn", "BN on / BN off", "toggle", bn, (("BN on", True), ("BN off", False)), grid=(True, False)),
            Control(
                "noise",
                "noise off / noise on",
                "toggle",
                noise,
                (("noise off", False), ("noise on", True)),
                grid=(False, True),
            ),
            Control("lr", "learning rate", "choice", lr, rates, grid=_with(cache, lr) if cache else ()),
        ),
        compute,
        lambda r: plot_critique.plot_critique_panel(*r),
        lambda r: format_critique(*r),
        alt="Test accuracy, ICS cosine, loss range along the gradient and effective beta-smoothness of an MLP "
        "for the chosen network and learning rate, the other networks in grey",
        slow=True,
        busy="training three MLPs...",
    )


# Chapter 3 -----------------------------------------------------------------------------------------------------


def format_bn_stats(result) -> str:
    """One line of batch statistics of a :func:`bncourse.experiments.bn_activations` result, for a label."""
    d = result.data
    return (
        f"batch: mean {d['x'].mean():+.3f}, std {d['x'].std():.3f} -> after BN: mean {d['y_mean'][0]:+.1e}, "
        f"std {d['y_std'][0]:.4f}; std of mu_B over batches {d['mu_B'].std():.3f}"
    )


def bn_panel(batch_size: int = 32, dist: str = "normal", loc: float = 3.0, scale: float = 2.0) -> Panel:
    """Batch size, input distribution, mean and scale -> one batch before and after BN, and the batch
    statistics' spread (:func:`bncourse.experiments.bn_activations`, :func:`bncourse.plots.plot_bn_activations`).

    Args:
        batch_size, dist, loc, scale: initial values of the controls. The static grid shows batch sizes
            4 to 128 (and ``batch_size``) and every distribution, at ``loc`` and ``scale``.
    """
    from bncourse.experiments import DISTRIBUTIONS, bn_activations
    from bncourse.plots import plot_bn_activations

    return Panel(
        "bn_panel",
        (
            Control(
                "batch_size",
                "batch size m",
                "int",
                batch_size,
                low=2,
                high=256,
                grid=_with((4, 8, 16, 32, 64, 128), batch_size),
            ),
            Control("dist", "input", "choice", dist, tuple(DISTRIBUTIONS), grid=tuple(DISTRIBUTIONS)),
            Control("loc", "input mean", "float", loc, low=-10.0, high=10.0, step=0.5),
            Control("scale", "input std", "float", scale, low=0.1, high=10.0, step=0.1),
        ),
        bn_activations,
        plot_bn_activations,
        format_bn_stats,
        alt="Histograms of one batch before and after BN, and batch mean against batch standard deviation over "
        "200 batches, for the chosen batch size m and input distribution",
    )


# Chapter 4 -----------------------------------------------------------------------------------------------------


def format_running_stats(result) -> str:
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


def running_stats_panel(momentum: float = 0.1, batch_size: int = 32, num_steps: int = 300, drift: float = 0.0) -> Panel:
    """Momentum, batch size, number of steps and drift -> running statistics against the true ones
    (:func:`bncourse.experiments.inference.running_stats`, :func:`bncourse.plots.inference.plot_running_stats`).

    Args:
        momentum, batch_size, num_steps, drift: initial values of the controls. The static grid shows
            momenta 0.01, 0.1, 0.3, 1, batch sizes 4, 32, 256 and 300 or 1,000 steps (each with the initial
            value), at ``drift``.
    """
    from bncourse.experiments.inference import running_stats
    from bncourse.plots.inference import plot_running_stats

    return Panel(
        "running_stats_panel",
        (
            Control(
                "momentum",
                "momentum (PyTorch)",
                "log",
                momentum,
                low=0.001,
                high=1.0,
                step=0.1,
                grid=_with((0.01, 0.1, 0.3, 1.0), momentum),
            ),
            Control(
                "batch_size", "batch size", "int", batch_size, low=2, high=512, grid=_with((4, 32, 256), batch_size)
            ),
            Control(
                "num_steps", "steps", "int", num_steps, low=10, high=3000, step=10, grid=_with((300, 1000), num_steps)
            ),
            Control("drift", "drift of the mean", "float", drift, low=-6.0, high=6.0, step=0.5),
        ),
        lambda momentum, **kw: running_stats(momenta=(momentum,), **kw),
        plot_running_stats,
        format_running_stats,
        alt="Running mean and running variance against the true ones over training, for the chosen momentum, "
        f"batch size and number of steps, with the true mean drifting by {drift:g}",
    )


# Chapter 5 -----------------------------------------------------------------------------------------------------

LENET_BATCH_SIZES = [16, 32, 64, 128, 256]  # lenet_panel's batch size drop-down
LENET_SEEDS = [0, 1, 2]


def format_lenet_run(result) -> str:
    """One line about the first run of a :func:`bncourse.experiments.conv.lenet_sweep` result, for a label."""
    d, cfg = result.data, result.config
    bn = "with BN" if bool(d["bn"][0]) else "without BN"
    runs = len(cfg["lrs"]) * len(cfg["seeds"]) * len(cfg["norms"])  # > 1: a row of a larger sweep
    took = f"{result.meta['train_wall_time_s']:.1f} s on {result.meta['device']}"
    return (
        f"LeNet {bn}, lr {float(d['lr'][0]):g}, batch {cfg['batch_size']}: test accuracy "
        f"{float(d['test_acc'][0][-1]):.3f} after {int(d['steps'][-1])} steps "
        + (f"(trained in {took})" if runs == 1 else f"(one of {runs} runs trained in {took})")
    )


def lenet_panel(
    lr: float = 0.3,
    bn: bool = True,
    batch_size: int | None = None,
    seed: int = 0,
    num_steps: int | None = None,
    eval_size: int | None = None,
    dataset="fashion_mnist",
    sweep=None,
) -> Panel:
    """Learning rate, BN on/off, batch size and seed -> one LeNet run's curves and channel statistics.

    A point not in ``sweep`` retrains LeNet for ``num_steps`` steps with
    :func:`bncourse.experiments.conv.lenet_sweep` (seconds on a CPU); the figure is
    :func:`bncourse.plots.conv.plot_lenet_run`.

    Args:
        lr, bn, batch_size, seed: initial values of the controls (``lr`` from the full sweep's ladder;
            ``batch_size`` default: the sweep's, else 128).
        num_steps, eval_size: SGD steps per run and test images evaluated every ``num_steps // 8`` steps
            (default: the sweep's, else 400 and 2,000).
        dataset: a dataset name (loaded on the first run) or a loaded :class:`bncourse.data.Dataset`.
        sweep: a ``lenet_sweep`` result: its runs are looked up, not retrained, and the static grid shows its
            learning rates, BN on/off and seeds (at its batch size). None: no grid.
    """
    from bncourse.experiments import conv as exp_conv
    from bncourse.plots import conv as plot_conv

    cfg = sweep.config if sweep is not None else {"lrs": (), "seeds": (), "batch_size": 128}
    size = batch_size if batch_size is not None else cfg["batch_size"]
    steps = num_steps if num_steps is not None else cfg.get("num_steps", 400)
    evals = eval_size if eval_size is not None else cfg.get("eval_size", 2000)
    ds = _dataset(dataset)

    def select(lr, bn, batch_size, seed):
        if sweep is None or batch_size != cfg["batch_size"]:
            raise ValueError("not in the sweep")
        return exp_conv.select_runs(sweep, lr, bn, seed)

    def train(lr, bn, batch_size, seed):
        return exp_conv.lenet_sweep(
            lrs=(lr,),
            seeds=(seed,),
            norms=("bn" if bn else None,),
            num_steps=steps,
            batch_size=batch_size,
            eval_every=max(1, steps // 8),
            eval_size=evals,
            dataset=ds(),
            progress=False,
        )

    lrs = _with(set(exp_conv.LENET_SCALES["full"]["lrs"]) | set(cfg["lrs"]), lr)
    return Panel(
        "lenet_panel",
        (
            Control("lr", "learning rate", "steps", lr, lrs, grid=tuple(cfg["lrs"])),
            Control(
                "bn",
                "with BN / without BN",
                "toggle",
                bn,
                (("with BN", True), ("without BN", False)),
                grid=(True, False) if sweep is not None else (),
            ),
            Control("batch_size", "batch size", "choice", size, tuple(LENET_BATCH_SIZES)),
            Control("seed", "seed", "choice", seed, tuple(LENET_SEEDS), grid=tuple(cfg["seeds"])),
        ),
        _precomputed(select, train),
        plot_conv.plot_lenet_run,
        format_lenet_run,
        alt="Test accuracy, training loss and per-channel statistics of the nonlinearity's inputs for one run, "
        "for the chosen learning rate, BN on or off, and seed",
        slow=True,
    )


# Chapter 6 -----------------------------------------------------------------------------------------------------


def format_batchsize_choice(sweep, norm: str, batch_size: int) -> str:
    """One line for :func:`batchsize_panel`: the noise of a normalised value and the sweep's accuracy."""
    from bncourse.experiments.batchsize import normalisation_noise
    from bncourse.plots.batchsize import NORM_LABELS

    values = normalisation_noise(norm, batch_size, value=1.0)
    i, j = sweep.config["norms"].index(norm), list(sweep.data["batch_sizes"]).index(batch_size)
    acc = float(np.nanmean(sweep.data["test_acc"][i][j]))
    return (
        f"{NORM_LABELS.get(norm, norm)}, b = {batch_size}: the example x = 1 is normalised to "
        f"{values.mean():.3f} +- {values.std():.3f} (ideal: 1); test accuracy in the sweep {acc:.3f}"
    )


def batchsize_figure(sweep, norm: str = "bn", batch_size: int = 4, seed: int = 0):
    """:func:`batchsize_panel`'s figure: the normalised value of the example x = 1 over random batches
    (:func:`bncourse.experiments.batchsize.normalisation_noise`) beside the sweep's accuracy."""
    from bncourse.experiments.batchsize import normalisation_noise
    from bncourse.plots.batchsize import plot_batchsize_explorer

    values = normalisation_noise(norm, batch_size, value=1.0, seed=seed)
    return plot_batchsize_explorer(sweep, values, norm, batch_size)


def batchsize_panel(sweep, norm: str = "bn", batch_size: int = 4) -> Panel:
    """Examples per batch statistic and the norm -> statistics noise (recomputed, instant) and the accuracy
    looked up in ``sweep`` (a :func:`bncourse.experiments.batchsize.batchsize_sweep` result; nothing is
    retrained).

    Args:
        sweep: the sweep whose accuracies are shown.
        norm, batch_size: initial values of the controls (``batch_size`` one of the sweep's); the static
            grid shows every norm and batch size of the sweep.
    """
    from bncourse.plots.batchsize import NORM_LABELS

    sizes = tuple(sorted(int(b) for b in sweep.data["batch_sizes"]))
    norms = tuple(sweep.config["norms"])
    return Panel(
        "batchsize_panel",
        (
            Control("batch_size", "examples per statistic b", "steps", batch_size, sizes, grid=sizes),
            Control("norm", "norm", "choice", norm, tuple((NORM_LABELS.get(n, n), n) for n in norms), grid=norms),
        ),
        lambda batch_size, norm: (norm, batch_size),
        lambda r: batchsize_figure(sweep, *r),
        lambda r: format_batchsize_choice(sweep, *r),
        alt="The normalised value of one example over random batches, and the sweep's test accuracy against the "
        "examples per batch statistic with the chosen point circled, for the chosen b and norm",
    )


# Chapter 7 -----------------------------------------------------------------------------------------------------


def norms_panel(result, norm: str = "gn", batch_size: int | None = None) -> Panel:
    """Normalisation and batch size -> which elements share a statistic, how many values each statistic has in
    ConvNet3, and the test errors measured in ``result`` at that batch size.

    Nothing is trained: the figure looks ``result`` (a
    :func:`bncourse.experiments.norms_compare.norms_batchsize` result) up with
    :func:`bncourse.plots.norms_compare.plot_norm_lookup`.

    Args:
        result: the live or stored sweep.
        norm, batch_size: initial values (default batch size: the smallest in ``result``); the static grid
            shows every norm and batch size.
    """
    from bncourse.plots.norms_compare import AXES_NAMES, plot_norm_lookup

    sizes = tuple(sorted({int(b) for b in result.data["batch_size"]}, reverse=True))
    kinds = ("bn", "ln", "in", "gn")
    return Panel(
        "norms_panel",
        (
            Control("norm", "norm", "choice", norm, tuple((AXES_NAMES[k], k) for k in kinds), grid=kinds),
            Control(
                "batch_size",
                "batch size",
                "choice",
                batch_size if batch_size is not None else sizes[-1],
                sizes,
                grid=sizes,
            ),
        ),
        lambda norm, batch_size: (norm, batch_size),
        lambda r: plot_norm_lookup(result, *r),
        alt="The elements sharing one statistic and the test errors, for the chosen normalisation and batch size",
    )
