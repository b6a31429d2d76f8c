"""Chapter 2: checkers (right answers pass, typical mistakes are named), experiments, plots, widget, registry."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib import pyplot as plt

from bncourse import panels, reproduce
from bncourse.checks.covariate_shift import (
    check_gradient_change,
    check_noisy_bn,
    check_saturated_fraction,
    check_zca_whitening,
)
from bncourse.experiments import covariate as ecov
from bncourse.experiments import critique as ecrit
from bncourse.experiments import ladder as eladder
from bncourse.models import critique as nets
from bncourse.plots import covariate as pcov
from bncourse.plots import critique as pcrit
from bncourse.result import Result, load_stored

# ------------------------------------------------------------------------------------ exercise 1: saturation


def sat_right(z, threshold):
    return (np.abs(z) > threshold).mean()


def sat_torch(z, threshold):
    return (torch.as_tensor(z).abs() > threshold).float().mean()


@pytest.mark.parametrize("fn", [sat_right, sat_torch])
def test_saturation_right(fn, capsys):
    check_saturated_fraction(fn)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, hint",
    [
        (lambda z, t: (z > t).mean(), "both ends"),
        (lambda z, t: (np.abs(z) > t).sum(), "count"),
        (lambda z, t: 100 * (np.abs(z) > t).mean(), "percentage"),
        (lambda z, t: (np.abs(z) <= t).mean(), "unsaturated"),
        (lambda z, t: (1 / (1 + np.exp(-z)) > t).mean(), "not to sigmoid"),
        (lambda z, t: (np.abs(z) > 4).mean(), "threshold argument"),
        (lambda z, t: (np.abs(z) > t).mean(axis=0), "one number"),
        (lambda z, t: None, "None"),
    ],
)
def test_saturation_mistakes(fn, hint):
    with pytest.raises(AssertionError, match=hint):
        check_saturated_fraction(fn)


# ------------------------------------------------------------------------------------ exercise 2: ICS measure


def ics_right(g, h):
    a = np.concatenate([x.ravel() for x in g])
    b = np.concatenate([x.ravel() for x in h])
    return np.linalg.norm(a - b), a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def ics_torch(g, h):
    a = torch.cat([torch.as_tensor(x).flatten() for x in g])
    b = torch.cat([torch.as_tensor(x).flatten() for x in h])
    return (a - b).norm(), torch.nn.functional.cosine_similarity(a, b, dim=0)


def test_ics_right(capsys):
    check_gradient_change(ics_right)
    check_gradient_change(ics_torch)
    assert capsys.readouterr().out.count("passed") == 2


def _flat(g):
    return np.concatenate([x.ravel() for x in g])


@pytest.mark.parametrize(
    "fn, hint",
    [
        (lambda g, h: ics_right(g, h)[::-1], "in that order"),
        (lambda g, h: (ics_right(g, h)[0] ** 2, ics_right(g, h)[1]), "squared"),
        (lambda g, h: (ics_right(g, h)[0], _flat(g) @ _flat(h)), "plain dot product"),
        (lambda g, h: (ics_right(g, h)[0], abs(ics_right(g, h)[1])), "absolute"),
        (lambda g, h: ics_right(g[:1], h[:1]), "first array"),
        (lambda g, h: (np.linalg.norm(_flat(g)) - np.linalg.norm(_flat(h)), ics_right(g, h)[1]), "difference of"),
        (
            lambda g, h: (
                sum(
                    np.linalg.norm(a - b, 2) if a.ndim == 2 else np.linalg.norm(a - b)
                    for a, b in zip(g, h, strict=True)
                ),
                ics_right(g, h)[1],
            ),
            "singular value",
        ),  # fmt: skip
        (lambda g, h: (np.linalg.norm(g[0] - h[0]), np.dot(g[0], h[0])), "flatten"),
        (lambda g, h: (np.linalg.norm(g[0] - h[0]), g[0] * h[0]), "one number"),
        (lambda g, h: 1.0, "tuple"),
    ],
)
def test_ics_mistakes(fn, hint):
    with pytest.raises(AssertionError, match=hint):
        check_gradient_change(fn)


# ------------------------------------------------------------------------------------ exercise 3: noisy BN


def noisy_right(y, rng, n_mu=0.5, n_sigma=1.25, r_mu=0.1, r_sigma=0.1):
    d = y.shape[1]
    mu_t, sigma_t = rng.uniform(-n_mu, n_mu), rng.uniform(1.0, n_sigma)
    m = rng.uniform(mu_t - r_mu, mu_t + r_mu, size=d)
    s = rng.normal(sigma_t, r_sigma, size=d)
    return s * y + m


def _noisy(**change):
    def fn(y, rng, n_mu=0.5, n_sigma=1.25, r_mu=0.1, r_sigma=0.1):
        d = y.shape[1]
        if change.get("reseed"):
            rng = np.random.default_rng(0)
        mu_t, sigma_t = rng.uniform(-n_mu, n_mu), rng.uniform(1.0, n_sigma)
        if change.get("hard"):
            n_mu, n_sigma, r_mu, r_sigma = 0.5, 1.25, 0.1, 0.1
            mu_t, sigma_t = rng.uniform(-n_mu, n_mu), rng.uniform(1.0, n_sigma)
        size = y.shape if change.get("per_entry") else d
        m = rng.uniform(mu_t - r_mu, mu_t + r_mu, size=size)
        s = rng.normal(sigma_t, r_sigma, size=size)
        if change.get("m_normal"):
            m = rng.normal(mu_t, r_mu, size=d)
        if change.get("s_uniform"):
            s = rng.uniform(sigma_t - r_sigma, sigma_t + r_sigma, size=d)
        if change.get("m_global"):
            m = rng.uniform(-n_mu, n_mu, size=d)
        if change.get("no_scale"):
            s = np.ones(d)
        if change.get("swap"):
            return m * y + s
        return s * y + m

    return fn


@pytest.mark.parametrize("fn", [noisy_right])
def test_noisy_bn_right(fn, capsys):
    check_noisy_bn(fn)
    assert "right structure" in capsys.readouterr().out


@pytest.mark.parametrize(
    "change, hint",
    [
        ({"per_entry": True}, "same for every example"),
        ({"reseed": True}, "same noise"),
        ({"m_normal": True}, "uniform, within r_mu"),
        ({"s_uniform": True}, "normal, standard deviation r_sigma"),
        ({"m_global": True}, "drawn around 0"),
        ({"no_scale": True}, "scale is missing"),
        ({"swap": True}, "swapped"),
        ({"hard": True}, "use the arguments"),
    ],
)
def test_noisy_bn_mistakes(change, hint):
    with pytest.raises(AssertionError, match=hint):
        check_noisy_bn(_noisy(**change))


# ------------------------------------------------------------------------------------ exercise 4: ZCA


def zca_right(x, eps):
    xc = x - x.mean(0)
    lam, u = np.linalg.eigh(xc.T @ xc / len(x))
    return u @ np.diag(1 / np.sqrt(lam + eps)) @ u.T


def test_zca_right(capsys):
    check_zca_whitening(zca_right)
    assert "passed" in capsys.readouterr().out


def _zca(center=True, ddof=0, power=-0.5, eps_inside=True, rotate=True, cholesky=False):
    def fn(x, eps):
        xc = x - x.mean(0) if center else x
        cov = xc.T @ xc / (len(x) - ddof)
        if cholesky:
            return np.linalg.inv(np.linalg.cholesky(cov + eps * np.eye(len(cov)))).T
        lam, u = np.linalg.eigh(cov)
        scale = (lam + eps) ** power if eps_inside else 1 / (np.sqrt(lam) + eps)
        return u @ np.diag(scale) @ u.T if rotate else u @ np.diag(scale)

    return fn


@pytest.mark.parametrize(
    "fn, hint",
    [
        (_zca(center=False), "not centred"),
        (_zca(ddof=1), "N - 1"),
        (_zca(power=-1.0), "inverse covariance"),
        (_zca(eps_inside=False), "inside the square root"),
        (_zca(rotate=False), "PCA whitening"),
        (_zca(cholesky=True), "not symmetric"),
        (lambda x, eps: np.eye(2), "must be"),
    ],
)
def test_zca_mistakes(fn, hint):
    with pytest.raises(AssertionError, match=hint):
        check_zca_whitening(fn)


# ------------------------------------------------------------------------------------ experiments


def test_covariate_shift_demo_importance_weighting_helps():
    r = ecov.covariate_shift_demo(seed=0)
    assert r.data["mse_iw_test"] < r.data["mse_ols_test"]
    assert r.data["mse_ols_train"] < r.data["mse_iw_train"]


def test_bias_drift_grows_outside_only():
    r = ecov.bias_drift(lr=0.1, num_steps=50)
    b = r.data["b"]
    steps = np.diff(b[0])
    assert np.allclose(steps, steps[0]) and abs(b[0, -1]) > 5  # a constant step: linear growth
    assert np.abs(b[1]).max() < 1e-12
    assert abs(r.data["loss"][0, -1] - r.data["loss"][1, -1]) < 0.05 * r.data["loss"][1, -1]


def test_zca_whiten_and_cost():
    x = torch.randn(400, 6, dtype=torch.float64) @ torch.randn(6, 6, dtype=torch.float64)
    z = ecov.zca_whiten(x, eps=0.0)
    torch.testing.assert_close(z.T @ z / 400, torch.eye(6, dtype=torch.float64), atol=1e-8, rtol=0)
    r = ecov.whitening_cost(widths=(4, 8), batch_size=64, repeats=1)
    assert r.data["zca_s"].shape == (2,) and np.all(r.data["zca_cov_error"] < 0.05)


def _tiny_dataset():
    from bncourse.data import Dataset

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 300)
    return Dataset("tiny", "tiny", "random", x[:200], y[:200], x[200:], y[200:], "test", 10, tuple("0123456789"), "-")


def test_saturation_run_shapes():
    r = ecov.saturation_run(num_steps=20, eval_every=10, dataset=_tiny_dataset(), probe_size=50)
    assert r.data["saturated"].shape == (4, 3, 3) and np.all((r.data["saturated"] >= 0) & (r.data["saturated"] <= 1))
    assert r.data["saturated"][2, 0, 0] > 0.1 > r.data["saturated"][3, 0, 0]  # large init saturates, BN does not
    g = r.data["grad_norm"]
    assert g.shape == (4, 3, 4) and np.all(g > 0)
    assert g[0, 0, 0] < 0.1 * g[1, 0, 0]  # small init without BN: a tiny first-layer gradient


def test_noisy_batchnorm_noise_model_and_eval():
    bn = torch.nn.BatchNorm1d(64)
    layer = nets.NoisyBatchNorm(bn, seed=1)
    x = torch.randn(32, 64)
    shifts, scales = [], []
    for _ in range(200):
        layer.resample()
        shifts.append(layer.shift.clone())
        scales.append(layer.scale.clone())
        torch.testing.assert_close(layer(x), bn(x) * layer.scale + layer.shift)
    m, s = torch.stack(shifts), torch.stack(scales)
    assert (m.max(1).values - m.min(1).values).max() <= 0.2 + 1e-6
    assert abs(float(m.mean(1).std()) - 0.5 / 3**0.5) < 0.05
    assert 0.08 < float(s.std(1).mean()) < 0.12 and 1.05 < float(s.mean()) < 1.2
    layer.eval()
    torch.testing.assert_close(layer(x), bn.eval()(x))


def test_same_init_across_networks_and_groups():
    a, b, c = (nets.critique_vgg(n, seed=3) for n in nets.NETWORKS)
    convs = [[m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)] for net in (a, b, c)]
    for wa, wb, wc in zip(*convs, strict=True):
        assert torch.equal(wa, wb) and torch.equal(wa, wc)
    groups = ecrit.layer_groups(c)
    assert len(groups) == 7 and all(len(g) == 4 for g in groups[:-1]) and len(groups[-1]) == 2


def test_measure_step_first_layer_and_no_side_effects():
    model = nets.DeepLinear(depth=4, width=8, in_features=8, out_features=8, norm="bn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(16, 8), torch.randn(16, 8)
    out = ecrit.measure_step(model, x, y, torch.nn.functional.mse_loss, lr=0.1)
    assert out["ics_cos"][0] == 1.0 and out["ics_l2"][0] == 0.0 and out["ics_l2"].shape == (4,)
    assert out["loss_along"].shape == (4,) and out["beta"] > 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_measure_step_ics_is_zero_without_coupling():
    """A one-hidden-layer linear net with no update to layer 0 (lr 0 -> G' = G)."""
    model = nets.DeepLinear(depth=3, width=4, in_features=4, out_features=2)
    out = ecrit.measure_step(model, torch.randn(8, 4), torch.randn(8, 2), torch.nn.functional.mse_loss, lr=0.0,
                            multipliers=(1.0,))  # fmt: skip
    np.testing.assert_allclose(out["ics_cos"], 1.0, atol=1e-6)
    np.testing.assert_allclose(out["ics_l2"], 0.0, atol=1e-7)


def test_critique_run_tiny_and_plots(tmp_path):
    r = ecrit.critique_run(model="mlp", num_steps=6, measure_every=3, eval_every=3, dataset=_tiny_dataset())
    assert r.data["ics_cos"].shape == (3, 2, 4) and r.data["test"].shape == (3, 3)
    back = Result.load(r.save(tmp_path / "c.json"))
    for fig in (pcrit.plot_noisy_bn(back), pcrit.plot_landscape(back), pcrit.plot_critique_panel(back, "bn")):
        plt.close(fig)
    d = ecrit.deep_linear_run(depth=5, width=6, num_steps=4, measure_every=2, num_train=64)
    assert d.data["ics_cos"].shape == (2, 2, 5)
    plt.close(pcrit.plot_ics(r, d))
    plt.close(pcrit.plot_landscape(d))
    assert "ICS mean cos" in panels.format_critique(r, "bn")
    panel = panels.live(panels.critique_panel({0.1: r}, lr=0.1), draw=True)
    assert len(panel.children) == 3 and "bn, lr 0.1" in panel.children[1].value


def test_ladder_tiny_and_plot():
    r = eladder.lr_ladder(networks=("baseline", "bn-x5"), num_steps=4, dataset=_tiny_dataset())
    assert r.data["test_acc"].shape == (2, 2) and r.data["lr"][1] == pytest.approx(5 * r.data["lr"][0])
    plt.close(pcrit.plot_ladder(r))
    assert eladder.steps_to_reach(np.array([0, 10, 20]), np.array([0.1, 0.5, 0.9]), 0.5) == 10
    assert np.isnan(eladder.steps_to_reach(np.array([0, 10]), np.array([0.1, 0.2]), 0.5))
    with pytest.raises(ValueError, match="baseline"):
        eladder.lr_ladder(networks=("bn-x5",))


def test_covariate_plots():
    for r, plot in (
        (ecov.covariate_shift_demo(), pcov.plot_covariate_shift),
        (ecov.bias_drift(num_steps=5), pcov.plot_bias_drift),
        (ecov.whitening_cost(widths=(4,), batch_size=16, repeats=1), pcov.plot_whitening_cost),
    ):
        plt.close(plot(r))


def test_registry_and_load_stored(tmp_path):
    for name in ("lr-ladder-full", "santurkar-vgg-full", "santurkar-dln-full"):
        assert name in reproduce.RESULTS
    assert load_stored("no-such-result", folders=(str(tmp_path),)) is None
    r = ecov.bias_drift(num_steps=2)
    r.save(tmp_path / "x.json")
    assert load_stored("x", folders=(str(tmp_path),)).name == "bias_drift"
