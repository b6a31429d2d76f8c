"""Chapter 7: make_norm's alternatives, the new numpy references, the batch-size experiment (tiny settings),
its plots and widget, and the Group Norm exercise checkers (right answers pass, typical mistakes are named)."""

import importlib

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib import pyplot as plt
from torch import nn

from bncourse import panels, reproduce
from bncourse.checks.alternatives import (
    check_layernorm_forward,
    check_spatial_groupnorm_backward,
    check_spatial_groupnorm_forward,
)
from bncourse.data import Dataset
from bncourse.experiments import norms_compare as exp7
from bncourse.gradcheck import eval_numerical_gradient_array, rel_error
from bncourse.models import NORMS, ConvNet3, LeNet, SmallVGG, make_norm
from bncourse.norms.group import (
    instancenorm_backward,
    instancenorm_forward,
    weightnorm_backward,
    weightnorm_forward,
)
from bncourse.plots import norms_compare as plot7
from bncourse.result import Result, load_stored
from bncourse.runtime import cpu_threads

RNG = np.random.default_rng(7)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train faster on one thread (and far faster when other work shares the CPU)."""
    with cpu_threads(1):
        yield


# ------------------------------------------------------------------ make_norm


def test_norms_tuple_keeps_the_old_entries():
    assert NORMS[:3] == (None, "bn", "bn-ours") and {"gn", "ln", "in"} <= set(NORMS)
    with pytest.raises(ValueError, match="norm must be one of"):
        make_norm("xn", 8)


@pytest.mark.parametrize("c, groups", [(16, 4), (32, 8), (64, 16), (256, 32), (6, 1), (120, 30), (12, 3), (3, 1)])
def test_make_norm_gn_groups(c, groups):
    m = make_norm("gn", c)
    assert isinstance(m, nn.GroupNorm) and m.num_groups == groups and c % m.num_groups == 0


def test_make_norm_ln_is_layer_norm_on_both_ranks():
    ln = make_norm("ln", 6).double()
    with torch.no_grad():
        ln.weight.copy_(torch.rand(6) + 0.5)
        ln.bias.copy_(torch.randn(6))
    x2 = torch.randn(5, 6, dtype=torch.float64)
    torch.testing.assert_close(ln(x2), F.layer_norm(x2, (6,), ln.weight, ln.bias, 1e-5), rtol=1e-12, atol=1e-12)
    x4 = torch.randn(3, 6, 4, 5, dtype=torch.float64)
    plain = F.layer_norm(x4, (6, 4, 5), eps=1e-5)  # over (C, H, W), then a per-channel gamma and beta
    torch.testing.assert_close(ln(x4), plain * ln.weight.view(1, -1, 1, 1) + ln.bias.view(1, -1, 1, 1))


def test_make_norm_in_matches_instancenorm_and_rejects_linear_inputs():
    m = make_norm("in", 4).double()
    assert isinstance(m, nn.InstanceNorm2d) and m.affine and not m.track_running_stats
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(m(x), F.group_norm(x, 4, m.weight, m.bias, 1e-5))
    with pytest.raises(ValueError):
        m(torch.randn(3, 4, dtype=torch.float64))


@pytest.mark.parametrize("norm", ["gn", "ln"])
def test_lenet_and_vgg_accept_the_new_norms(norm):
    assert LeNet(norm=norm)(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert SmallVGG(in_channels=1, widths=(8, 16), norm=norm)(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert SmallVGG(in_channels=1, widths=(8, 16), norm="in")(torch.rand(2, 1, 28, 28)).shape == (2, 10)


# ------------------------------------------------------------------ ConvNet3: one model, only the norm differs


def _weights(net: nn.Module) -> list[torch.Tensor]:
    return [t for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) for t in (m.weight, m.bias)]


def test_convnet3_same_weights_for_every_norm():
    ref = _weights(ConvNet3(norm=None, seed=3))
    for norm in ("bn", "gn", "ln", "in"):
        assert all(torch.equal(a, b) for a, b in zip(_weights(ConvNet3(norm=norm, seed=3)), ref, strict=True))
    assert not torch.equal(_weights(ConvNet3(seed=4))[0], ref[0])
    assert ConvNet3("gn")(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("norm", ["gn", "ln", "in"])
def test_batch_free_norms_do_not_mix_examples(norm):
    net = ConvNet3(norm=norm, seed=0).double()
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64)
    alone = net(x[:1])
    torch.testing.assert_close(net(x)[:1], alone)
    net.eval()
    torch.testing.assert_close(net(x)[:1], alone)  # and train mode = eval mode


def test_bn_mixes_examples():
    net = ConvNet3(norm="bn", seed=0).double()
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64)
    assert (net(x)[:2] - net(x[:2])).abs().max() > 1e-6


def test_stat_sizes():
    assert exp7.stat_sizes("bn", 8) == [(16, 784, 8 * 784), (32, 196, 8 * 196), (64, 49, 8 * 49)]
    assert [v for _, _, v in exp7.stat_sizes("gn", 2)] == [4 * 784, 4 * 196, 4 * 49]
    assert [v for _, _, v in exp7.stat_sizes("ln", 2)] == [16 * 784, 32 * 196, 64 * 49]
    assert [v for _, _, v in exp7.stat_sizes("in", 32)] == [784, 196, 49]
    with pytest.raises(ValueError):
        exp7.stat_sizes("rms", 2)


# ------------------------------------------------------------------ numpy references added for chapter 7


def test_instancenorm_numpy_vs_torch():
    x, gamma, beta = RNG.normal(1, 2, (2, 3, 4, 5)), RNG.normal(size=3), RNG.normal(size=3)
    dout = RNG.normal(size=x.shape)
    out, cache = instancenorm_forward(x, gamma, beta, 1e-5)
    ts = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    ref = F.instance_norm(ts[0], weight=ts[1], bias=ts[2], eps=1e-5)
    ref.backward(torch.tensor(dout))
    for ours, theirs in zip((out, *instancenorm_backward(dout, cache)), (ref, *(t.grad for t in ts)), strict=True):
        torch.testing.assert_close(torch.as_tensor(ours), theirs.detach(), rtol=1e-9, atol=1e-9)


def test_weightnorm_numpy_vs_torch_and_numeric():
    x, v, g, b = RNG.normal(size=(5, 4)), RNG.normal(size=(3, 4)), RNG.uniform(0.5, 2, 3), RNG.normal(size=3)
    dout = RNG.normal(size=(5, 3))
    out, cache = weightnorm_forward(x, v, g, b)
    dx, dv, dg, db = weightnorm_backward(dout, cache)
    lin = nn.Linear(4, 3).double()
    lin = torch.nn.utils.parametrizations.weight_norm(lin)
    with torch.no_grad():
        lin.parametrizations.weight.original0.copy_(torch.tensor(g[:, None]))
        lin.parametrizations.weight.original1.copy_(torch.tensor(v))
        lin.bias.copy_(torch.tensor(b))
    xt = torch.tensor(x, requires_grad=True)
    ref = lin(xt)
    ref.backward(torch.tensor(dout))
    pw = lin.parametrizations.weight
    torch.testing.assert_close(torch.tensor(out), ref.detach())
    for ours, theirs in [(dx, xt.grad), (dv, pw.original1.grad), (dg, pw.original0.grad[:, 0]), (db, lin.bias.grad)]:
        torch.testing.assert_close(torch.tensor(ours), theirs, rtol=1e-9, atol=1e-9)
    num_dv = eval_numerical_gradient_array(lambda a: weightnorm_forward(x, a, g, b)[0], v.copy(), dout)
    assert rel_error(dv, num_dv) < 1e-7
    assert abs((dv * v).sum(axis=1)).max() < 1e-10  # the gradient is orthogonal to v


# ------------------------------------------------------------------ the experiment at tiny settings


def _tiny_dataset(n_train=256, n_test=64, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n_train + n_test)
    x = rng.integers(0, 60, (n_train + n_test, 28, 28)).astype(np.uint8)
    x[np.arange(len(y)), 2 * y + 4, 4:24] = 255  # a class-dependent bright row: learnable
    return Dataset("tiny", "Tiny", "synthetic", x[:n_train], y[:n_train], x[n_train:], y[n_train:], "test", 10,
                   tuple(map(str, range(10))), "none")  # fmt: skip


@pytest.fixture(scope="module")
def tiny_result():
    return exp7.norms_batchsize(
        batch_sizes=(8, 2), num_examples=16, seeds=(0,), eval_size=None, dataset=_tiny_dataset(64, 32), progress=False
    )


def test_norms_batchsize_layout(tiny_result):
    d = tiny_result.data
    assert len(d["norm"]) == 10 and set(d["norm"]) == {"none", "bn", "gn", "ln", "in"}
    assert set(zip(d["batch_size"].tolist(), d["num_steps"].tolist(), strict=True)) == {(8, 2), (2, 8)}
    np.testing.assert_allclose(d["lr"], 0.02 * d["batch_size"] / 32)
    assert np.all((d["test_acc"] >= 0) & (d["test_acc"] <= 1)) and np.all(d["wall_time_s"] > 0)
    assert tiny_result.meta["num_test"] == 32 and tiny_result.config["lr_rule"].startswith("lr = ")
    assert set(d) == {"norm", "batch_size", "seed", "lr", "num_steps", "test_acc", "train_loss", "wall_time_s"}


def test_norms_batchsize_is_deterministic_and_validates():
    ds = _tiny_dataset(n_train=64, n_test=16)
    kw = {"norms": ("gn",), "batch_sizes": (4,), "num_examples": 16, "eval_size": None, "dataset": ds}
    kw["progress"] = False
    a, b = exp7.norms_batchsize(**kw), exp7.norms_batchsize(**kw)
    assert a.data["test_acc"][0] == b.data["test_acc"][0] and a.data["train_loss"][0] == b.data["train_loss"][0]
    with pytest.raises(ValueError, match="scale"):
        exp7.norms_batchsize("huge")
    with pytest.raises(ValueError, match="norms"):
        exp7.norms_batchsize(norms=("bn-ours",), dataset=ds)
    with pytest.raises(ValueError, match="batch sizes"):
        exp7.norms_batchsize(batch_sizes=(1,), dataset=ds)


def test_accuracy_grid_table_and_store(tiny_result, tmp_path):
    norms, sizes, acc = exp7.accuracy_grid(tiny_result)
    assert norms == ["none", "bn", "gn", "ln", "in"] and sizes == [8, 2] and acc.shape == (5, 2)
    text = exp7.accuracy_table(tiny_result)
    assert "34.7" in text and "24.1" in text and "published" in text  # the paper's rows
    assert "34.7" not in exp7.accuracy_table(tiny_result, paper=False)
    (tmp_path / "results").mkdir()
    tiny_result.save(tmp_path / "results" / "norms-batchsize-full.json")
    back = load_stored("norms-batchsize-full", folders=(str(tmp_path / "nowhere"), str(tmp_path / "results")))
    assert isinstance(back, Result)
    np.testing.assert_array_equal(exp7.accuracy_grid(back)[2], acc)
    assert load_stored("norms-batchsize-full", folders=(str(tmp_path / "nowhere"),)) is None


def test_reproduce_registers_the_full_run():
    module, function = reproduce.RESULTS["norms-batchsize-full"]  # imported when regenerated
    assert getattr(importlib.import_module(module), function) is exp7.norms_batchsize_full
    full = exp7.NORMS_SCALES["full"]
    assert full["batch_sizes"] == (32, 16, 8, 4, 2) and full["eval_size"] is None


# ------------------------------------------------------------------ plots and widget


@pytest.mark.parametrize("norm, count", [("bn", 4 * 5), ("ln", 6 * 5), ("rms", 6 * 5), ("in", 5), ("gn", 3 * 5)])
def test_norm_mask_counts(norm, count):
    mask = plot7.norm_mask(norm, 4, 6, 5, groups=2)
    assert mask.shape == (4, 6, 5) and mask.sum() == count and mask[0, 0, 0]


def test_norm_mask_groups_are_consecutive_channels_and_errors():
    mask = plot7.norm_mask("gn", 2, 8, 3, groups=4, example=1, channel=5)
    assert np.flatnonzero(mask[1].any(axis=1)).tolist() == [4, 5] and not mask[0].any()
    with pytest.raises(ValueError):
        plot7.norm_mask("gn", 2, 6, 3, groups=4)
    with pytest.raises(ValueError):
        plot7.norm_mask("wn", 2, 6, 3)


def test_plots_draw(tiny_result):
    fig2 = plot7.plot_norms_batchsize(tiny_result)
    assert len(fig2.axes) == 2 and len(fig2.axes[0].lines) == 5
    fig3 = plot7.plot_norm_lookup(tiny_result, "bn", 2)
    assert "Batch Norm, batch size 2" in fig3.axes[1].texts[0].get_text()
    with pytest.raises(ValueError):
        plot7.format_norm_lookup(tiny_result, "bn", 32)
    plt.close("all")


def test_norms_panel(tiny_result, monkeypatch):
    calls = []
    monkeypatch.setattr(plot7, "plot_norm_lookup", lambda r, n, b: calls.append((n, b)) or plt.figure())
    panel = panels.live(panels.norms_panel(tiny_result, norm="gn"), draw=False)
    kind, size = panel.children[0].children
    assert size.value == 2 and list(size.options) == [8, 2] and not calls
    kind.value = "in"  # redraws
    size.value = 8
    assert calls == [("in", 2), ("in", 8)]
    plt.close("all")


# ------------------------------------------------------------------ checkers


def ln_ok(x, gamma, beta, eps=1e-5):
    mu, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta, None


def gn_ok(x, gamma, beta, G, eps=1e-5):
    n, c, h, w = x.shape
    xg = x.reshape(n, G, -1)
    inv = 1 / np.sqrt(xg.var(axis=2, keepdims=True) + eps)
    xh = ((xg - xg.mean(axis=2, keepdims=True)) * inv).reshape(x.shape)
    return gamma.reshape(1, c, 1, 1) * xh + beta.reshape(1, c, 1, 1), {"xh": xh, "inv": inv, "g": gamma, "G": G}


def gn_back_ok(dout, cache):
    xh, inv, gamma, G = cache["xh"], cache["inv"], cache["g"], cache["G"]
    n, c = dout.shape[:2]
    g = (dout * gamma.reshape(1, c, 1, 1)).reshape(n, G, -1)
    xg = xh.reshape(n, G, -1)
    dx = inv * (g - g.mean(axis=2, keepdims=True) - xg * (g * xg).mean(axis=2, keepdims=True))
    return dx.reshape(dout.shape), (dout * xh).sum(axis=(0, 2, 3)).reshape(1, c, 1, 1), dout.sum(axis=(0, 2, 3))


def test_checkers_accept_right_answers(capsys):
    check_layernorm_forward(ln_ok)
    check_layernorm_forward(lambda x, g, b, eps: ln_ok(*(a.astype(np.float32) for a in (x, g, b)), eps))
    check_spatial_groupnorm_forward(gn_ok)
    check_spatial_groupnorm_backward(gn_ok, gn_back_ok)

    def gn32(x, gamma, beta, G, eps):
        return gn_ok(x.astype(np.float32), gamma.astype(np.float32), beta.astype(np.float32), G, eps)

    def back32(dout, cache):
        return gn_back_ok(dout.astype(np.float32), cache)

    check_spatial_groupnorm_backward(gn32, back32)
    assert capsys.readouterr().out.count("passed") == 5


def _raises(check, *fns, match):
    with pytest.raises(AssertionError, match=match):
        check(*fns)


def test_layernorm_checker_names_mistakes():
    def over_batch(x, gamma, beta, eps):
        return gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + beta, None

    def unbiased(x, gamma, beta, eps):
        return gamma * (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, ddof=1, keepdims=True) + eps) + beta, None

    _raises(check_layernorm_forward, over_batch, match="Batch Norm")
    _raises(check_layernorm_forward, unbiased, match="unbiased")
    _raises(check_layernorm_forward, lambda x, g, b, eps: ln_ok(x, g, b, 0.0), match="eps is missing")
    _raises(check_layernorm_forward, lambda x, g, b, eps: ln_ok(x, g, b, 1e-5), match="hard-coded")
    _raises(check_layernorm_forward, lambda x, g, b, eps: ln_ok(x, b, g, eps), match="swapped")
    _raises(check_layernorm_forward, lambda x, g, b, eps: (None, None), match="None")
    _raises(check_layernorm_forward, lambda x, g, b, eps: ln_ok(x, g, b, eps)[0], match="tuple")


def _gn_variant(kind):
    def forward(x, gamma, beta, G, eps):
        n, c, h, w = x.shape
        if kind == "interleaved":
            xg = x.reshape(n, c // G, G, h, w)
            xh = (xg - xg.mean((1, 3, 4), keepdims=True)) / np.sqrt(xg.var((1, 3, 4), keepdims=True) + eps)
            xh = xh.reshape(x.shape)
        elif kind == "batch":
            xh = (x - x.mean((0, 2, 3), keepdims=True)) / np.sqrt(x.var((0, 2, 3), keepdims=True) + eps)
        elif kind == "per-group-gamma":
            out, cache = gn_ok(x, gamma, beta, G, eps)
            first = np.repeat(gamma.reshape(G, -1)[:, 0], c // G).reshape(1, c, 1, 1)
            bfirst = np.repeat(beta.reshape(G, -1)[:, 0], c // G).reshape(1, c, 1, 1)
            return first * cache["xh"] + bfirst, cache
        elif kind == "instance":
            xh = (x - x.mean((2, 3), keepdims=True)) / np.sqrt(x.var((2, 3), keepdims=True) + eps)
        return gamma.reshape(1, c, 1, 1) * xh + beta.reshape(1, c, 1, 1), None

    return forward


@pytest.mark.parametrize(
    "kind, match",
    [("interleaved", "wrong order"), ("batch", "Batch Norm"), ("per-group-gamma", "per group"), ("instance", "G = C")],
)
def test_groupnorm_forward_checker_names_mistakes(kind, match):
    _raises(check_spatial_groupnorm_forward, _gn_variant(kind), match=match)


def _back_variant(kind):
    def backward(dout, cache):
        dx, dgamma, dbeta = gn_back_ok(dout, cache)
        xh, inv, gamma, G = cache["xh"], cache["inv"], cache["g"], cache["G"]
        n, c = dout.shape[:2]
        if kind == "constants":
            dx = dout * gamma.reshape(1, c, 1, 1) * np.broadcast_to(inv, (n, G, dx[0].size // G)).reshape(dx.shape)
        elif kind == "dgamma-axes":
            dgamma = (dout * xh).sum(axis=0)
        elif kind == "dgamma-group":
            dgamma = (dout * xh).sum(axis=(0, 2, 3)).reshape(G, -1).sum(axis=1)
        elif kind == "dbeta-mean":
            dbeta = dout.mean(axis=(0, 2, 3))
        elif kind == "m-1":
            g = (dout * gamma.reshape(1, c, 1, 1)).reshape(n, G, -1)
            xg, m = xh.reshape(n, G, -1), g.shape[2]
            dx = inv * (g - g.sum(2, keepdims=True) / (m - 1) - xg * (g * xg).sum(2, keepdims=True) / (m - 1))
            dx = dx.reshape(dout.shape)
        return dx, dgamma, dbeta

    return backward


@pytest.mark.parametrize(
    "kind, match",
    [("constants", "constants"), ("dgamma-axes", "axis=\\(0, 2, 3\\)"), ("dgamma-group", "not per group"),
     ("dbeta-mean", "mean instead of the sum"), ("m-1", "M - 1")],
)  # fmt: skip
def test_groupnorm_backward_checker_names_mistakes(kind, match):
    _raises(check_spatial_groupnorm_backward, gn_ok, _back_variant(kind), match=match)


def test_groupnorm_backward_checker_reports_a_wrong_forward_first():
    _raises(check_spatial_groupnorm_backward, _gn_variant("batch"), gn_back_ok, match="fix your forward first")


def test_checker_wraps_student_exceptions():
    def broken(x, gamma, beta, G, eps):
        raise NotImplementedError

    _raises(check_spatial_groupnorm_forward, broken, match="not filled in")
