"""ipywidgets panels that rerun an experiment and redraw its figure when a control moves.

On the static website a panel shows its build-time state; on Colab or Jupyter it is live. An initial value
that a control does not offer (a dropdown's options, a slider's range) is refused with a ``ValueError`` that
names the panel, the argument and the control, before anything is loaded or trained.
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

from bncourse.experiments import DISTRIBUTIONS, bn_activations
from bncourse.plots import plot_bn_activations

__all__ = ["bn_explorer", "check_option", "check_range", "format_bn_stats", "show_figure"]


def check_option(panel: str, argument: str, control: str, value, options) -> None:
    """Refuse an initial ``value`` that the control offers no option for.

    Args:
        panel: the function building the panel, e.g. ``"bn_explorer"``.
        argument: its argument that sets the control's initial value.
        control: the control's label on the panel.
        value: the initial value.
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
    """Refuse an initial ``value`` outside a slider's ``[low, high]`` (the slider would silently clamp it).

    Raises:
        ValueError: ``value`` is outside the range; the message names the panel, argument and control.
    """
    if not low <= value <= high:
        raise ValueError(f"{panel}: {argument}={value!r} is outside the {control!r} slider's range {low} to {high}")


def show_figure(out: widgets.Output, fig) -> None:
    """Replace what ``out`` shows by the matplotlib figure ``fig``, then close ``fig`` (no second copy)."""
    with out:
        out.clear_output(wait=True)
        display(fig)
    plt.close(fig)


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
    check_range("bn_explorer", "batch_size", "batch size m", batch_size, 2, 256)
    check_option("bn_explorer", "dist", "input", dist, list(DISTRIBUTIONS))
    check_range("bn_explorer", "loc", "input mean", loc, -10.0, 10.0)
    check_range("bn_explorer", "scale", "input std", scale, 0.1, 10.0)
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
        show_figure(out, plot_bn_activations(result))

    for control in (size, kind, mean, std):
        control.observe(redraw, names="value")
    redraw(figure=draw)
    return widgets.VBox([widgets.HBox([size, kind]), widgets.HBox([mean, std]), stats, out])


def format_lenet_run(result) -> str:
    """One line about the first run of a :func:`bncourse.experiments.conv.lenet_sweep` result, for a label."""
    d = result.data
    bn = "with BN" if bool(d["bn"][0]) else "without BN"
    return (
        f"LeNet {bn}, lr {float(d['lr'][0]):g}, batch {result.config['batch_size']}: test accuracy "
        f"{float(d['test_acc'][0][-1]):.3f} after {int(d['steps'][-1])} steps "
        f"({result.meta['train_wall_time_s']:.1f} s on {result.meta['device']})"
    )


LENET_BATCH_SIZES = [16, 32, 64, 128, 256]  # lenet_explorer's batch size dropdown
LENET_SEEDS = [0, 1, 2]


def lenet_explorer(
    lr: float = 0.3,
    bn: bool = True,
    batch_size: int = 128,
    seed: int = 0,
    num_steps: int = 400,
    eval_size: int = 2000,
    dataset="fashion_mnist",
    draw: bool = True,
) -> widgets.VBox:
    """Controls for learning rate, BN on/off, batch size and seed -> one LeNet run's curves and channel statistics.

    Each change retrains LeNet for ``num_steps`` steps with :func:`bncourse.experiments.conv.lenet_sweep`
    (seconds on a CPU; the defaults repeat one run of the chapter's live sweep) and redraws
    :func:`bncourse.plots.conv.plot_lenet_run`.

    Args:
        lr, bn, batch_size, seed: initial values of the controls (``lr`` from the full sweep's ladder).
        num_steps: SGD steps per run.
        eval_size: test images evaluated every ``num_steps // 8`` steps.
        dataset: a dataset name or a loaded :class:`bncourse.data.Dataset` (loaded once, here).
        draw: train and draw for the initial values now; with False that happens when a control moves.

    Returns:
        A ``VBox`` with the controls, a label and an output area holding the figure.
    """
    from bncourse import data as bdata
    from bncourse.experiments import conv as exp_conv
    from bncourse.plots import conv as plot_conv

    check_option("lenet_explorer", "bn", "with BN / without BN", bn, [True, False])
    check_option("lenet_explorer", "batch_size", "batch size", batch_size, LENET_BATCH_SIZES)
    check_option("lenet_explorer", "seed", "seed", seed, LENET_SEEDS)
    ds = bdata.load_dataset(dataset) if isinstance(dataset, str) else dataset
    style = {"description_width": "initial"}
    lrs = sorted(set(exp_conv.LENET_SCALES["full"]["lrs"]) | {lr})
    rate = widgets.SelectionSlider(
        options=lrs, value=lr, description="learning rate", continuous_update=False, style=style
    )
    norm = widgets.ToggleButtons(options=[("with BN", True), ("without BN", False)], value=bn, style=style)
    size = widgets.Dropdown(options=LENET_BATCH_SIZES, value=batch_size, description="batch size", style=style)
    seeds = widgets.Dropdown(options=LENET_SEEDS, value=seed, description="seed", style=style)
    label = widgets.HTML()
    out = widgets.Output()

    def redraw(_=None) -> None:
        label.value = "<small>training...</small>"
        result = exp_conv.lenet_sweep(
            lrs=(rate.value,), seeds=(seeds.value,), norms=("bn" if norm.value else None,), num_steps=num_steps,
            batch_size=size.value, eval_every=max(1, num_steps // 8), eval_size=eval_size, dataset=ds,
            progress=False,
        )  # fmt: skip
        label.value = f"<small>{format_lenet_run(result)}</small>"
        show_figure(out, plot_conv.plot_lenet_run(result))

    for control in (rate, norm, size, seeds):
        control.observe(redraw, names="value")
    if draw:
        redraw()
    return widgets.VBox([widgets.HBox([rate, size, seeds]), norm, label, out])


__all__ += ["LENET_BATCH_SIZES", "LENET_SEEDS", "format_lenet_run", "lenet_explorer"]


def norms_explorer(result, norm: str = "gn", batch_size: int | None = None, draw: bool = True) -> widgets.VBox:
    """Controls for the normalisation and the batch size -> which elements share a statistic, how many values
    each statistic has in ConvNet3, and the test errors measured in ``result`` at that batch size.

    Nothing is trained: the panel looks results up in a :func:`bncourse.experiments.norms_compare.norms_batchsize`
    result and redraws :func:`bncourse.plots.norms_compare.plot_norm_lookup`.

    Args:
        result: the live or stored sweep.
        norm, batch_size: initial values (default batch size: the smallest in ``result``).
        draw: draw the figure for the initial values now; with False it appears when a control moves.

    Returns:
        A ``VBox`` with the two controls and an output area holding the figure.
    """
    from bncourse.plots.norms_compare import AXES_NAMES, plot_norm_lookup

    sizes = sorted({int(b) for b in result.data["batch_size"]}, reverse=True)
    check_option("norms_explorer", "norm", "norm", norm, ["bn", "ln", "in", "gn"])
    if batch_size is not None:
        check_option("norms_explorer", "batch_size", "batch size", batch_size, sizes)
    style = {"description_width": "initial"}
    kind = widgets.Dropdown(
        options=[(AXES_NAMES[k], k) for k in ("bn", "ln", "in", "gn")], value=norm, description="norm", style=style
    )
    size = widgets.Dropdown(
        options=sizes, value=batch_size if batch_size is not None else sizes[-1], description="batch size", style=style
    )
    out = widgets.Output()

    def redraw(_=None) -> None:
        show_figure(out, plot_norm_lookup(result, kind.value, size.value))

    for control in (kind, size):
        control.observe(redraw, names="value")
    if draw:
        redraw()
    return widgets.VBox([widgets.HBox([kind, size]), out])


__all__ += ["norms_explorer"]


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


SGD_BATCH_SIZES = [15, 30, 60, 120, 240, 600]  # sgd_explorer's dropdowns
SGD_INIT_STDS = [0.01, 0.1, 0.5, 1.0, 2.0, 4.0]


def sgd_explorer(
    lr: float = 0.3,
    batch_size: int = 60,
    init_std: float = 0.5,
    num_examples: int = 60_000,
    num_evals: int = 5,
    dataset="fashion_mnist",
    reference=None,
    draw: bool = True,
) -> widgets.VBox:
    """Controls for learning rate, batch size and initial weight scale -> loss and accuracy curves.

    Each change trains the paper's MLP (784-100-100-100-10 sigmoid, seed 0) on ``num_examples`` examples with
    :func:`bncourse.experiments.sgd_sensitivity.lr_init_sweep` (one model: a second or a few on a CPU) and
    redraws :func:`bncourse.plots.sgd.plot_training_curves`.

    Args:
        lr, batch_size, init_std: initial values of the controls.
        num_examples: training examples per run (60,000: one epoch of Fashion-MNIST).
        num_evals: evaluations per run; ``num_examples // batch_size`` must be a multiple of it for every
            offered batch size (15, 30, 60, 120, 240, 600).
        dataset: a dataset name or a loaded :class:`bncourse.data.Dataset` (loaded once, here).
        reference: a one-run result drawn in grey for comparison (e.g. the default settings), or None.
        draw: train and draw for the initial values now; with False that happens when a control moves.

    Returns:
        A ``VBox`` with the controls, a label and an output area holding the figure.
    """
    from bncourse import data as bdata
    from bncourse.experiments import sgd_sensitivity as exp_sens
    from bncourse.plots import sgd as plot_sgd

    check_range("sgd_explorer", "lr", "learning rate", lr, 0.01, 10.0)
    check_option("sgd_explorer", "batch_size", "batch size", batch_size, SGD_BATCH_SIZES)
    check_option("sgd_explorer", "init_std", "init std", init_std, SGD_INIT_STDS)
    ds = bdata.load_dataset(dataset) if isinstance(dataset, str) else dataset
    style = {"description_width": "initial"}
    rate = widgets.FloatLogSlider(value=lr, base=10, min=-2, max=1, step=0.25, description="learning rate",
                                  continuous_update=False, style=style)  # fmt: skip
    size = widgets.Dropdown(options=SGD_BATCH_SIZES, value=batch_size, description="batch size", style=style)
    scale = widgets.Dropdown(options=SGD_INIT_STDS, value=init_std, description="init std", style=style)
    label = widgets.HTML()
    out = widgets.Output()

    def redraw(_=None) -> None:
        label.value = "<small>training...</small>"
        result = exp_sens.lr_init_sweep(lrs=(rate.value,), init_stds=(scale.value,), batch_sizes=(size.value,),
                                        num_examples=num_examples, num_evals=num_evals, dataset=ds)  # fmt: skip
        label.value = f"<small>{format_sgd_run(result)}</small>"
        show_figure(out, plot_sgd.plot_training_curves(result, reference=reference))

    for control in (rate, size, scale):
        control.observe(redraw, names="value")
    if draw:
        redraw()
    return widgets.VBox([widgets.HBox([rate, size, scale]), label, out])


__all__ += ["SGD_BATCH_SIZES", "SGD_INIT_STDS", "format_sgd_run", "sgd_explorer"]


def format_batchsize_choice(sweep, norm: str, batch_size: int) -> str:
    """One line for :func:`batchsize_explorer`: the noise of a normalised value and the sweep's accuracy."""
    import numpy as np

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
    """:func:`batchsize_explorer`'s figure (also its static view's): the normalised value of the example x = 1
    over random batches (:func:`bncourse.experiments.batchsize.normalisation_noise`) beside the sweep's accuracy."""
    from bncourse.experiments.batchsize import normalisation_noise
    from bncourse.plots.batchsize import plot_batchsize_explorer

    values = normalisation_noise(norm, batch_size, value=1.0, seed=seed)
    return plot_batchsize_explorer(sweep, values, norm, batch_size)


def batchsize_explorer(sweep, norm: str = "bn", batch_size: int = 4, draw: bool = True) -> widgets.VBox:
    """Controls for the examples per batch statistic and the norm -> statistics noise and accuracy.

    The left panel is recomputed (numpy, instant): one example's normalised value over random batches. The
    accuracy on the right is looked up in ``sweep`` (a :func:`bncourse.experiments.batchsize.batchsize_sweep`
    result); nothing is retrained.

    Args:
        sweep: the sweep result whose accuracies are shown.
        norm, batch_size: initial values of the controls (``batch_size`` one of the sweep's).
        draw: draw the figure for the initial values now; with False the figure appears when a control
            moves (for a page that has already drawn the default figure as a plain plot).

    Returns:
        A ``VBox`` with the controls, a label and an output area holding the figure.
    """
    from bncourse.plots.batchsize import NORM_LABELS

    style = {"description_width": "initial"}
    sizes = sorted(int(b) for b in sweep.data["batch_sizes"])
    check_option("batchsize_explorer", "batch_size", "examples per statistic b", batch_size, sizes)
    check_option("batchsize_explorer", "norm", "norm", norm, list(sweep.config["norms"]))
    size = widgets.SelectionSlider(options=sizes, value=batch_size, description="examples per statistic b", style=style)
    kind = widgets.Dropdown(
        options=[(NORM_LABELS.get(n, n), n) for n in sweep.config["norms"]], value=norm, description="norm", style=style
    )
    label = widgets.HTML()
    out = widgets.Output()

    def redraw(_=None, figure: bool = True) -> None:
        label.value = f"<small>{format_batchsize_choice(sweep, kind.value, size.value)}</small>"
        if not figure:
            return
        show_figure(out, batchsize_figure(sweep, kind.value, size.value))

    for control in (size, kind):
        control.observe(redraw, names="value")
    redraw(figure=draw)
    return widgets.VBox([widgets.HBox([size, kind]), label, out])


__all__ += ["batchsize_explorer", "batchsize_figure", "format_batchsize_choice"]


CRITIQUE_LRS = (0.02, 0.1, 0.5)  # the learning rates chapter 2 precomputes for critique_explorer
CRITIQUE_MLP = {"model": "mlp", "num_steps": 200, "measure_every": 40, "eval_every": 40}  # its MLP runs


def format_critique(result, network: str) -> str:
    """One line about one network of a :func:`bncourse.experiments.critique.critique_run` result, for a label."""
    import numpy as np

    d, k = result.data, result.config["networks"].index(network)
    return (
        f"{network}, lr {result.config['lr']:g}: test accuracy {float(d['test'][k][-1]):.3f} after "
        f"{int(d['steps'][-1])} steps; ICS mean cos(G, G') {float(np.nanmean(d['ics_cos'][k][:, 1:])):.3f}; "
        f"median effective beta-smoothness {float(np.nanmedian(d['beta'][k])):.3g}"
    )


def critique_explorer(
    results: dict | None = None,
    bn: bool = True,
    noise: bool = False,
    lr: float = 0.1,
    dataset="fashion_mnist",
    draw: bool = True,
) -> widgets.VBox:
    """Controls for BN on/off, noise on/off and learning rate -> the critique's measurements of an MLP.

    The networks are :func:`bncourse.experiments.critique.critique_run` with ``model="mlp"``: standard (BN
    off), BN, and noisy BN (BN on, noise on; noise without BN is not offered). Results already computed are
    looked up in ``results`` (a dict ``lr -> Result`` holding all three networks); another learning rate
    trains the three networks (a few seconds on a CPU) and is added to it.

    Args:
        results: precomputed results by learning rate (updated in place); None starts empty.
        bn, noise, lr: initial values of the controls.
        dataset: a dataset name or a loaded :class:`bncourse.data.Dataset`, used for new learning rates.
        draw: draw the figure for the initial values now; with False that happens when a control moves.

    Returns:
        A ``VBox`` with the controls, a label and an output area holding the figure.
    """
    from bncourse.experiments import critique as exp_critique
    from bncourse.plots import critique as plot_critique

    check_option("critique_explorer", "bn", "BN on / BN off", bn, [True, False])
    check_option("critique_explorer", "noise", "noise off / noise on", noise, [False, True])
    cache = results if results is not None else {}
    style = {"description_width": "initial"}
    bn_box = widgets.ToggleButtons(options=[("BN on", True), ("BN off", False)], value=bn, style=style)
    noise_box = widgets.ToggleButtons(options=[("noise off", False), ("noise on", True)], value=noise, style=style)
    rates = sorted(set(CRITIQUE_LRS) | set(cache) | {lr})
    rate = widgets.Dropdown(options=rates, value=lr, description="learning rate", style=style)
    label = widgets.HTML()
    out = widgets.Output()

    def redraw(_=None) -> None:
        noise_box.disabled = not bn_box.value
        network = "standard" if not bn_box.value else ("noisy-bn" if noise_box.value else "bn")
        if rate.value not in cache:
            label.value = "<small>training three MLPs...</small>"
            cache[rate.value] = exp_critique.critique_run(lr=rate.value, dataset=dataset, **CRITIQUE_MLP)
        result = cache[rate.value]
        label.value = f"<small>{format_critique(result, network)}</small>"
        show_figure(out, plot_critique.plot_critique_panel(result, network))

    for control in (bn_box, noise_box, rate):
        control.observe(redraw, names="value")
    if draw:
        redraw()
    return widgets.VBox([widgets.HBox([bn_box, noise_box]), rate, label, out])


__all__ += ["CRITIQUE_LRS", "CRITIQUE_MLP", "critique_explorer", "format_critique"]
