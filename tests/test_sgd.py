"""Chapter 1: SGD experiments, their plots and widget, and the exercise checkers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib import pyplot as plt
from torch.func import functional_call, grad, vmap

from bncourse import data as bdata
from bncourse import panels, reproduce
from bncourse.checks import sgd as checks
from bncourse.checks import sgd as variance_checks
from bncourse.experiments import sgd as exp1
from bncourse.experiments import sgd_sensitivity as sens1
from bncourse.models import MLP
from bncourse.plots import sgd as plot1
from bncourse.result import load_stored


@pytest.fixture(scope="module")
def mnist5k():
    return bdata.load_dataset("mnist5k")


# ------------------------------------------------------------------------------------------- experiments


def test_quadratic_gd_converges_below_two_over_largest_curvature():
    r = exp1.quadratic_gd(lrs=(0.05, 0.19, 0.21), curvatures=(1.0, 10.0), num_steps=30)
    assert r.config["lr_max"] == pytest.approx(0.2)
    loss = r.data["loss"]
    assert loss[0, -1] < loss[0, 0] and loss[1, -1] < loss[1, 0] and loss[2, -1] > loss[2, 0]
    np.testing.assert_allclose(r.data["contraction"], [0.95, 0.9, 1.1])
    # along the slowest direction the distance shrinks by the predicted factor per step
    ratio = np.abs(r.data["path"][0, 1:, 0] / r.data["path"][0, :-1, 0])
    np.testing.assert_allclose(ratio, 0.95)


def test_per_example_norms_match_torch_func():
    torch.manual_seed(0)
    model = MLP((12, 7, 5, 3), init="xavier", seed=1).double()
    x, y = torch.randn(40, 12, dtype=torch.float64), torch.randint(0, 3, (40,))
    fast = exp1.per_example_sq_norms(model, x, y, chunk=16)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(p, xi, yi):
        return F.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    per = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)
    slow = sum(g.flatten(1).pow(2).sum(1) for g in per.values())
    torch.testing.assert_close(fast, slow)
    with pytest.raises(ValueError, match="norm=None"):
        exp1.per_example_sq_norms(MLP((12, 5, 3), norm="bn"), x.float(), y)


def test_gradient_noise_follows_one_over_n_and_the_correction(mnist5k):
    r = exp1.gradient_noise(
        batch_sizes=(1, 8, 50, 200), num_batches=12, population=200, warmup_steps=5, dataset=mnist5k
    )
    d = r.data
    assert d["trace"] > 0 and d["num_params"] == 784 * 100 + 2 * 100 * 100 + 100 * 10 + 310
    np.testing.assert_allclose(d["pred_with"], d["trace"] / np.array([1, 8, 50, 200]))
    assert d["pred_without"][-1] == 0.0 and d["var_without"][-1] < 1e-9 * d["trace"]  # N = n: the full gradient
    assert -1.3 < exp1.fit_slope(d["batch_sizes"], d["var_with"]) < -0.7
    ratio = d["var_with"] / d["pred_with"]
    assert np.all((ratio > 0.4) & (ratio < 2.5))
    with pytest.raises(ValueError, match="population"):
        exp1.gradient_noise(batch_sizes=(400,), population=200, dataset=mnist5k)


def test_throughput_shapes_and_units():
    threads = torch.get_num_threads()
    r = exp1.throughput(batch_sizes=(1, 16), min_time=0.001, repeats=1, device="cpu", threads=1)
    d = r.data
    np.testing.assert_allclose(d["samples_per_s"], d["batch_sizes"] * d["steps_per_s"])
    assert np.all(d["step_s"] > 0) and r.meta["device"] == "cpu, 1 thread, CPU time"
    assert torch.get_num_threads() == threads  # restored
    with pytest.raises(ValueError, match="scale"):
        exp1.throughput("huge")
    assert exp1.THROUGHPUT_SCALES["full"]["batch_sizes"][-1] == 65536


def test_load_stored_and_reproduce_registry(tmp_path):
    assert "sgd-throughput-full" in reproduce.RESULTS
    assert load_stored("sgd-throughput-full", folders=(str(tmp_path),)) is None
    exp1.quadratic_gd(num_steps=2).save(tmp_path / "q.json")
    assert load_stored("q", folders=(str(tmp_path),)).name == "quadratic_gd"


def test_amplification_vanishes_for_small_and_grows_for_large_init(mnist5k):
    r = sens1.amplification(init_stds=(0.1, 4.0), depth=5, num_directions=2, num_examples=50, dataset=mnist5k)
    gain = r.data["gain"]
    assert gain.shape == (2, 5) and r.data["gain_all"].shape == (2, 2, 5)
    assert np.all(np.diff(gain[0]) < 0) and np.all(np.diff(gain[1]) > 0)
    assert gain[0, -1] < 1e-2 < 10 < gain[1, -1]


def test_classify():
    out = sens1.classify(np.array([0.5, 2.3, 2.5, np.nan, 9.0]), np.array([0.8, 0.1, 0.1, 0.1, 0.3]))
    assert [sens1.OUTCOMES[i] for i in out] == ["trains", "stalled", "diverged", "diverged", "trains"]


def test_lr_init_sweep_and_select_run(mnist5k):
    r = sens1.lr_init_sweep(
        lrs=(0.1, 1.0),
        init_stds=(0.5,),
        batch_sizes=(20, 40),
        num_examples=400,
        num_evals=2,
        eval_size=200,
        dataset=mnist5k,
    )
    d = r.data
    assert d["train_loss"].shape == (2, 1, 2, 3) and d["outcome"].shape == (2, 1, 2)
    assert list(d["examples"]) == [0, 200, 400] and np.isnan(d["train_loss"][..., 0]).all()
    one = sens1.select_run(r, lr=1.0, init_std=0.5, batch_size=40)
    assert one.data["train_loss"].shape == (1, 1, 1, 3)
    np.testing.assert_array_equal(one.data["test_acc"][0, 0, 0], d["test_acc"][1, 0, 1])
    with pytest.raises(ValueError, match="no run"):
        sens1.select_run(r, lr=3.0, init_std=0.5, batch_size=40)
    with pytest.raises(ValueError, match="multiple"):
        sens1.lr_init_sweep(
            lrs=(0.1,), init_stds=(0.5,), batch_sizes=(30,), num_examples=400, num_evals=3, dataset=mnist5k
        )
    for fig in (plot1.plot_lr_init_sweep(r, batch_index=1), plot1.plot_training_curves(one, reference=one)):
        assert len(fig.axes) >= 2
        plt.close(fig)
    assert "test accuracy" in panels.format_sgd_run(one)


def test_plots_draw(mnist5k):
    figs = [
        plot1.plot_quadratic_gd(exp1.quadratic_gd(num_steps=5)),
        plot1.plot_gradient_noise(
            exp1.gradient_noise(batch_sizes=(1, 10), num_batches=3, population=50, warmup_steps=1, dataset=mnist5k)
        ),
        plot1.plot_throughput(*[exp1.throughput(batch_sizes=(1, 4), min_time=0.001, repeats=1)] * 2),
        plot1.plot_amplification(
            sens1.amplification(init_stds=(0.5,), depth=3, num_directions=1, num_examples=20, dataset=mnist5k)
        ),
    ]
    for fig in figs:
        assert fig.axes
        plt.close(fig)
    with pytest.raises(ValueError, match="draws a"):
        plot1.plot_throughput(exp1.quadratic_gd(num_steps=1))


def test_sgd_panel_builds_and_trains(mnist5k):
    spec = panels.sgd_panel(lr=0.3, batch_size=60, init_std=0.5, num_examples=600, dataset=mnist5k)
    panel = panels.live(spec, draw=False)
    rate, size, scale = panel.children[0].children
    assert (rate.value, size.value, scale.value) == (0.3, 60, 0.5)
    for examples in (30_000, 60_000):  # every offered batch size divides into the default evaluations
        assert all((examples // b) % 5 == 0 for b in size.options)
    size.value = 30  # reruns: 20 steps
    assert "batch 30" in panel.children[1].value and "20 steps" in panel.children[1].value
    plt.close("all")


# ---------------------------------------------------------------------------------------------- checkers


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def logistic_ok(w, b, X, y):
    p = _sig(X @ w + b)
    return X.T @ (p - y) / X.shape[0], np.mean(p - y)


def logistic_loop(w, b, X, y):  # a slow but correct student
    dw, db = np.zeros_like(w), 0.0
    for xi, yi in zip(X, y, strict=True):
        r = _sig(xi @ w + b) - yi
        dw, db = dw + r * xi / len(X), db + r / len(X)
    return dw, db


LOGISTIC_MISTAKES = {
    "summed": lambda w, b, X, y: (X.T @ (_sig(X @ w + b) - y), np.sum(_sig(X @ w + b) - y)),
    "sign is flipped": lambda w, b, X, y: tuple(-v for v in logistic_ok(w, b, X, y)),
    "shape mismatch": lambda w, b, X, y: (X @ (_sig(X @ w + b) - y) / len(X), 0.0),
    "divided by D": lambda w, b, X, y: (X.T @ (_sig(X @ w + b) - y) / X.shape[1], np.mean(_sig(X @ w + b) - y)),
    "sigmoid is missing": lambda w, b, X, y: (X.T @ (X @ w + b - y) / len(X), np.mean(X @ w + b - y)),
    "p * (1 - p)": lambda w, b, X, y: (
        X.T @ ((_sig(X @ w + b) - y) * _sig(X @ w + b) * (1 - _sig(X @ w + b))) / len(X),
        np.mean(_sig(X @ w + b) - y),
    ),
    "bias is missing": lambda w, b, X, y: logistic_ok(w, 0.0, X, y),
    "db sums": lambda w, b, X, y: (logistic_ok(w, b, X, y)[0], np.sum(_sig(X @ w + b) - y)),
    "db ignores the labels": lambda w, b, X, y: (logistic_ok(w, b, X, y)[0], np.mean(_sig(X @ w + b))),
    "not filled in": lambda w, b, X, y: (_ for _ in ()).throw(NotImplementedError),
    "return a pair": lambda w, b, X, y: logistic_ok(w, b, X, y)[0],
    "shape of w": lambda w, b, X, y: (logistic_ok(w, b, X, y)[0][None], 0.0),
}


@pytest.mark.parametrize("student", [logistic_ok, logistic_loop, checks.logistic_grad])
def test_logistic_grad_accepts_correct(student, capsys):
    checks.check_logistic_grad(student)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize("hint", LOGISTIC_MISTAKES)
def test_logistic_grad_names_mistake(hint):
    with pytest.raises(AssertionError, match=hint.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        checks.check_logistic_grad(LOGISTIC_MISTAKES[hint])


def batches_ok(n, batch_size, rng):
    perm = rng.permutation(n)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def batches_split(n, batch_size, rng):
    idx = np.arange(n)
    rng.shuffle(idx)
    return np.array_split(idx, range(batch_size, n, batch_size))


BATCH_MISTAKES = {
    "appears twice": lambda n, s, rng: [rng.integers(0, n, min(s, n - i)) for i in range(0, n, s)],
    "drop the last": lambda n, s, rng: [p for p in batches_ok(n, s, rng) if len(p) == s],
    "stored order": lambda n, s, rng: [np.arange(i, min(i + s, n)) for i in range(0, n, s)],
    "batch order is": lambda n, s, rng: [np.arange(i, min(i + s, n)) for i in rng.permutation(range(0, n, s))],
    "same seed": lambda n, s, rng: batches_ok(n, s, np.random.default_rng()),
    "reseed": lambda n, s, rng: batches_ok(n, s, np.random.default_rng(0)),
    "batch sizes": lambda n, s, rng: np.array_split(rng.permutation(n), max(1, n // s)),
    "1-D integer": lambda n, s, rng: [p.astype(float) for p in batches_ok(n, s, rng)],
    "list of index arrays": lambda n, s, rng: None,
}


@pytest.mark.parametrize("student", [batches_ok, batches_split])
def test_epoch_batches_accepts_correct(student, capsys):
    checks.check_epoch_batches(student)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize("hint", BATCH_MISTAKES)
def test_epoch_batches_names_mistake(hint):
    with pytest.raises(AssertionError, match=hint):
        checks.check_epoch_batches(BATCH_MISTAKES[hint])


def sgd_ok(w, b, X, y, lr, batches, grad_fn):
    for idx in batches:
        dw, db = grad_fn(w, b, X[idx], y[idx])
        w, b = w - lr * dw, b - lr * db
    return w, b


def sgd_inplace(w, b, X, y, lr, batches, grad_fn):
    w = w.copy()
    for idx in batches:
        dw, db = grad_fn(w, b, X[idx], y[idx])
        w -= lr * dw
        b -= lr * db
    return w, b


def _sgd_scaled(scale):
    def student(w, b, X, y, lr, batches, grad_fn):
        for idx in batches:
            dw, db = grad_fn(w, b, X[idx], y[idx])
            w, b = w - scale(lr, len(idx)) * dw, b - scale(lr, len(idx)) * db
        return w, b

    return student


def sgd_stale(w, b, X, y, lr, batches, grad_fn):
    grads = [grad_fn(w, b, X[idx], y[idx]) for idx in batches]
    for dw, db in grads:
        w, b = w - lr * dw, b - lr * db
    return w, b


def sgd_last_only(w, b, X, y, lr, batches, grad_fn):
    for idx in batches:
        dw, db = grad_fn(w, b, X[idx], y[idx])
        w_new, b_new = w - lr * dw, b - lr * db
    return w_new, b_new


def sgd_full(w, b, X, y, lr, batches, grad_fn):
    dw, db = grad_fn(w, b, X, y)
    return w - lr * dw, b - lr * db


def sgd_no_b(w, b, X, y, lr, batches, grad_fn):
    return sgd_ok(w, b, X, y, lr, batches, lambda *a: (grad_fn(*a)[0], 0.0))


SGD_MISTAKES = {
    "scaled by the batch size": _sgd_scaled(lambda lr, n: lr * n),
    "divided by the batch size": _sgd_scaled(lambda lr, n: lr / n),
    "up the gradient": _sgd_scaled(lambda lr, n: -lr),
    "initial parameters": sgd_stale,
    "only the last batch": sgd_last_only,
    "whole epoch": sgd_full,
    "b is not updated": sgd_no_b,
    "keep its shape": lambda w, b, X, y, lr, batches, grad_fn: (w[:1], b),
    r"\(w, b\)": lambda w, b, X, y, lr, batches, grad_fn: w,
}


@pytest.mark.parametrize("student", [sgd_ok, sgd_inplace])
def test_sgd_epoch_accepts_correct(student, capsys):
    checks.check_sgd_epoch(student)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize("hint", SGD_MISTAKES)
def test_sgd_epoch_names_mistake(hint):
    with pytest.raises(AssertionError, match=hint):
        checks.check_sgd_epoch(SGD_MISTAKES[hint])


def variance_ok(grads, full_grad=None):
    if full_grad is None:
        return grads.var(axis=0, ddof=1).sum()
    return ((grads - full_grad) ** 2).sum(axis=1).mean()


def variance_loop(grads, full_grad=None):
    r = len(grads)
    mean = grads.mean(axis=0) if full_grad is None else full_grad
    return float(sum(((g - mean) ** 2).sum() for g in grads) / (r - 1 if full_grad is None else r))


VARIANCE_MISTAKES = {
    "biased": lambda g, f=None: g.var(axis=0).sum() if f is None else variance_ok(g, f),
    "per-coordinate average: the total": lambda g, f=None: g.var(axis=0, ddof=1).mean(),
    "wrong axis": lambda g, f=None: g.var(axis=1, ddof=1).sum(),
    "standard deviation": lambda g, f=None: np.sqrt(variance_ok(g, f)),
    "signal": lambda g, f=None: (g.mean(axis=0) ** 2).sum(),
    "no degree of freedom": lambda g, f=None: variance_ok(g) if f is None else ((g - f) ** 2).sum() / (len(g) - 1),
    "not used": lambda g, f=None: variance_ok(g),
    "per-coordinate average: sum": lambda g, f=None: variance_ok(g) if f is None else ((g - f) ** 2).mean(),
    "one number": lambda g, f=None: g.var(axis=0, ddof=1),
}


@pytest.mark.parametrize("student", [variance_ok, variance_loop])
def test_gradient_variance_accepts_correct(student, capsys):
    variance_checks.check_gradient_variance(student)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize("hint", VARIANCE_MISTAKES)
def test_gradient_variance_names_mistake(hint):
    with pytest.raises(AssertionError, match=hint):
        variance_checks.check_gradient_variance(VARIANCE_MISTAKES[hint])


def minibatch_ok(per_example_grads, batch_size, replace):
    n = len(per_example_grads)
    trace = ((per_example_grads - per_example_grads.mean(axis=0)) ** 2).sum() / n
    return trace / batch_size * (1.0 if replace else (n - batch_size) / (n - 1))


def _tr(g, ddof=0):
    return g.var(axis=0, ddof=ddof).sum()


MINIBATCH_MISTAKES = {
    "no finite-population": lambda g, m, rep: _tr(g) / m,
    "with replacement too": lambda g, m, rep: _tr(g) / m * (len(g) - m) / (len(g) - 1),
    r"is \(n - N\) / n": lambda g, m, rep: _tr(g) / m * (1.0 if rep else (len(g) - m) / len(g)),
    "divides by n - 1": lambda g, m, rep: _tr(g, 1) / m * (1.0 if rep else (len(g) - m) / (len(g) - 1)),
    "not divided by the batch size": lambda g, m, rep: _tr(g) * (1.0 if rep else (len(g) - m) / (len(g) - 1)),
    "per-coordinate": lambda g, m, rep: minibatch_ok(g, m, rep) / g.shape[1],
    "return one number": lambda g, m, rep: g.var(axis=0) / m,
}


def test_minibatch_variance_accepts_correct(capsys):
    variance_checks.check_minibatch_variance(minibatch_ok)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize("hint", MINIBATCH_MISTAKES)
def test_minibatch_variance_names_mistake(hint):
    with pytest.raises(AssertionError, match=hint):
        variance_checks.check_minibatch_variance(MINIBATCH_MISTAKES[hint])


def test_contraction_factors_minimum_and_limit():
    r = exp1.contraction_factors(curvatures=(1.0, 10.0), lrs=(0.1, 0.18), num=2001)
    cfg, d = r.config, r.data
    assert cfg["lr_max"] == pytest.approx(0.2) and cfg["lr_bal"] == pytest.approx(2 / 11)
    assert cfg["best_factor"] == pytest.approx(9 / 11) and cfg["condition"] == pytest.approx(10)
    k = int(np.argmin(d["worst"]))  # the grid's best learning rate is the balancing rate
    assert d["grid"][k] == pytest.approx(2 / 11, abs=2e-4) and d["worst"][k] == pytest.approx(9 / 11, abs=1e-3)
    assert np.all(d["worst"][d["grid"] > 0.2 + 1e-12] > 1) and np.all(d["worst"][d["grid"] < 0.2] < 1 + 1e-12)
    np.testing.assert_allclose(d["marked"], [0.9, 0.82])  # max(|1 - 0.1|, |1 - 1|), max(0.82, |1 - 1.8|)
    for bad in ((1.0, 0.0), (1.0, -2.0), (np.nan, 1.0)):
        with pytest.raises(ValueError, match="curvatures"):
            exp1.contraction_factors(curvatures=bad)
    with pytest.raises(ValueError, match="learning rates"):
        exp1.contraction_factors(lrs=(-0.1,))


def test_plot_contraction_factors_labels_and_rejects_other_results():
    fig = plot1.plot_contraction_factors(exp1.contraction_factors())
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert len(ax.get_lines()) >= 3  # two curvatures and their maximum at least
    plt.close(fig)
    with pytest.raises(ValueError, match="contraction_factors"):
        plot1.plot_contraction_factors(exp1.quadratic_gd())
