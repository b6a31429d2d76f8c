"""Chapter 5: spatial BN references against PyTorch, the conv experiments, plots, widget and checkers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib import pyplot as plt

from bncourse import panels
from bncourse.checks import conv as checks
from bncourse.checks.base import rel_err
from bncourse.data import Dataset
from bncourse.experiments import conv as exp5
from bncourse.gradcheck import eval_numerical_gradient_array, rel_error
from bncourse.norms import batchnorm_backward, batchnorm_backward_alt, batchnorm_forward
from bncourse.plots import conv as plots5
from bncourse.result import Result, load_stored
from bncourse.runtime import cpu_threads

AX = (0, 2, 3)


def _nchw(shape, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.normal(rng.uniform(-3, 3, (1, c, 1, 1)), rng.uniform(0.5, 2, (1, c, 1, 1)), size=shape)
    return x, rng.uniform(0.5, 2, c), rng.normal(size=c), rng.normal(size=shape)


# ------------------------------------------------------------------ numpy references vs torch (float64)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 4, 3, 3), (8, 2, 1, 1), (3, 6, 7, 2)])
def test_spatial_forward_backward_match_torch(shape):
    x, g, b, dout = _nchw(shape)
    out, cache = batchnorm_forward(x, g, b, eps=1e-5)
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, g, b))
    yt = torch.nn.functional.batch_norm(xt, None, None, gt, bt, training=True, eps=1e-5)
    torch.testing.assert_close(torch.from_numpy(out), yt.detach(), rtol=1e-12, atol=1e-12)
    yt.backward(torch.from_numpy(dout))
    for backward in (batchnorm_backward, batchnorm_backward_alt):
        dx, dg, db = backward(dout, cache)
        for ours, ref in ((dx, xt.grad), (dg, gt.grad), (db, bt.grad)):
            torch.testing.assert_close(torch.from_numpy(ours), ref, rtol=1e-10, atol=1e-12)
    assert np.allclose(out.mean(AX), b) and np.allclose(((out - b[:, None, None]) / g[:, None, None]).var(AX), 1, 1e-4)


def test_spatial_backward_numeric_gradient():
    x, g, b, dout = _nchw((2, 3, 3, 2), seed=3)
    _, cache = batchnorm_forward(x, g, b)
    dx, dg, db = batchnorm_backward(dout, cache)
    assert rel_error(dx, eval_numerical_gradient_array(lambda v: batchnorm_forward(v, g, b)[0], x, dout)) < 1e-7
    assert rel_error(dg, eval_numerical_gradient_array(lambda v: batchnorm_forward(x, v, b)[0], g, dout)) < 1e-7
    assert rel_error(db, eval_numerical_gradient_array(lambda v: batchnorm_forward(x, g, v)[0], b, dout)) < 1e-7


def test_spatial_equals_2d_after_moving_channels_last():
    x, g, b, _ = _nchw((3, 4, 5, 2))
    n, c, h, w = x.shape
    out2 = batchnorm_forward(x.transpose(0, 2, 3, 1).reshape(-1, c), g, b)[0]
    np.testing.assert_allclose(out2.reshape(n, h, w, c).transpose(0, 3, 1, 2), batchnorm_forward(x, g, b)[0])


def test_conv_bias_is_cancelled_by_bn():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, 3, 3, dtype=torch.float64)
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    bn = torch.nn.BatchNorm2d(3, dtype=torch.float64)
    y = bn(conv(x))
    y.backward(torch.randn_like(y))
    no_bias = torch.nn.functional.conv2d(x, conv.weight)
    torch.testing.assert_close(y, bn(no_bias))
    assert conv.bias.grad.abs().max() < 1e-12


# ------------------------------------------------------------------ experiments (tiny settings)


def _tiny_dataset(n_train=256, n_test=64, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n_train + n_test)
    x = rng.integers(0, 60, (n_train + n_test, 28, 28)).astype(np.uint8)
    x[np.arange(len(y)), 2 * y + 4, 4:24] = 255  # a class-dependent bright row: learnable
    return Dataset("tiny", "Tiny", "synthetic", x[:n_train], y[:n_train], x[n_train:], y[n_train:], "test", 10,
                   tuple(map(str, range(10))), "none")  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train faster on one thread (and far faster when other work shares the CPU)."""
    with cpu_threads(1):
        yield


@pytest.fixture(scope="module")
def sweep(one_thread) -> Result:
    return exp5.lenet_sweep(lrs=(0.05, 0.2), seeds=(0, 1), num_steps=12, batch_size=16, eval_every=4,
                            eval_size=32, dataset=_tiny_dataset(), progress=False)  # fmt: skip


def test_lenet_sweep_rows_and_invariants(sweep):
    d = sweep.data
    assert d["test_acc"].shape == (8, 4) and list(d["steps"]) == [0, 4, 8, 12]
    assert list(d["bn"]) == [False, True] * 4 and sorted(set(d["lr"])) == [0.05, 0.2]
    assert d["gamma1"].shape == (8, 6) and d["beta2"].shape == (8, 16)
    assert np.isnan(d["gamma1"][~d["bn"]]).all() and np.isfinite(d["gamma1"][d["bn"]]).all()
    # same seed: same initial weights, so the accuracy at step 0 agrees with and without BN before any step
    # only when the BN of an untrained net changes nothing in eval mode; the init itself is checked here:
    from bncourse.models import LeNet

    a, b = LeNet(norm=None, seed=1), LeNet(norm="bn", seed=1)
    torch.testing.assert_close(a.features[0].weight, b.features[0].weight)
    torch.testing.assert_close(a.classifier[-1].weight, b.classifier[-1].weight)
    # the conv bias before BN gets no gradient: it stays (float32 rounding only); without BN it moves
    assert d["bias_shift"][d["bn"]].max() < 1e-4 < d["bias_shift"][~d["bn"]].min()
    # without BN the nonlinearity's input is the conv output; with BN it is not
    np.testing.assert_array_equal(d["pre_mean1"][~d["bn"]], d["post_mean1"][~d["bn"]])
    assert sweep.meta["num_test"] == 32 and sweep.config["num_steps"] == 12
    assert exp5.final_accuracy(sweep, 0.2, True).shape == (2,)
    with pytest.raises(ValueError, match="no run"):
        exp5.final_accuracy(sweep, 0.7, True)
    table = exp5.accuracy_table(sweep)
    assert "with BN" in table and "0.05" in table


def test_lenet_sweep_roundtrip_and_stored(sweep, tmp_path, monkeypatch):
    path = sweep.save(tmp_path / "lenet-fashion-full.json")
    back = Result.load(path)
    np.testing.assert_array_equal(back.data["gamma1"], sweep.data["gamma1"])
    assert load_stored("lenet-fashion-full", folders=(str(tmp_path),)).name == "lenet_sweep"
    monkeypatch.chdir(tmp_path)
    assert load_stored("nothing-here") is None
    with pytest.raises(ValueError, match="scale"):
        exp5.lenet_sweep("huge")


def test_channel_stats_of_bn_output_match_gamma_beta_in_train_mode():
    from bncourse.models import LeNet

    model = LeNet(norm="bn", seed=0)
    with torch.no_grad():
        model.features[1].weight.uniform_(0.5, 2.0)
        model.features[1].bias.normal_()
    stats = exp5.channel_stats(model.train(), torch.rand(16, 1, 28, 28))
    np.testing.assert_allclose(stats["post_mean1"], model.features[1].bias.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(stats["post_std1"], model.features[1].weight.detach().numpy(), rtol=1e-3)
    assert stats["pre_std2"].shape == (16,)


def test_shift_equivariance_per_channel_exact_per_pixel_not():
    x = _tiny_dataset().x_train[:16]
    r = exp5.shift_equivariance(x, shift=(3, 5))
    assert r.data["err_channel"] < 1e-12 and r.data["others_channel"] == 0.0
    assert r.data["err_pixel"] > 0.1 and r.data["diff_pixel"].shape == (28, 28)


def test_stat_noise_counts_images_when_pixels_are_fully_correlated():
    levels = np.random.default_rng(0).integers(0, 256, 400).astype(np.uint8)
    flat = np.broadcast_to(levels[:, None, None], (400, 28, 28))  # every image one grey level
    d = exp5.stat_noise(flat, batch_size=8, num_batches=40).data
    assert d["mu_B"].shape == (40, 6)
    assert np.all(d["sd_mu"] > 5 * d["pred_values"])  # far noisier than m*p*q independent values
    assert np.all(d["m_eff"] < 8 * 28 * 28 / 20)  # worth far fewer than m*p*q independent values
    np.testing.assert_allclose(d["sd_mu"], d["pred_images"], rtol=0.5)  # the images are what is independent


def test_lenet_fashion_full_is_registered():
    import importlib

    from bncourse.reproduce import RESULTS

    entry = RESULTS["lenet-fashion-full"]  # (module, function), imported when regenerated
    fn = getattr(importlib.import_module(entry[0]), entry[1]) if isinstance(entry, tuple) else entry
    assert fn is exp5.lenet_fashion_full
    full, reduced = exp5.LENET_SCALES["full"], exp5.LENET_SCALES["reduced"]
    assert set(reduced["lrs"]) <= set(full["lrs"]) and full["eval_size"] is None
    assert full["num_steps"] > reduced["num_steps"] and len(full["seeds"]) > len(reduced["seeds"])


# ------------------------------------------------------------------ plots and widget


def test_plots_are_labelled(sweep):
    figs = [
        plots5.plot_lenet_sweep(sweep),
        plots5.plot_gamma_beta(sweep),
        plots5.plot_channel_stats(sweep, lr=0.2, seed=1),
        plots5.plot_lenet_run(exp5.select_runs(sweep, 0.05, False, 0)),
        plots5.plot_shift_equivariance(exp5.shift_equivariance(_tiny_dataset().x_train[:8])),
    ]
    for fig in figs:
        for ax in fig.axes:
            if ax.get_label() == "<colorbar>":
                continue
            assert ax.get_xlabel() and ax.get_ylabel(), "every axis is labelled"
        plt.close(fig)
    with pytest.raises(ValueError, match="lenet_sweep"):
        plots5.plot_gamma_beta(exp5.shift_equivariance(_tiny_dataset().x_train[:4]))


def test_lenet_panel_retrains_on_change():
    spec = panels.lenet_panel(num_steps=6, batch_size=16, eval_size=16, dataset=_tiny_dataset())
    panel = panels.live(spec, draw=False)
    (rate, norm, size, seed), label = panel.children[0].children, panel.children[1]
    assert label.value == "" and rate.value == 0.3
    norm.value = False
    assert "without BN" in label.value and "after 6 steps" in label.value
    size.value = 32
    assert "batch 32" in label.value
    rate.value = 0.9
    assert "lr 0.9" in label.value
    seed.value = 1
    assert "lr 0.9" in label.value


def test_select_runs(sweep):
    one = exp5.select_runs(sweep, 0.2, True, 1)
    assert len(one.data["lr"]) == 1 and one.data["bn"][0] and one.data["seed"][0] == 1
    assert one.data["test_acc"].shape == (1, 4) and one.data["gamma2"].shape == (1, 16)
    np.testing.assert_array_equal(one.data["steps"], sweep.data["steps"])
    with pytest.raises(ValueError, match="no run"):
        exp5.select_runs(sweep, 0.2, True, 5)


# ------------------------------------------------------------------ checkers: correct implementations pass


def fwd_axes(x, g, b, eps):
    mu, var = x.mean(AX, keepdims=True), x.var(AX, keepdims=True)
    x_hat = (x - mu) / np.sqrt(var + eps)
    return g[None, :, None, None] * x_hat + b[None, :, None, None], (x_hat, g, np.sqrt(var + eps))


def fwd_f32_moveaxis(x, g, b, eps):
    x = x.astype(np.float32)
    x2 = np.moveaxis(x, 1, -1)  # (N, H, W, C)
    mu, var = x2.mean((0, 1, 2)), x2.var((0, 1, 2))
    x_hat = (x2 - mu) / np.sqrt(var + eps)
    out = np.moveaxis(g.astype(np.float32) * x_hat + b.astype(np.float32), -1, 1)
    return out, (np.moveaxis(x_hat, -1, 1), g, np.sqrt(var + eps)[None, :, None, None])


def bwd_compact(dout, cache):
    x_hat, g, std = cache
    db, dg = dout.sum(AX), (dout * x_hat).sum(AX)
    m = dout.size // dout.shape[1]
    dx = g.reshape(1, -1, 1, 1) / (m * std) * (m * dout - db.reshape(1, -1, 1, 1) - x_hat * dg.reshape(1, -1, 1, 1))
    return dx, dg, db


def via_2d(x, g, b, eps, bn2d):
    n, c, h, w = x.shape
    out2, cache = bn2d(x.transpose(0, 2, 3, 1).reshape(-1, c), g, b, eps)
    return out2.reshape(n, h, w, c).transpose(0, 3, 1, 2), cache


def via_2d_swapaxes(x, g, b, eps, bn2d):
    n, c, h, w = x.shape
    out2, cache = bn2d(x.swapaxes(1, 3).reshape(-1, c), g, b, eps)  # (N, W, H, C)
    return out2.reshape(n, w, h, c).swapaxes(1, 3), cache


def fold_right(bias, bn):
    return {**bn, "running_mean": bn["running_mean"] - bias}


@pytest.mark.parametrize("forward", [fwd_axes, fwd_f32_moveaxis, batchnorm_forward])
def test_correct_forward_passes(forward, capsys):
    checks.check_spatial_forward(forward)
    assert "all 5 cases passed" in capsys.readouterr().out


@pytest.mark.parametrize("forward,backward", [(fwd_axes, bwd_compact), (fwd_f32_moveaxis, bwd_compact),
                                              (batchnorm_forward, batchnorm_backward)])  # fmt: skip
def test_correct_backward_passes(forward, backward, capsys):
    checks.check_spatial_backward(forward, backward)
    assert "all 5 cases passed" in capsys.readouterr().out


@pytest.mark.parametrize("fn", [via_2d, via_2d_swapaxes])
def test_correct_via_2d_and_fold_pass(fn, capsys):
    checks.check_spatial_via_2d(fn)
    checks.check_fold_conv_bias(fold_right)
    out = capsys.readouterr().out
    assert "through bn2d" in out and "both cases passed" in out


# ------------------------------------------------------------------ checkers: each typical mistake is named


def _norm(x, g, b, eps, axes=AX, ddof=0):
    mu, var = x.mean(axes, keepdims=True), x.var(axes, ddof=ddof, keepdims=True)
    return g.reshape(1, -1, 1, 1) * (x - mu) / np.sqrt(var + eps) + b.reshape(1, -1, 1, 1), None


def _count_n(x, g, b, eps):
    mu = x.sum(AX, keepdims=True) / x.shape[0]
    var = ((x - mu) ** 2).sum(AX, keepdims=True) / x.shape[0]
    return g.reshape(1, -1, 1, 1) * (x - mu) / np.sqrt(var + eps) + b.reshape(1, -1, 1, 1), None


WRONG_FORWARDS = {
    "per_pixel": (lambda x, g, b, eps: _norm(x, g, b, eps, axes=0), r"per-pixel statistics"),
    "all_axes": (lambda x, g, b, eps: _norm(x, g, b, eps, axes=(0, 1, 2, 3)), r"whole array"),
    "instance": (lambda x, g, b, eps: _norm(x, g, b, eps, axes=(2, 3)), r"Instance Norm"),
    "layer": (lambda x, g, b, eps: _norm(x, g, b, eps, axes=(1, 2, 3)), r"Layer Norm"),
    "no_width": (lambda x, g, b, eps: _norm(x, g, b, eps, axes=(0, 2)), r"width axis is missing"),
    "count_n": (_count_n, r"wrong count m.*divided by N"),
    "unbiased": (lambda x, g, b, eps: _norm(x, g, b, eps, ddof=1), r"unbiased variance"),
    "eps_ignored": (lambda x, g, b, eps: _norm(x, g, b, 1e-5), r"eps is ignored"),
    "gamma_last_axis": (lambda x, g, b, eps: (g * (x - x.mean(AX, keepdims=True)) + b, None), r"reshape them to"),
    "reshape_no_transpose": (
        lambda x, g, b, eps: (batchnorm_forward(x.reshape(-1, x.shape[1]), g, b, eps)[0].reshape(x.shape), None),
        r"without moving the channels last",
    ),  # fmt: skip
    "stub": (lambda x, g, b, eps: (None, None), r"out is None"),
}


@pytest.mark.parametrize("name", WRONG_FORWARDS)
def test_wrong_forward_is_named(name):
    forward, pattern = WRONG_FORWARDS[name]
    with pytest.raises(AssertionError, match=pattern):
        checks.check_spatial_forward(forward)


def _bwd(dout, cache, a=lambda d: d.mean(AX, keepdims=True), sums=AX, paths=True):
    x_hat, g, std = cache
    g4 = g.reshape(1, -1, 1, 1)
    dx = g4 / std * (dout - a(dout) - x_hat * a(dout * x_hat)) if paths else g4 / std * dout
    return dx, (dout * x_hat).sum(sums), dout.sum(sums)


WRONG_BACKWARDS = {
    "per_pixel_means": (lambda d, c: _bwd(d, c, a=lambda v: v.mean(0)), r"per-pixel means"),
    "count_n": (lambda d, c: _bwd(d, c, a=lambda v: v.sum(AX, keepdims=True) / v.shape[0]), r"divides by N"),
    "constants": (lambda d, c: _bwd(d, c, paths=False), r"mu and var as constants"),
    "sums_axis0": (lambda d, c: _bwd(d, c, sums=0), r"dgamma has the wrong shape.*batch only"),
    "dgamma_mean": (lambda d, c: (_bwd(d, c)[0], (d * c[0]).mean(AX), d.sum(AX)), r"dgamma takes the mean"),
    "dbeta_gamma": (lambda d, c: (*_bwd(d, c)[:2], d.sum(AX) * c[1]), r"dbeta is multiplied by gamma"),
}


@pytest.mark.parametrize("name", WRONG_BACKWARDS)
def test_wrong_backward_is_named(name):
    backward, pattern = WRONG_BACKWARDS[name]
    with pytest.raises(AssertionError, match=pattern):
        checks.check_spatial_backward(fwd_axes, backward)


def test_backward_blames_a_wrong_forward_first():
    with pytest.raises(AssertionError, match=r"(?s)fix your forward first.*per-pixel"):
        checks.check_spatial_backward(WRONG_FORWARDS["per_pixel"][0], bwd_compact)


WRONG_VIA_2D = {
    "no_transpose": (
        lambda x, g, b, eps, bn2d: (bn2d(x.reshape(-1, x.shape[1]), g, b, eps)[0].reshape(x.shape), None),
        r"without moving the channels last",
    ),  # fmt: skip
    "not_back": (
        lambda x, g, b, eps, bn2d: (
            bn2d(x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1]), g, b, eps)[0].reshape(x.shape),
            None,
        ),
        r"not moved back",
    ),  # fmt: skip
    "per_pixel_features": (
        lambda x, g, b, eps, bn2d: (bn2d(x.reshape(x.shape[0], -1), g, b, eps)[0].reshape(x.shape), None),
        r"one feature per pixel",
    ),  # fmt: skip
    "bypass": (lambda x, g, b, eps, bn2d: batchnorm_forward(x, g, b, eps), r"call bn2d"),
}


@pytest.mark.parametrize("name", WRONG_VIA_2D)
def test_wrong_via_2d_is_named(name):
    fn, pattern = WRONG_VIA_2D[name]
    with pytest.raises(AssertionError, match=pattern):
        checks.check_spatial_via_2d(fn)


WRONG_FOLDS = {
    "unchanged": (lambda bias, bn: dict(bn), r"eval mode.*nothing changed"),
    "sign": (lambda bias, bn: {**bn, "running_mean": bn["running_mean"] + bias}, r"the sign"),
    "beta": (
        lambda bias, bn: {**bn, "beta": bn["beta"] + bn["gamma"] * bias / np.sqrt(bn["running_var"] + bn["eps"])},
        r"training mode.*gamma or beta changed",
    ),  # fmt: skip
    "var": (
        lambda bias, bn: {**bn, "running_mean": bn["running_mean"] - bias, "running_var": bn["running_var"] + 1},
        r"running_var changed",
    ),  # fmt: skip
    "not_dict": (lambda bias, bn: bn["running_mean"] - bias, r"return a dict"),
}


@pytest.mark.parametrize("name", WRONG_FOLDS)
def test_wrong_fold_is_named(name):
    fn, pattern = WRONG_FOLDS[name]
    with pytest.raises(AssertionError, match=pattern):
        checks.check_fold_conv_bias(fn)


def test_every_forward_variant_differs_from_the_reference():
    cases = checks._cases()
    for hint, fn in checks._FORWARD:
        err = max(rel_err(fn(c), batchnorm_forward(c.x, c.gamma, c.beta, c.eps)[0], 1.0 + np.abs(c.x)) for c in cases)
        assert err > 1e-3, f"variant indistinguishable from the reference: {hint}"
