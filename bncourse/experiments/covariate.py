"""Chapter 2's experiments on covariate shift and the reasons for BN's design.

- :func:`covariate_shift_demo` - a regression whose test inputs come from another distribution, and the
  importance-weighted fit that corrects for it (Shimodaira 2000);
- :func:`saturation_run` - the fraction of saturated sigmoid units in every hidden layer over training,
  with and without BN;
- :func:`bias_drift` - normalising outside the gradient step: the BN paper's bias example, run;
- :func:`whitening_cost` - forward + backward time of full (ZCA) whitening against BN, by width.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from bncourse import data as bdata
from bncourse.metrics import accuracy
from bncourse.models import MLP
from bncourse.result import Result, make_meta
from bncourse.runtime import best_time

__all__ = ["bias_drift", "covariate_shift_demo", "saturation_run", "whitening_cost", "zca_whiten"]


def covariate_shift_demo(
    n_train: int = 150, n_test: int = 150, noise: float = 0.3, train=(0.5, 0.5), test=(0.0, 0.3), seed: int = 0
) -> Result:
    """Fit a line to ``y = x^3 - x + noise`` on training inputs from one normal, test on another.

    The model is misspecified (a line for a cubic), so where the inputs come from decides which line is
    best. Ordinary least squares fits the training region; weighting each training example by
    ``p_test(x) / p_train(x)`` fits the test region instead.

    Args:
        n_train, n_test: sample sizes.
        noise: standard deviation of the label noise.
        train, test: ``(mean, std)`` of the input distributions.
        seed: seed.

    Returns:
        A ``"covariate_shift"`` result: ``x_train``, ``y_train``, ``x_test``, ``y_test``, the two fits'
        ``coef_ols`` and ``coef_iw`` (intercept, slope), and their mean squared errors ``mse_*`` on each set.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(seed)

    def f(x: np.ndarray) -> np.ndarray:
        return x**3 - x

    x_tr = rng.normal(*train, n_train)
    x_te = rng.normal(*test, n_test)
    y_tr, y_te = f(x_tr) + rng.normal(0, noise, n_train), f(x_te) + rng.normal(0, noise, n_test)

    def pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
        return np.exp(-0.5 * ((x - mean) / std) ** 2) / std

    w = pdf(x_tr, *test) / pdf(x_tr, *train)  # importance weights p_test / p_train, (n_train,)
    design = np.stack([np.ones_like(x_tr), x_tr], axis=1)  # (n_train, 2)
    coef_ols = np.linalg.lstsq(design, y_tr, rcond=None)[0]
    sw = np.sqrt(w)[:, None]
    coef_iw = np.linalg.lstsq(design * sw, y_tr * sw[:, 0], rcond=None)[0]

    def mse(c: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((c[0] + c[1] * x - y) ** 2))

    data = {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te, "coef_ols": coef_ols,
            "coef_iw": coef_iw, "weights": w}  # fmt: skip
    for name, c in (("ols", coef_ols), ("iw", coef_iw)):
        data[f"mse_{name}_train"] = mse(c, x_tr, y_tr)
        data[f"mse_{name}_test"] = mse(c, x_te, y_te)
    config = {"n_train": n_train, "n_test": n_test, "noise": noise, "train": list(train), "test": list(test),
              "seed": seed}  # fmt: skip
    return Result("covariate_shift", config, data, make_meta("synthetic: y = x^3 - x + noise", started))


def _hidden_preacts(model: MLP, x: torch.Tensor) -> list[torch.Tensor]:
    """Inputs of every hidden nonlinearity, ``(N, width)`` each, in training mode, BN's statistics untouched."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    pre, h = [], x
    with torch.no_grad():
        for layer in model.net:
            if isinstance(layer, (torch.nn.Sigmoid, torch.nn.ReLU, torch.nn.Tanh)):
                pre.append(h)
            h = layer(h)
    model.load_state_dict(state)
    return pre


def _weight_grad_norms(model: MLP, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Norm of the loss gradient for every linear layer's weight on ``(x, y)``, BN's statistics untouched."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), weights)
    model.load_state_dict(state)
    return [float(g.norm()) for g in grads]


def saturation_run(
    configs: Sequence[dict] = (
        {"norm": None, "init_std": 0.05},
        {"norm": "bn", "init_std": 0.05},
        {"norm": None, "init_std": 0.5},
        {"norm": "bn", "init_std": 0.5},
    ),
    lr: float = 0.5,
    num_steps: int = 1500,
    eval_every: int = 100,
    threshold: float = 4.0,
    batch_size: int = 60,
    dataset: str | bdata.Dataset = "mnist5k",
    probe_size: int = 1000,
    seed: int = 0,
) -> Result:
    """Train the BN paper's sigmoid MLP (784-100-100-100-10) and follow how many of its units saturate.

    A unit saturates on an example when its sigmoid input ``z`` has ``|z| > threshold``: for ``threshold = 4``
    the sigmoid's slope there is below 0.018, under 7% of its largest value 1/4.

    Args:
        configs: one dict per network, with ``norm`` (``None`` or ``"bn"``) and ``init_std`` (Gaussian init).
        lr, num_steps, batch_size: plain SGD; every network sees the same batches.
        eval_every: steps between measurements.
        threshold: the saturation threshold on ``|z|``.
        dataset: a :func:`bncourse.data.load_dataset` name or a loaded dataset.
        probe_size: test images on which saturation is measured (training mode: batch statistics).
        seed: initial weights and batch order.

    Returns:
        A ``"saturation"`` result: ``steps`` (E,), ``saturated`` (K, E, 3) (fraction per hidden layer),
        ``test_acc`` (K, E), ``grad_norm`` (K, E, 4) (norm of each linear layer's weight gradient on the
        probe images, training mode).
    """
    started = time.perf_counter()
    ds = bdata.as_dataset(dataset)
    xtr, xte = bdata.flat_images(ds.x_train), bdata.flat_images(ds.x_test)  # (N, 784) float32 in [0, 1]
    ytr, yte = torch.as_tensor(ds.y_train), torch.as_tensor(ds.y_test)
    idx = bdata.batch_indices(len(xtr), batch_size, num_steps, seed)
    evals = list(range(0, num_steps + 1, eval_every))
    sat = np.zeros((len(configs), len(evals), 3))
    acc = np.zeros((len(configs), len(evals)))
    gnorm = np.zeros((len(configs), len(evals), 4))
    for k, cfg in enumerate(configs):
        model = MLP(norm=cfg["norm"], activation="sigmoid", init="gaussian", init_std=cfg["init_std"], seed=seed)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for step in range(num_steps + 1):
            if step % eval_every == 0:
                e = step // eval_every
                pre = _hidden_preacts(model, xte[:probe_size])  # 3 x (probe_size, 100)
                sat[k, e] = [float((z.abs() > threshold).float().mean()) for z in pre]
                gnorm[k, e] = _weight_grad_norms(model, xte[:probe_size], yte[:probe_size])
                acc[k, e] = accuracy(model, xte, yte, batch_size=None)  # in eval mode
                model.train()
            if step == num_steps:
                break
            loss = F.cross_entropy(model(xtr[idx[step]]), ytr[idx[step]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    config = {"configs": [dict(c) for c in configs], "lr": lr, "num_steps": num_steps, "eval_every": eval_every,
              "threshold": threshold, "batch_size": batch_size, "probe_size": probe_size, "seed": seed}  # fmt: skip
    meta = make_meta(ds.describe(), started)
    meta["dataset"] = ds.name
    data = {"steps": np.array(evals), "saturated": sat, "test_acc": acc, "grad_norm": gnorm}
    return Result("saturation", config, data, meta)


def bias_drift(lr: float = 0.1, num_steps: int = 200, n: int = 256, seed: int = 0) -> Result:
    """The BN paper's bias example: ``x_hat = u + b - E[u + b]`` with ``u = w v``, trained by SGD twice.

    The target ``t = 2 v + 1`` has a mean the centred output cannot reach. *Outside*: the mean ``E[u + b]`` is
    computed with the current ``b`` but treated as a constant by the gradient (as if the normalisation were
    applied after the step): ``b`` gets a gradient, moves, and the centring removes the move. *Inside*: the
    gradient goes through the mean, as in BN: ``b`` gets a zero gradient.

    Returns:
        A ``"bias_drift"`` result: ``loss``, ``b``, ``w`` ``(2, num_steps + 1)`` for ``["outside", "inside"]``.
    """
    started = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, generator=g, dtype=torch.float64)
    t = 2.0 * v + 1.0
    out = {k: np.zeros((2, num_steps + 1)) for k in ("loss", "b", "w")}
    for k, inside in enumerate((False, True)):
        w = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
        b = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
        for step in range(num_steps + 1):
            x = w * v + b
            mean = x.mean() if inside else x.mean().detach()
            loss = ((x - mean - t) ** 2).mean()
            out["loss"][k, step], out["b"][k, step], out["w"][k, step] = loss.item(), b.item(), w.item()
            gw, gb = torch.autograd.grad(loss, (w, b), allow_unused=True)
            with torch.no_grad():
                w -= lr * gw
                b -= lr * (gb if gb is not None else 0.0)
    config = {"lr": lr, "num_steps": num_steps, "n": n, "seed": seed, "modes": ["outside", "inside"]}
    return Result("bias_drift", config, out, make_meta("synthetic: v ~ N(0, 1), t = 2 v + 1", started))


def zca_whiten(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """ZCA whitening of a batch: ``(x - mu) @ Sigma^(-1/2)``, ``Sigma`` the biased covariance, by ``eigh``.

    Args:
        x: ``(m, d)`` with ``m > d``.
        eps: added to the eigenvalues.

    Returns:
        ``(m, d)`` with covariance close to the identity; differentiable (autograd goes through ``eigh``).
    """
    xc = x - x.mean(0)  # (m, d)
    cov = xc.T @ xc / x.shape[0]  # (d, d)
    lam, u = torch.linalg.eigh(cov)  # (d,), (d, d)
    w = u @ torch.diag((lam + eps).rsqrt()) @ u.T  # Sigma^(-1/2), (d, d)
    return xc @ w


def whitening_cost(
    widths: Sequence[int] = (16, 32, 64, 128, 256, 512), batch_size: int = 1024, repeats: int = 3, seed: int = 0
) -> Result:
    """Forward + backward time of BN and of ZCA whitening of a ``(batch_size, d)`` batch, for each width ``d``.

    Returns:
        A ``"whitening_cost"`` result: ``widths`` (W,), ``bn_s`` and ``zca_s`` (W,) (best of ``repeats``
        seconds), ``zca_cov_error`` (W,) (max deviation of the whitened batch's covariance from I).
    """
    started = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    bn_s, zca_s, err = [], [], []
    for d in widths:
        mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5 + torch.eye(d, dtype=torch.float64)
        x = (torch.randn(batch_size, d, generator=g, dtype=torch.float64) @ mix).requires_grad_()
        dout = torch.randn(batch_size, d, generator=g, dtype=torch.float64)

        def run_bn(x=x, dout=dout):
            torch.autograd.grad(F.batch_norm(x, None, None, training=True), x, dout)

        def run_zca(x=x, dout=dout):
            torch.autograd.grad(zca_whiten(x), x, dout)

        bn_s.append(best_time(run_bn, repeats))  # one warm-up call, then the best single call
        zca_s.append(best_time(run_zca, repeats))
        with torch.no_grad():
            z = zca_whiten(x)
            err.append(float((z.T @ z / batch_size - torch.eye(d, dtype=torch.float64)).abs().max()))
    config = {"widths": list(widths), "batch_size": batch_size, "repeats": repeats, "dtype": "float64",
              "threads": torch.get_num_threads()}  # fmt: skip
    data = {"widths": np.array(widths), "bn_s": np.array(bn_s), "zca_s": np.array(zca_s)}
    data["zca_cov_error"] = np.array(err)
    return Result("whitening_cost", config, data, make_meta("synthetic correlated Gaussian batches", started))
