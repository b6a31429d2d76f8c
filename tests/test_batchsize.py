"""Chapter 6: statistics noise, the batch-size sweep, BN in a recurrence, the SyncBN demo across gloo
processes, the exercise checkers, the plots and the widget."""

import importlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from bncourse import panels  # noqa: E402
from bncourse.checks import batchsize as checks  # noqa: E402
from bncourse.experiments import batchsize as exp_bs  # noqa: E402
from bncourse.experiments import recurrent as exp_rnn  # noqa: E402
from bncourse.experiments import syncbn as exp_sync  # noqa: E402
from bncourse.models import ElmanRNN, RecurrentBatchNorm  # noqa: E402
from bncourse.norms.remedies import BatchRenorm, GhostBatchNorm  # noqa: E402
from bncourse.plots import batchsize as plot_bs  # noqa: E402
from bncourse.reproduce import RESULTS  # noqa: E402
from bncourse.result import load_stored  # noqa: E402

# ---------------------------------------------------------------------------------------------- noise


def test_statistics_noise_matches_theory():
    r = exp_bs.statistics_noise(batch_sizes=(2, 8, 64), dists=("normal", "exponential"), num_batches=3000)
    np.testing.assert_allclose(r.data["var_mu"], r.data["theory_var_mu"][None].repeat(2, 0), rtol=0.15)
    np.testing.assert_allclose(r.data["var_var"][0], r.data["gauss_var_var"], rtol=0.15)
    np.testing.assert_allclose(r.data["theory_var_var"][0], r.data["gauss_var_var"])  # general -> Gaussian
    assert np.all(r.data["var_var"][1, 1:] > 2 * r.data["var_var"][0, 1:])  # heavy tails: noisier variance


def test_normalisation_noise():
    v2 = exp_bs.normalisation_noise("bn", 2)
    assert np.all(np.abs(v2) < 1) and np.median(np.abs(v2)) > 0.999  # m = 2: x_hat = +-1 (minus eps's share)
    assert exp_bs.normalisation_noise("bn", 64).std() < exp_bs.normalisation_noise("bn", 4).std()
    np.testing.assert_array_equal(exp_bs.normalisation_noise("ln", 4), 1.0)
    v4 = exp_bs.normalisation_noise("bn", 4)
    np.testing.assert_allclose(exp_bs.normalisation_noise("brn", 4, r_max=1.0, d_max=0.0), v4)  # BRN at (1, 0) = BN
    open_ = exp_bs.normalisation_noise("brn", 4, r_max=1e6, d_max=1e6)  # unclipped: the running transform
    np.testing.assert_allclose(open_, 1.0 / np.sqrt(1 + 1e-5))
    assert v4.std() > 0.1
    with pytest.raises(ValueError):
        exp_bs.normalisation_noise("bn", 1)
    with pytest.raises(ValueError):
        exp_bs.normalisation_noise("gn", 4)


# --------------------------------------------------------------------------------------------- sweep


def test_sweep_model_same_init_and_norm_layers():
    kinds = {"none": nn.Identity, "bn": nn.BatchNorm1d, "ghost": GhostBatchNorm, "brn": BatchRenorm, "ln": nn.LayerNorm}
    first = None
    for norm, cls in kinds.items():
        model = exp_bs.sweep_model(norm, stats_batch=4, num_steps=100, seed=3)
        layers = list(model.net)
        assert sum(isinstance(m, cls) for m in layers) == 2
        assert model(torch.randn(8, 1, 28, 28)).shape == (8, 10)
        if first is None:
            first = layers[0].weight.detach().clone()
        torch.testing.assert_close(layers[0].weight, first)  # the same initial weights for every norm
    ghost = exp_bs.sweep_model("ghost", stats_batch=4, num_steps=100).net[1]
    brn = exp_bs.sweep_model("brn", stats_batch=4, num_steps=100).net[1]
    assert ghost.virtual_batch_size == 4 and (brn.warmup_start, brn.warmup_end) == (10, 50)
    with pytest.raises(ValueError):
        exp_bs.sweep_model("gn", 4, 10)


@pytest.fixture(scope="module")
def tiny_sweep():
    return exp_bs.batchsize_sweep(
        "reduced", batch_sizes=(4, 2), norms=exp_bs.SWEEP_NORMS, num_examples=48, device="cpu", progress=False,
        record_clipping=2,
    )  # fmt: skip


def test_batchsize_sweep_tiny(tiny_sweep, tmp_path):
    d = tiny_sweep.data
    assert d["test_acc"].shape == (5, 2, 1) and np.all((d["test_acc"] >= 0) & (d["test_acc"] <= 1))
    assert np.all(np.isfinite(d["train_loss"])) and np.all(np.isfinite(d["bn_batch_stats_acc"]))
    assert tiny_sweep.meta["device"] == "cpu" and tiny_sweep.config["num_examples"] == 48
    path = tiny_sweep.save(tmp_path / "batchsize-full.json")
    assert load_stored("batchsize-full", folders=(str(tmp_path / "nowhere"), str(tmp_path))) is not None
    assert load_stored("batchsize-full", folders=(str(tmp_path / "nowhere"),)) is None
    assert path.exists()
    with pytest.raises(ValueError):
        exp_bs.batchsize_sweep("huge")
    with pytest.raises(ValueError, match="record_clipping"):
        exp_bs.batchsize_sweep("reduced", norms=("bn",), record_clipping=2)


def test_full_scale_is_registered():
    entry = RESULTS["batchsize-full"]  # (module, function), imported when regenerated; or the function
    fn = getattr(importlib.import_module(entry[0]), entry[1]) if isinstance(entry, tuple) else entry
    assert fn is exp_bs.batchsize_full
    cfg = exp_bs.BATCHSIZE_SCALES["full"]
    assert set(cfg["norms"]) == set(exp_bs.SWEEP_NORMS) and len(cfg["seeds"]) >= 3


# ------------------------------------------------------------------------------------------ recurrent


def test_recurrent_bn_per_step_statistics():
    torch.manual_seed(0)
    bn = RecurrentBatchNorm(3, max_steps=4, momentum=0.5)
    xs = [torch.randn(16, 3) * (t + 1) + t for t in range(4)]
    for t, x in enumerate(xs):
        torch.testing.assert_close(bn(x, t), F.batch_norm(x, None, None, training=True))
    for t, x in enumerate(xs):  # each step's running statistics saw only that step
        torch.testing.assert_close(bn.running_mean[t], 0.5 * x.mean(0))
        torch.testing.assert_close(bn.running_var[t], 0.5 + 0.5 * x.var(0))
    with pytest.raises(ValueError):
        bn(xs[0], 4)
    bn.eval()
    torch.testing.assert_close(bn(xs[0], 7), bn(xs[0], 3))  # beyond max_steps: the last step's statistics
    with torch.no_grad():  # pooled statistics = statistics of the union of equal-sized steps (biased)
        bn.running_mean.copy_(torch.stack([x.mean(0) for x in xs]))
        bn.running_var.copy_(torch.stack([x.var(0, unbiased=False) for x in xs]))
    mean, var = bn.shared_stats()
    union = torch.cat(xs)
    torch.testing.assert_close(mean, union.mean(0))
    torch.testing.assert_close(var, union.var(0, unbiased=False))
    bn.eval_stats = "shared"
    torch.testing.assert_close(bn(xs[1], 1), (xs[1] - mean) / torch.sqrt(var + bn.eps))
    bn.eval_stats = "nope"
    with pytest.raises(ValueError):
        bn(xs[1], 1)


def test_elman_rnn_shapes_and_init():
    x = torch.rand(5, 28, 28)
    models = {n: ElmanRNN(norm=n, hidden_size=16, seed=1) for n in (None, "bn", "ln")}
    for m in models.values():
        logits, pre = m(x, return_preacts=True)
        assert logits.shape == (5, 10) and pre.shape == (28, 5, 16)
    torch.testing.assert_close(models[None].w_h, models["bn"].w_h)
    assert exp_rnn.saved_bytes(models["bn"], x) > exp_rnn.saved_bytes(models[None], x) > 0
    with pytest.raises(ValueError):
        ElmanRNN(norm="gn")


def test_recurrent_bn_tiny_run():
    r = exp_rnn.recurrent_bn(num_steps=3, batch_size=8, hidden_size=8, blank_rows=(0, 2), eval_size=40)
    assert r.data["test_acc"].shape == (4, 2) and r.data["running_var"].shape == (28, 8)
    assert r.data["saved_mb"][1] > r.data["saved_mb"][0]
    fig = plot_bs.plot_recurrent_bn(r)
    assert len(fig.axes) == 3
    plt.close("all")


# ----------------------------------------------------------------------------------------- SyncBN demo


def test_sync_bn_demo_across_processes_equals_one_big_batch():
    r = exp_sync.sync_bn_demo(world_size=2, per_rank=3)
    assert r.data["sync_diff"].max() < 1e-12  # outputs, input grads, parameter grads, running stats
    assert r.data["local_diff"].min() > 1e-6  # per-process BN differs in all of them
    if not torch.cuda.is_available():
        assert "GPU" in r.meta["torch_sync_error"]


# ------------------------------------------------------------------------------------------- checkers


def _ghost_ok(x, gamma, beta, v, eps=1e-5):
    chunks = [x[i : i + v] for i in range(0, len(x), v)]
    return gamma * np.concatenate([(c - c.mean(0)) / np.sqrt(c.var(0) + eps) for c in chunks]) + beta


def _ghost_bn(x, gamma, beta, v, eps=1e-5):
    return gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + beta


def _ghost_split(x, gamma, beta, v, eps=1e-5):
    return gamma * np.concatenate([(c - c.mean(0)) / np.sqrt(c.var(0) + eps) for c in np.array_split(x, v)]) + beta


def _ghost_ddof(x, gamma, beta, v, eps=1e-5):
    chunks = [x[i : i + v] for i in range(0, len(x), v)]
    return gamma * np.concatenate([(c - c.mean(0)) / np.sqrt(c.var(0, ddof=1) + eps) for c in chunks]) + beta


def _ghost_drop(x, gamma, beta, v, eps=1e-5):
    return _ghost_ok(x[: len(x) // v * v], gamma, beta, v, eps)


def _brn(detach=True, lo="inv", d_sign=1.0):
    def fn(x, gamma, beta, rm, rv, r_max, d_max, eps=1e-5):
        mu, sb = x.mean(0), torch.sqrt(x.var(0, unbiased=False) + eps)
        s = torch.sqrt(rv + eps)
        r = (sb / s).clamp({"inv": 1 / r_max, "zero": 0.0}[lo], r_max)
        d = (d_sign * (mu - rm) / s).clamp(-d_max, d_max)
        if detach:
            r, d = r.detach(), d.detach()
        return gamma * ((x - mu) / sb * r + d) + beta, r, d

    return fn


def _sync_ok(s, q, n):
    m = s.sum(0) / n.sum()
    return m, q.sum(0) / n.sum() - m**2


def _sync_unbiased(s, q, n):
    mean, var = _sync_ok(s, q, n)
    return mean, var * n.sum() / (n.sum() - 1)


def _moments_ok(m, v, n):
    w = n[:, None] / n.sum()
    mu = (w * m).sum(0)
    return mu, (w * (v + (m - mu) ** 2)).sum(0)


def test_checkers_accept_correct_solutions(capsys):
    checks.check_ghost_batchnorm(_ghost_ok)
    checks.check_batch_renorm(_brn())
    checks.check_sync_stats(_sync_ok)
    checks.check_combine_moments(_moments_ok)
    checks.check_ghost_batchnorm(lambda *a: _ghost_ok(*a).astype(np.float32))  # float32 passes too
    assert capsys.readouterr().out.count("passed") == 5


@pytest.mark.parametrize(
    ("check", "fn", "hint"),
    [
        (checks.check_ghost_batchnorm, _ghost_bn, "whole batch at once"),
        (checks.check_ghost_batchnorm, _ghost_split, "array_split"),
        (checks.check_ghost_batchnorm, _ghost_ddof, "unbiased"),
        (checks.check_ghost_batchnorm, _ghost_drop, "last, smaller ghost batch missing"),
        (checks.check_ghost_batchnorm, lambda *a: None, "is None"),
        (checks.check_batch_renorm, _brn(detach=False), "stop-gradient"),
        (checks.check_batch_renorm, _brn(lo="zero"), "[1/r_max, r_max]"),
        (checks.check_batch_renorm, _brn(d_sign=-1.0), "wrong sign"),
        (checks.check_batch_renorm, lambda x, *a: (x.detach().numpy(), 1, 1), "torch tensor"),
        (checks.check_sync_stats, lambda s, q, n: (s.sum(0) / n.sum(), q.sum(0) / n.sum()), "- mean^2"),
        (checks.check_sync_stats, lambda s, q, n: ((s / n[:, None]).mean(0), _sync_ok(s, q, n)[1]), "counts"),
        (checks.check_sync_stats, _sync_unbiased, "unbiased"),
        (
            checks.check_combine_moments,
            lambda m, v, n: (_moments_ok(m, v, n)[0], (n[:, None] * v).sum(0) / n.sum()),
            "spread of the device means",
        ),  # fmt: skip
        (checks.check_combine_moments, lambda m, v, n: (m.mean(0), v.mean(0)), "counts"),
        (checks.check_combine_moments, lambda m, v, n: 1 / 0, "ZeroDivisionError"),
    ],
)
def test_checkers_reject_typical_mistakes(check, fn, hint):
    with pytest.raises(AssertionError) as info:
        check(fn)
    assert hint in str(info.value), str(info.value)


# ---------------------------------------------------------------------------------------- plots, widget


def test_plots_and_widget(tiny_sweep):
    noise = exp_bs.statistics_noise(batch_sizes=(2, 4), num_batches=50)
    for fig in (
        plot_bs.plot_statistics_noise(noise),
        plot_bs.plot_batchsize_sweep(tiny_sweep),
        plot_bs.plot_batchsize_explorer(tiny_sweep, exp_bs.normalisation_noise("brn", 2, value=1.0), "brn", 2),
        panels.batchsize_figure(tiny_sweep, "brn", 2),
    ):
        assert fig.axes
    with pytest.raises(ValueError):
        plot_bs.plot_batchsize_sweep(noise)
    panel = panels.live(panels.batchsize_panel(tiny_sweep, norm="bn", batch_size=4), draw=False)
    size, kind = panel.children[0].children
    label = panel.children[1]
    assert "BN, b = 4" in label.value
    kind.value = "ghost"
    size.value = 2
    assert "Ghost BN" in label.value and "b = 2" in label.value
    assert "test accuracy in the sweep" in panels.format_batchsize_choice(tiny_sweep, "ln", 2)
    plt.close("all")


# ------------------------------------------------------- SyncBN's float32 reduction, chunking, Batch Renorm's clip


def test_cancellation_demo_naive_sums_fail_combined_moments_pass():
    r = exp_sync.cancellation_demo(channels=32)
    d = r.data
    tol = 1e-3  # relative error against the float64 variance
    assert np.median(d["naive_rel_err"]) > 100 * tol and (d["naive_var"] < 0).any()
    assert d["combined_rel_err"].max() < tol
    small = exp_sync.cancellation_demo(mean=0.0, channels=32)  # no large mean: both formulas fine
    assert small.data["naive_rel_err"].max() < tol
    with pytest.raises(ValueError, match="std > 0"):
        exp_sync.cancellation_demo(std=0.0)


def test_chunk_statistics_and_plot():
    x = np.random.default_rng(0).normal(3.0, 2.0, 10)
    st = exp_bs.chunk_statistics(x, ghost_size=4, world_size=3)  # chunks of 4, 4, 2 and shards of 4, 4, 2
    assert list(st["ghost_id"]) == [0] * 4 + [1] * 4 + [2] * 2 and list(st["shard_count"]) == [4, 4, 2]
    np.testing.assert_allclose(st["ghost_mean"], [x[:4].mean(), x[4:8].mean(), x[8:].mean()])
    np.testing.assert_allclose(st["ghost_std"][2], x[8:].std())
    np.testing.assert_allclose([st["global_mean"], st["global_std"]], [x.mean(), x.std()], rtol=1e-12)
    for bad in ((x, 1, 2), (x, 4, 11), (x[:1], 2, 1), (x.reshape(2, 5), 2, 1)):
        with pytest.raises(ValueError):
            exp_bs.chunk_statistics(*bad)
    fig = plot_bs.plot_chunking(x, st)
    assert len(fig.axes) == 2 and all(ax.get_xlabel() for ax in fig.axes) and fig.axes[0].get_ylabel()
    assert all(ax.get_title() for ax in fig.axes)
    with pytest.raises(ValueError):
        plot_bs.plot_chunking(x[:5], st)  # stats of another batch
    plt.close("all")


def test_batchrenorm_clipping_from_the_sweep_is_its_run(tiny_sweep):
    r = exp_bs.batchrenorm_clipping(tiny_sweep)  # the sweep's Batch Renorm run at b = 2: 24 steps
    assert r.config["batch_size"] == 2 and len(r.data["steps"]) == 24 == r.config["num_steps"]
    brn, j = tiny_sweep.config["norms"].index("brn"), list(tiny_sweep.data["batch_sizes"]).index(2)
    assert r.data["test_acc"][0] == tiny_sweep.data["test_acc"][brn, j, 0]
    alone = exp_bs.batchsize_sweep("reduced", batch_sizes=(2,), norms=("brn",), num_examples=48, device="cpu",
                                   progress=False, record_clipping=2)  # fmt: skip
    np.testing.assert_array_equal(exp_bs.batchrenorm_clipping(alone).data["r_q"], r.data["r_q"])
    unrecorded = exp_bs.batchsize_sweep("reduced", batch_sizes=(2,), norms=("brn",), num_examples=8,
                                        device="cpu", progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="record_clipping"):
        exp_bs.batchrenorm_clipping(unrecorded)


def test_batchrenorm_clipping_record_and_plot():
    r = exp_bs.batchrenorm_clipping(batch_size=32)  # a run of its own: 250 steps, warm-up from 25 to 125
    d, cfg = r.data, r.config
    assert len(d["steps"]) == cfg["num_steps"] == 250 and d["r_q"].shape == (250, 3)
    assert d["r_max"][0] == 1.0 and d["r_max"][-1] == 3.0 and d["d_max"][-1] == 5.0
    assert np.all(np.diff(d["r_max"]) >= 0) and np.all(np.diff(d["d_max"]) >= 0)
    assert d["r_clipped"][0] == 1.0  # r_max = 1: every r != 1 is clipped
    assert np.all(d["r_q"][:, 0] <= d["r_q"][:, 1]) and np.all(d["r_q"][:, 1] <= d["r_q"][:, 2])
    assert d["r_clipped"][-50:].mean() < d["r_clipped"][0] and 0.1 < d["test_acc"][0] <= 1
    brn = BatchRenorm(3, warmup_start=0, warmup_end=1, r_max=2.0)  # the record the experiment reads
    assert brn.last_clip is None
    brn(torch.randn(8, 3) * 10)
    assert brn.last_clip["r_max"] == 1.0 and torch.all(brn.last_clip["r_raw"] > 1)  # first step: still BN
    fig = plot_bs.plot_batchrenorm_clipping(r)
    assert len(fig.axes) == 3 and all(ax.get_xlabel() == "training step" and ax.get_ylabel() for ax in fig.axes)
    with pytest.raises(ValueError):
        plot_bs.plot_batchrenorm_clipping(exp_bs.statistics_noise(batch_sizes=(2,), num_batches=5))
    with pytest.raises(ValueError):
        plot_bs.plot_batchrenorm_clipping(r, every=0)
    with pytest.raises(ValueError):
        exp_bs.batchrenorm_clipping(batch_size=1)
    plt.close("all")
