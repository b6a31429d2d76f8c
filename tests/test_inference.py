"""Chapter 4: running averages, recalibration (PreciseBN), folding BN, the experiments, plots, widget, checkers."""

from __future__ import annotations

import copy

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib import pyplot as plt
from torch import nn

from bncourse import norms
from bncourse.checks.inference import check_fold_linear_bn, check_recalibrate, check_running_update
from bncourse.data import load_dataset
from bncourse.experiments import inference as exp4
from bncourse.experiments import inference_practice as exp4p
from bncourse.models import LeNet
from bncourse.norms import BatchNorm
from bncourse.panels import format_running_stats, live, running_stats_panel
from bncourse.plots import inference as plots4
from bncourse.result import Result
from bncourse.runtime import cpu_threads

# ------------------------------------------------------------------------------------------ helpers


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models here are tiny: one thread is faster, and keeps the suite fast when the CPU is shared."""
    with cpu_threads(1):
        yield


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial gamma, beta and running statistics for every BN layer (float64)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in norms.bn_layers(model):
            if bn.weight is not None:
                bn.weight.uniform_(0.5, 2.0, generator=g)
                bn.bias.normal_(0.0, 1.0, generator=g)
            bn.running_mean.normal_(0.0, 2.0, generator=g)
            bn.running_var.uniform_(0.1, 3.0, generator=g)
    return model.eval()


def _stats(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(bn.running_mean.clone(), bn.running_var.clone()) for bn in norms.bn_layers(model)]


# ------------------------------------------------------------------------------------------ running_average


@pytest.mark.parametrize("momentum", [0.1, 0.5, 1.0, None])
def test_running_average_is_what_batchnorm_keeps(momentum):
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(3, momentum=momentum).double()
    xs = [torch.randn(5, 3, dtype=torch.float64) * 2 + 1 for _ in range(7)]
    means, variances = [], []
    for x in xs:
        bn(x)
        means.append(bn.running_mean.clone().numpy())
        variances.append(bn.running_var.clone().numpy())
    bm = np.stack([x.mean(0).numpy() for x in xs])
    bv = np.stack([x.var(0, unbiased=True).numpy() for x in xs])
    np.testing.assert_allclose(norms.running_average(bm, momentum, 0.0), np.stack(means), rtol=1e-12)
    np.testing.assert_allclose(norms.running_average(bv, momentum, 1.0), np.stack(variances), rtol=1e-12)
    with pytest.raises(ValueError, match="momentum"):
        norms.running_average(bm, 1.5)


# ------------------------------------------------------------------------------------------ fold_bn


@pytest.mark.parametrize("bn_cls", [nn.BatchNorm1d, BatchNorm])
@pytest.mark.parametrize("affine", [True, False])
def test_fold_linear_bn_equals_unfolded_float64(bn_cls, affine):
    torch.manual_seed(1)
    lin = nn.Linear(7, 5).double()
    bn = _randomise(nn.Sequential(bn_cls(5, affine=affine).double()))[0]
    x = torch.randn(11, 7, dtype=torch.float64)
    w0 = lin.weight.clone()
    with torch.no_grad():
        folded = norms.fold_bn(lin, bn)
        torch.testing.assert_close(folded(x), bn(lin(x)), rtol=1e-12, atol=1e-12)
    assert isinstance(folded, nn.Linear) and folded is not lin and torch.equal(lin.weight, w0)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kw", [{}, {"stride": 2, "padding": 1}, {"groups": 2, "padding": 2, "dilation": 2}])
def test_fold_conv2d_bn2d_equals_unfolded_float64(bias, kw):
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 6, 3, bias=bias, **kw).double()
    bn = _randomise(nn.Sequential(nn.BatchNorm2d(6).double()))[0]
    x = torch.randn(3, 4, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        folded = norms.fold_bn(conv, bn)
        torch.testing.assert_close(folded(x), bn(conv(x)), rtol=1e-12, atol=1e-12)
    assert folded.bias is not None and folded.stride == conv.stride and folded.groups == conv.groups
    assert conv.bias is None if not bias else conv.bias is not None  # the original is untouched


def test_fold_bn_model_lenet_and_mlp_float64():
    torch.manual_seed(3)
    lenet = LeNet(norm="bn").double()
    for conv in (lenet.features[0], lenet.features[4]):
        conv.bias = None
    _randomise(lenet)
    x = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    before = copy.deepcopy(lenet.state_dict())
    folded = norms.fold_bn_model(lenet)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), lenet(x), rtol=1e-10, atol=1e-12)
    assert not norms.bn_layers(folded) and len(norms.bn_layers(lenet)) == 4
    assert all(torch.equal(v, lenet.state_dict()[k]) for k, v in before.items())
    assert sum(isinstance(m, nn.Identity) for m in folded.modules()) == 4 and not folded.training


def test_fold_bn_errors():
    bn = nn.BatchNorm1d(4)
    with pytest.raises(TypeError, match="Linear"):
        norms.fold_bn(nn.ConvTranspose2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(TypeError, match="BatchNorm"):
        norms.fold_bn(nn.Linear(3, 4), nn.LayerNorm(4))
    with pytest.raises(ValueError, match="4 channels"):
        norms.fold_bn(nn.Linear(3, 5), bn)
    with pytest.raises(ValueError, match="track_running_stats"):
        norms.fold_bn(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False))


# ------------------------------------------------------------------------------------------ recalibration


def _data(n: int = 70, d: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.5, 3, d, dtype=torch.float64) + 2


def test_recalibration_equals_population_statistics():
    torch.manual_seed(4)
    model = _randomise(nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3)).double())
    x = _data()
    batches = list(x.split(16))  # unequal sizes: 16, 16, 16, 16, 6
    norms.recalibrate_bn(model, batches)
    with torch.no_grad():
        z = model[0](x)
    bn = model[1]
    torch.testing.assert_close(bn.running_mean, z.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bn.running_var, z.var(0, unbiased=True), rtol=1e-12, atol=1e-12)
    assert not model.training


def test_recalibration_deeper_layers_use_train_mode_upstream():
    torch.manual_seed(5)
    model = _randomise(
        nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 4), nn.BatchNorm1d(4)).double()
    )
    batches = list(_data(64).split(16))
    stats = norms.bn_input_stats(model, batches)
    with torch.no_grad():
        z2 = torch.cat([model[3](model[2](nn.functional.batch_norm(
            model[0](b), None, None, model[1].weight, model[1].bias, training=True))) for b in batches])  # fmt: skip
    torch.testing.assert_close(stats[1][0], z2.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats[1][1], z2.var(0), rtol=1e-12, atol=1e-12)
    assert stats[1][2] == 64


def test_cumulative_recalibration_equals_swa_update_bn_and_restores_state():
    torch.manual_seed(6)
    model = _randomise(nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3, momentum=0.3), nn.ReLU()).double())
    model.train()  # restored afterwards
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 2, 6, 6, generator=g, dtype=torch.float64), None) for _ in range(5)]  # (x, y)
    params = [p.clone() for p in model.parameters()]
    ours = norms.recalibrate_bn(copy.deepcopy(model), batches, method="cumulative")
    ref = copy.deepcopy(model)
    torch.optim.swa_utils.update_bn(batches, ref)
    for (m1, v1), (m2, v2) in zip(_stats(ours), _stats(ref), strict=True):
        torch.testing.assert_close(m1, m2)
        torch.testing.assert_close(v1, v2)
    assert ours.training and ours[1].momentum == 0.3
    assert all(torch.equal(p, q) for p, q in zip(params, ours.parameters(), strict=True))
    first = norms.recalibrate_bn(copy.deepcopy(model), batches, num_batches=1)
    torch.testing.assert_close(first[1].running_mean, norms.bn_input_stats(model, batches[:1])[0][0])
    with pytest.raises(ValueError, match="method"):
        norms.recalibrate_bn(model, batches, method="ema")


def test_bn_input_stats_changes_nothing():
    model = _randomise(nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2)).double())
    model[2].train()  # mixed modes are restored as they were
    before, count = _stats(model), model[1].num_batches_tracked.clone()
    norms.bn_input_stats(model, list(_data().split(10)))
    after = _stats(model)
    assert all(torch.equal(a, b) for pair in zip(before, after, strict=True) for a, b in zip(*pair, strict=True))
    assert torch.equal(model[1].num_batches_tracked, count) and model[2].training and not model[1].training
    with pytest.raises(ValueError, match="no BatchNorm"):
        norms.bn_input_stats(nn.Linear(2, 2), [torch.zeros(3, 2)])


# ------------------------------------------------------------------------------------------ experiments


def test_batch_variance_bias_matches_theory():
    r = exp4.batch_variance_bias(batch_sizes=(2, 5, 20), num_batches=4000, seed=1)
    d = r.data
    assert np.all(np.abs(d["mean_biased"] - d["predicted"]) < 4 * d["se_biased"])
    assert np.all(np.abs(d["mean_unbiased"] - 4.0) < 4 * d["se_unbiased"])
    np.testing.assert_allclose(d["predicted"], [2.0, 3.2, 3.8])


def test_running_stats_invariants():
    r = exp4.running_stats(momenta=(0.05, 1.0), batch_size=8, num_steps=400, drift=2.0, seed=2)
    d = r.data
    assert d["ema_mean"].shape == (2, 400) and d["cma_mean"].shape == (400,)
    np.testing.assert_allclose(d["ema_mean"][1], d["batch_mean"])  # momentum 1: the last batch
    np.testing.assert_allclose(d["cma_mean"], np.cumsum(d["batch_mean"]) / np.arange(1, 401))
    np.testing.assert_allclose(d["true_mean"][[0, -1]], [3.0 + 2.0 / 400, 5.0])
    assert abs(d["cma_mean"][-1] - d["true_mean"][-1] + 1.0) < 0.2  # the cumulative average lags by drift / 2
    assert abs(d["ema_mean"][0, -1] - d["true_mean"][-1]) < 0.5
    with pytest.raises(ValueError):
        exp4.running_stats(batch_size=1)


@pytest.fixture(scope="module")
def tracked():
    """A short tracked training run (MNIST 5k, offline) and the test data."""
    result, model = exp4.stat_tracking("mnist5k", num_steps=60, num_evals=4, precise_examples=1000, seed=0)
    ds = load_dataset("mnist5k")
    return result, model, ds


def test_stat_tracking_invariants(tracked):
    result, model, _ = tracked
    d, labels = result.data, result.config["labels"]
    assert labels == ["momentum 0.5", "momentum 0.1", "momentum 0.01", "momentum=None", "precise"]
    assert d["test_acc"].shape == (5, len(d["steps"])) and d["mean_err"].shape == (4, len(d["steps"]))
    assert d["steps"][0] == 0 and d["steps"][-1] == 60 and np.all((d["test_acc"] >= 0) & (d["test_acc"] <= 1))
    own = _stats(model)  # the model's own running statistics are the tracked momentum-0.1 set
    for layer, (mean, var) in enumerate(own):
        np.testing.assert_allclose(d["final_mean"][1, layer], mean.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(d["final_var"][1, layer], var.numpy(), rtol=1e-4, atol=1e-5)
    assert np.all(d["mean_err"][:, 1:] >= 0) and d["test_acc"][-1, -1] > 0.5 and not model.training
    early = d["mean_err"][:, 1]  # after one step, momentum 0.01 is still near its initial value
    assert early[2] > early[1] > early[0] and early[3] < early[0]


def test_practice_experiments_leave_the_model_alone(tracked, tmp_path):
    _, model, ds = tracked
    x, y = exp4.flat_images(ds.x_test[:300]), torch.as_tensor(ds.y_test[:300])
    before = copy.deepcopy(model.state_dict())
    acc = exp4.accuracy(copy.deepcopy(model), x, y)
    dep = exp4p.batch_dependence(model, x, y, batch_size=32, num_batchings=3)
    assert dep.data["eval_acc"] == pytest.approx(acc) and dep.data["prob_true"].shape == (3, 300)
    assert 0 <= dep.data["frac_changed"] <= 1 and dep.data["sorted_acc"] < acc
    mis = exp4p.eval_mistakes(model, x, y, batch_sizes=(2, 300))
    assert mis.data["eval_acc"] == pytest.approx(acc) and "more than 1 value" in mis.data["batch1_error"]
    assert mis.data["train_acc"][0] < mis.data["train_acc"][1] and 0 <= mis.data["after_sorted"] <= 1
    small = copy.copy(ds)
    small.x_train, small.y_train, small.x_test, small.y_test = ds.x_train[:500], ds.y_train[:500], ds.x_test[:300], y
    ft = exp4p.finetune_bn(model, small, num_steps=5, recal_examples=200)
    assert ft.data["test_acc"].shape == (2, 4) and ft.data["test_acc"][0, 0] == pytest.approx(acc)
    rec = exp4.recalibration_samples(model, exp4.flat_images(ds.x_train), x, y, sample_sizes=(32, 64), seeds=(0,))
    assert rec.data["test_acc"].shape == (1, 2) and rec.data["acc_before"] == pytest.approx(acc)
    timing = exp4p.fold_timing({"mlp": (model, (784,))}, batch_sizes=(1, 8), repeats=2)
    assert timing.data["max_abs_diff"][0] < 1e-4 and timing.data["unfolded_s"].shape == (1, 2)
    np.testing.assert_allclose(timing.data["speedup"], timing.data["unfolded_s"] / timing.data["folded_s"])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    back = Result.load(mis.save(tmp_path / "mis.json"))
    assert str(back.data["batch1_error"]) == mis.data["batch1_error"]


def test_set_bn_stats(tracked):
    _, model, _ = tracked
    m = copy.deepcopy(model)
    widths = [bn.num_features for bn in norms.bn_layers(m)]
    norms.set_bn_stats(m, [np.full(w, 2.0) for w in widths], [np.full(w, 3.0) for w in widths])
    assert all(float(bn.running_mean[0]) == 2.0 and float(bn.running_var[-1]) == 3.0 for bn in norms.bn_layers(m))
    norms.set_bn_stats(m, [torch.full((w,), 4.0, dtype=torch.float64) for w in widths], [[5.0] * w for w in widths])
    assert all(float(bn.running_mean[0]) == 4.0 and float(bn.running_var[-1]) == 5.0 for bn in norms.bn_layers(m))
    with pytest.raises(ValueError, match=f"has {len(widths)} BN layers; got 1 means"):
        norms.set_bn_stats(m, [np.zeros(widths[0])], [np.ones(widths[0])])
    untracked = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3, track_running_stats=False))
    with pytest.raises(ValueError, match="no running statistics"):
        norms.set_bn_stats(untracked, [np.zeros(3)], [np.ones(3)])


# ------------------------------------------------------------------------------------------ plots and widget


def test_plots_have_labelled_axes_and_reject_wrong_results(tracked):
    result, model, ds = tracked
    x, y = exp4.flat_images(ds.x_test[:200]), torch.as_tensor(ds.y_test[:200])
    small = copy.copy(ds)
    small.x_train, small.y_train, small.x_test, small.y_test = ds.x_train[:300], ds.y_train[:300], ds.x_test[:200], y
    figs = [
        plots4.plot_batch_variance_bias(exp4.batch_variance_bias(batch_sizes=(2, 4), num_batches=50)),
        plots4.plot_running_stats(exp4.running_stats(num_steps=20)),
        plots4.plot_stat_tracking(result),
        plots4.plot_batch_dependence(exp4p.batch_dependence(model, x, y, num_batchings=2)),
        plots4.plot_eval_mistakes(exp4p.eval_mistakes(model, x, y, batch_sizes=(2, 8))),
        plots4.plot_finetune(exp4p.finetune_bn(model, small, num_steps=2, recal_examples=100)),
        plots4.plot_recalibration(exp4.recalibration_samples(model, x, x, y, sample_sizes=(16, 32), seeds=(0, 1))),
        plots4.plot_fold_timing(exp4p.fold_timing({"mlp": (model, (784,))}, batch_sizes=(1,), repeats=1)),
    ]
    for fig in figs:
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel(), f"unlabelled axis in {ax.get_title()!r}"
        plt.close(fig)
    with pytest.raises(ValueError, match="running_stats"):
        plots4.plot_running_stats(result)


def test_widget_reruns_on_change():
    panel = live(running_stats_panel(momentum=0.1, batch_size=8, num_steps=50), draw=False)
    controls = panel.children[0].children
    stats = panel.children[1]
    before = stats.value
    controls[0].value = 0.5  # momentum
    assert stats.value != before and "momentum 0.5" in stats.value
    controls[2].value = 100  # steps
    assert "after 100 steps" in stats.value
    assert "momentum=None" in format_running_stats(exp4.running_stats(num_steps=5))


# ------------------------------------------------------------------------------------------ checkers


def upd_numpy(rm, rv, x, momentum):
    return (1 - momentum) * rm + momentum * x.mean(0), (1 - momentum) * rv + momentum * x.var(0, ddof=1)


def upd_in_place_f32(rm, rv, x, momentum):
    x = x.astype(np.float32)
    n = x.shape[0]
    rm *= 1 - momentum
    rm += momentum * x.mean(0)
    rv *= 1 - momentum
    rv += momentum * x.var(0) * n / (n - 1)
    return rm, rv


def upd_torch(rm, rv, x, momentum):
    bn = nn.BatchNorm1d(x.shape[1], momentum=momentum).double()
    bn.running_mean.copy_(torch.as_tensor(rm))
    bn.running_var.copy_(torch.as_tensor(rv))
    bn(torch.as_tensor(x))
    return bn.running_mean, bn.running_var  # tensors are accepted


@pytest.mark.parametrize("fn", [upd_numpy, upd_in_place_f32, upd_torch], ids=lambda f: f.__name__)
def test_running_update_correct_passes(fn, capsys):
    check_running_update(fn)
    assert "all 5 cases passed" in capsys.readouterr().out


WRONG_UPDATES = {
    "keras": (lambda rm, rv, x, m: (m * rm + (1 - m) * x.mean(0), m * rv + (1 - m) * x.var(0, ddof=1)), r"Keras"),
    "cs231n": (lambda rm, rv, x, m: (m * rm + (1 - m) * x.mean(0), m * rv + (1 - m) * x.var(0)), r"CS231n"),
    "biased": (lambda rm, rv, x, m: ((1 - m) * rm + m * x.mean(0), (1 - m) * rv + m * x.var(0)), r"biased"),
    "std": (lambda rm, rv, x, m: ((1 - m) * rm + m * x.mean(0), (1 - m) * rv + m * x.std(0, ddof=1)), r"standard dev"),
    "unchanged": (lambda rm, rv, x, m: (rm, rv), r"(?s)mean is returned unchanged.*variance is returned unchanged"),
    "batch_only": (lambda rm, rv, x, m: (x.mean(0), x.var(0, ddof=1)), r"returned the batch mean"),
    "hard_coded": (lambda rm, rv, x, m: upd_numpy(rm, rv, x, 0.1), r"hard-coded to 0.1"),
    "one_output": (lambda rm, rv, x, m: upd_numpy(rm, rv, x, m)[0], r"return a tuple"),
    "stub": (lambda rm, rv, x, m: (None, None), r"is None"),
    "raises": (lambda rm, rv, x, m: (rm + x.mean(1), rv), r"raised ValueError.*shape mismatch"),
    "unknown": (lambda rm, rv, x, m: ((1 - m) * rm + m * x.mean(0) * 1.01, rv), r"wrong in"),
}


@pytest.mark.parametrize("name", WRONG_UPDATES)
def test_running_update_mistakes_are_named(name):
    fn, pattern = WRONG_UPDATES[name]
    with pytest.raises(AssertionError, match=pattern):
        check_running_update(fn)


def fold_numpy(w, b, gamma, beta, rm, rv, eps):
    s = gamma / np.sqrt(rv + eps)
    return s[:, None] * w, s * (b - rm) + beta


def fold_via_module(w, b, gamma, beta, rm, rv, eps):
    """Through bncourse.norms.fold_bn, returning tensors in float32."""
    lin = nn.Linear(w.shape[1], w.shape[0])
    bn = nn.BatchNorm1d(w.shape[0], eps=eps)
    with torch.no_grad():
        for p, v in ((lin.weight, w), (lin.bias, b), (bn.weight, gamma), (bn.bias, beta)):
            p.copy_(torch.as_tensor(v))
        bn.running_mean.copy_(torch.as_tensor(rm))
        bn.running_var.copy_(torch.as_tensor(rv))
    folded = norms.fold_bn(lin, bn)
    return folded.weight, folded.bias


@pytest.mark.parametrize("fn", [fold_numpy, fold_via_module], ids=lambda f: f.__name__)
def test_fold_check_correct_passes(fn, capsys):
    check_fold_linear_bn(fn)
    assert "all 4 cases passed" in capsys.readouterr().out


def _fold_with(w_fn=None, b_fn=None):
    def fold(w, b, gamma, beta, rm, rv, eps):
        wf, bf = fold_numpy(w, b, gamma, beta, rm, rv, eps)
        std = np.sqrt(rv + eps)
        return (w_fn(w, gamma, std, rv, eps) if w_fn else wf), (b_fn(b, gamma, beta, rm, std, rv) if b_fn else bf)

    return fold


WRONG_FOLDS = {
    "columns": (lambda w, b, g, be, rm, rv, eps: (w * (g / np.sqrt(rv + eps)), b), r"scale the rows"),
    "eps_missing": (_fold_with(lambda w, g, s, rv, e: (g / np.sqrt(rv))[:, None] * w), r"eps is missing"),
    "eps_outside": (_fold_with(lambda w, g, s, rv, e: (g / (np.sqrt(rv) + e))[:, None] * w), r"outside the square"),
    "no_sqrt": (_fold_with(lambda w, g, s, rv, e: (g / (rv + e))[:, None] * w), r"not the standard deviation"),
    "no_gamma": (_fold_with(lambda w, g, s, rv, e: (1 / s)[:, None] * w), r"gamma is missing from W_f"),
    "times_std": (_fold_with(lambda w, g, s, rv, e: (g * s)[:, None] * w), r"multiplied by the standard"),
    "no_mean": (_fold_with(b_fn=lambda b, g, be, rm, s, rv: g / s * b + be), r"running mean is not subtracted"),
    "no_beta": (_fold_with(b_fn=lambda b, g, be, rm, s, rv: g / s * (b - rm)), r"beta is missing"),
    "b_unscaled": (_fold_with(b_fn=lambda b, g, be, rm, s, rv: b - g / s * rm + be), r"b is not scaled"),
    "no_b": (_fold_with(b_fn=lambda b, g, be, rm, s, rv: be - g / s * rm), r"own bias b is missing"),
    "sign": (_fold_with(b_fn=lambda b, g, be, rm, s, rv: g / s * (b + rm) + be), r"wrong sign"),
    "wrong_shape": (lambda w, b, g, be, rm, rv, eps: (w.T, b), r"W_f has the wrong shape"),
    "two_mistakes": (
        _fold_with(lambda w, g, s, rv, e: (g / np.sqrt(rv))[:, None] * w, lambda b, g, be, rm, s, rv: g / s * b + be),
        r"(?s)W_f is wrong: eps is missing.*b_f is wrong: the running mean is not subtracted",
    ),
}


@pytest.mark.parametrize("name", WRONG_FOLDS)
def test_fold_check_mistakes_are_named(name):
    fn, pattern = WRONG_FOLDS[name]
    with pytest.raises(AssertionError, match=pattern):
        check_fold_linear_bn(fn)


def recal_swa(model, batches):
    torch.optim.swa_utils.update_bn(batches, model)
    model.eval()


def recal_pooled(model, batches):
    norms.recalibrate_bn(model, batches).eval()


def recal_manual(model, batches, whole_model_train=False):
    bns = norms.bn_layers(model)
    momenta = [bn.momentum for bn in bns]
    model.train(whole_model_train)  # only the BN layers in train mode: dropout stays off
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for bn, m in zip(bns, momenta, strict=True):
        bn.momentum = m
    model.eval()


@pytest.mark.parametrize("fn", [recal_pooled, recal_manual], ids=lambda f: f.__name__)
def test_recalibrate_check_correct_passes(fn, capsys):
    check_recalibrate(fn)
    assert "all three models passed" in capsys.readouterr().out


def _recal_with(reset=True, momentum=None, train=True, restore=True, evaluate=True, first_only=False, step=False):
    def recal(model, batches):
        bns = norms.bn_layers(model)
        momenta = [bn.momentum for bn in bns]
        for bn in bns:
            if reset:
                bn.reset_running_stats()
            if momentum != "keep":
                bn.momentum = momentum
        model.train(train)
        for x in batches[:1] if first_only else batches:
            out = model(x)
            if step:
                out.sum().backward()
                torch.optim.SGD(model.parameters(), lr=0.1).step()
        if restore:
            for bn, m in zip(bns, momenta, strict=True):
                bn.momentum = m
        if evaluate:
            model.eval()

    return recal


WRONG_RECALS = {
    "no_reset": (_recal_with(reset=False), r"not reset"),
    "ema": (_recal_with(momentum="keep"), r"momentum was left"),
    "neither": (_recal_with(reset=False, momentum="keep"), r"neither reset"),
    "eval_mode": (_recal_with(train=False), r"reset values.*train mode"),
    "eval_mode_no_reset": (_recal_with(reset=False, train=False), r"did not change.*train mode"),
    "last_batch": (_recal_with(momentum=1.0), r"only the last batch"),
    "first_batch": (_recal_with(first_only=True), r"only the first batch"),
    "not_restored": (_recal_with(restore=False), r"momenta are \[None, None\].*restore"),
    "train_mode_left": (_recal_with(evaluate=False), r"left in train mode"),
    "trains": (_recal_with(step=True), r"weights changed"),
    "raises": (lambda model, batches: model(torch.zeros(3, 2)), r"recalibrate raised RuntimeError"),
    "dropout_on": (lambda model, batches: recal_manual(model, batches, whole_model_train=True), r"dropout"),
    "update_bn_with_dropout": (recal_swa, r"model.train\(\) also switched dropout on"),
}


@pytest.mark.parametrize("name", WRONG_RECALS)
def test_recalibrate_check_mistakes_are_named(name):
    fn, pattern = WRONG_RECALS[name]
    with pytest.raises(AssertionError, match=pattern):
        check_recalibrate(fn)


def test_bn_train_mode_switches_only_bn_and_restores_every_flag():
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5), nn.BatchNorm1d(3), nn.Sequential(BatchNorm(3)))
    model.train()
    model[0].eval()  # a mixed start: the exact flags must come back
    before = [m.training for m in model.modules()]
    with norms.bn_train_mode(model) as bns:
        assert bns == [model[2], model[3][0]]
        assert [m.training for m in model.modules()] == [False, False, False, True, False, True]
    assert [m.training for m in model.modules()] == before
    with pytest.raises(RuntimeError, match="inside"):
        with norms.bn_train_mode(model):
            raise RuntimeError("inside")
    assert [m.training for m in model.modules()] == before
