"""Graders for the chapter-6 exercises (``book/exercises/06_batchsize_exercises``): Ghost BN, Batch
Renormalization, and SyncBN's reduction; and two that grade thinking rather than code:
:func:`check_small_batch_prediction` (predicted accuracy drops at batch 2, with and without Ghost BN, against
:func:`small_batch_run`) and :func:`check_precision_experiment` (an open experiment: SyncBN's statistics
from float32 sums or from per-device moments, on :func:`precision_data`, graded on what it measures).

Built on the kit of :mod:`bncourse.checks.base`: each checker runs the student's function on fixed cases, compares
with a reference, prints one line when everything agrees and otherwise raises ``AssertionError`` whose
hint names the likely mistake, found by computing known-wrong variants and seeing which one the student's
output matches. Any correct implementation passes (tolerance ``1e-7`` of each output's scale in float64,
``1e-3`` for float32 results).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bncourse.checks.base import Variants, as_array, as_number, as_tuple, call, fail, filled, judge, rel_err, tol_for

__all__ = [
    "DROP_TOL",
    "PRECISION_OFFSETS",
    "SMALL_BATCH_EXAMPLES",
    "check_batch_renorm",
    "check_combine_moments",
    "check_ghost_batchnorm",
    "check_precision_experiment",
    "check_small_batch_prediction",
    "check_sync_stats",
    "precision_data",
    "small_batch_run",
]


def _columns(c: dict, ref: Any) -> Any:
    """Errors are measured per column (as a fraction of its largest |ref|) for (N, D) outputs."""
    return np.abs(ref).max(axis=0) if np.ndim(ref) == 2 else None


# ------------------------------------------------------------------------------------ 1. Ghost BN forward


def _bn(x: np.ndarray, eps: float, ddof: int = 0, where: str = "inside", axis: int = 0) -> np.ndarray:
    mu, var = x.mean(axis, keepdims=True), x.var(axis, ddof=ddof, keepdims=True)
    return (x - mu) / (np.sqrt(var + eps) if where == "inside" else np.sqrt(var) + eps)


def _ghost(c: dict, chunks: list[np.ndarray] | None = None, **kw: Any) -> np.ndarray:
    v = c["v"]
    chunks = chunks if chunks is not None else [c["x"][i : i + v] for i in range(0, len(c["x"]), v)]
    return c["gamma"] * np.concatenate([_bn(ch, c["eps"], **kw) for ch in chunks]) + c["beta"]


def _merged_tail(c: dict) -> list[np.ndarray]:
    """Chunks of v rows with the remainder appended to the last full chunk (a common off-by-one)."""
    x, v = c["x"], c["v"]
    k = max(1, len(x) // v)
    return [x[i * v : (i + 1) * v] for i in range(k - 1)] + [x[(k - 1) * v :]]


_GHOST_VARIANTS: Variants = [
    ("you normalised the whole batch at once (plain BN); split it into ghost batches of virtual_batch_size rows, "
     "x[i:i + v] for i in range(0, N, v), and normalise each with its own mean and variance",
     lambda c: _ghost(c, chunks=[c["x"]])),
    ("you split the batch into virtual_batch_size pieces (np.array_split(x, v)); a ghost batch has "
     "virtual_batch_size ROWS: x[i:i + v] for i in range(0, N, v)",
     lambda c: _ghost(c, chunks=np.array_split(c["x"], c["v"]))),
    ("the last, smaller ghost batch was merged into the one before it; when N is not a multiple of v the last "
     "ghost batch has N % v rows and its own statistics (as torch.split does)", lambda c: _ghost(c, _merged_tail(c))),
    ("unbiased variance (ddof=1) in each ghost batch: BN normalises with the biased variance (divide by the "
     "ghost batch's own size)", lambda c: _ghost(c, ddof=1)),
    ("eps added outside the square root: sqrt(var + eps)", lambda c: _ghost(c, where="outside")),
    ("eps is missing or ignored: use the eps argument inside sqrt(var + eps)",
     lambda c: _ghost(c | {"eps": 0.0})),
    ("statistics over the wrong axis (axis=1, the features): BN takes them over the rows of each ghost batch",
     lambda c: _ghost(c, axis=1)),
    ("gamma and beta are not applied: out = gamma * x_hat + beta", lambda c: _ghost(c | {"gamma": 1.0, "beta": 0.0})),
]  # fmt: skip


def _ghost_cases() -> list[dict]:
    rng = np.random.default_rng(6)
    cases = []
    for n, d, v, eps in [(12, 3, 4, 1e-5), (10, 2, 4, 1e-5), (8, 4, 8, 1e-5), (9, 3, 3, 0.1), (16, 2, 2, 1e-5)]:
        x = rng.normal(rng.uniform(-3, 3, d), rng.uniform(0.5, 3, d), (n, d))
        x[: n // 2] += rng.normal(0, 2, d)  # the ghost batches differ, so their statistics matter
        cases.append({"x": x, "gamma": rng.uniform(0.5, 2, d), "beta": rng.uniform(-1, 1, d), "v": v, "eps": eps,
                      "label": f"N={n}, D={d}, v={v}" + (f", eps={eps:g}" if eps != 1e-5 else "")})  # fmt: skip
    return cases


def check_ghost_batchnorm(ghost_batchnorm_forward: Callable) -> None:
    """Check ``ghost_batchnorm_forward(x, gamma, beta, virtual_batch_size, eps) -> out`` (numpy, ``x`` (N, D)).

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    name, cases = "check_ghost_batchnorm", _ghost_cases()
    outs = []
    for c in cases:
        args = (c["x"].copy(), c["gamma"].copy(), c["beta"].copy(), c["v"], c["eps"])
        out = call(ghost_batchnorm_forward, name, *args, shape_hint="a ghost batch is x[i:i + v], all D features")
        out = as_array(out[0] if isinstance(out, tuple) and out else out, name, "out")
        if out.shape != c["x"].shape and out.ndim == 2 and out.shape[0] < len(c["x"]):
            fail(name, f"out has {out.shape[0]} rows for N = {len(c['x'])}, v = {c['v']}: is the last, smaller "
                       "ghost batch missing?")  # fmt: skip
        outs.append(as_array(out, name, "out", c["x"].shape))
    hint = "split x into x[i:i + v], normalise each with its mean and biased variance, then gamma * x_hat + beta"
    err = judge(name, "out", outs, [_ghost(c) for c in cases], cases, _GHOST_VARIANTS, tol_for(*outs), scale=_columns,
                hint=hint)  # fmt: skip
    print(f"{name}: all {len(cases)} cases passed (max error {err:.1e})")


# ------------------------------------------------------------------------------------- 2. Batch Renorm


def _brn_parts(
    c: dict,
    ddof: int = 0,
    r_lo: str = "inv",
    inv_r: bool = False,
    d_sign: float = 1.0,
    d_scale: str = "sigma",
    eps_in_r: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference ``(x_hat_renorm_without_affine, r, d)`` and its wrong variants, with r, d detached."""
    x, eps, r_max, d_max = c["x"], c["eps"], c["r_max"], c["d_max"]
    mu, var = x.mean(0), x.var(0, correction=ddof)
    e = eps if eps_in_r else 0.0
    sigma_b, sigma = torch.sqrt(var + e), torch.sqrt(c["running_var"] + e)
    lo = {"inv": 1.0 / r_max, "zero": 0.0, "neg": -r_max}[r_lo]
    r = ((sigma / sigma_b) if inv_r else (sigma_b / sigma)).clamp(lo, r_max).detach()
    denom = sigma_b if d_scale == "sigma_b" else sigma
    d = (d_sign * (mu - c["running_mean"]) / denom).clamp(-d_max, d_max).detach()
    x_hat = (x - mu) / torch.sqrt(x.var(0, correction=ddof) + eps) * r + d
    return x_hat, r, d


def _brn(c: dict, detach: bool = True, **kw: Any) -> dict[str, np.ndarray]:
    """Outputs and gradients (of ``sum(out * g)``) of the reference or of a variant."""
    x = c["x"].detach().clone().requires_grad_()
    gamma, beta = c["gamma"].clone().requires_grad_(), c["beta"].clone().requires_grad_()
    cc = c | {"x": x}
    if detach:
        x_hat, r, d = _brn_parts(cc, **kw)
    else:  # r and d keep their gradient: the mistake the stop-gradient prevents
        mu, var = x.mean(0), x.var(0, correction=0)
        sigma_b, sigma = torch.sqrt(var + c["eps"]), torch.sqrt(c["running_var"] + c["eps"])
        r = (sigma_b / sigma).clamp(1 / c["r_max"], c["r_max"])
        d = ((mu - c["running_mean"]) / sigma).clamp(-c["d_max"], c["d_max"])
        x_hat = (x - mu) / sigma_b * r + d
    out = gamma * x_hat + beta
    (out * c["g"]).sum().backward()
    return {"out": out.detach().numpy(), "r": r.detach().numpy(), "d": d.detach().numpy(),
            "dx": x.grad.numpy(), "dgamma": gamma.grad.numpy(), "dbeta": beta.grad.numpy()}  # fmt: skip


def _brn_cases() -> list[dict]:
    gen = torch.Generator().manual_seed(6)
    cases = []
    # (N, D, r_max, d_max, eps): clipped and unclipped features, BN's limits (1, 0), a large eps
    for n, d, r_max, d_max, eps in [(16, 6, 2.0, 1.0, 1e-5), (8, 4, 3.0, 5.0, 1e-5), (6, 3, 1.0, 0.0, 1e-5),
                                    (10, 4, 1.5, 0.5, 0.1), (12, 5, 100.0, 100.0, 1e-5)]:  # fmt: skip
        x = torch.randn(n, d, generator=gen, dtype=torch.float64) * torch.linspace(0.3, 3, d) + torch.linspace(-2, 2, d)
        rv = torch.rand(d, generator=gen, dtype=torch.float64) * 2 + 0.2
        rm = torch.randn(d, generator=gen, dtype=torch.float64)
        gamma, beta = torch.rand(d, dtype=torch.float64, generator=gen) + 0.5, torch.randn(d, dtype=torch.float64)
        g = torch.randn(n, d, generator=gen, dtype=torch.float64)
        cases.append({"x": x, "gamma": gamma, "beta": beta, "running_mean": rm, "running_var": rv,
                      "r_max": r_max, "d_max": d_max, "eps": eps, "g": g,
                      "label": f"N={n}, D={d}, r_max={r_max:g}, d_max={d_max:g}, eps={eps:g}"})  # fmt: skip
    return cases


_BRN_VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("r and d are not treated as constants in the backward pass: compute them under torch.no_grad() or "
     "call .detach(); their gradient must not flow (the stop-gradient of Batch Renorm)", {"detach": False}),
    ("r is clipped to [0, r_max] (or not below): its range is [1/r_max, r_max]", {"r_lo": "zero"}),
    ("r is clipped to [-r_max, r_max]: its range is [1/r_max, r_max]", {"r_lo": "neg"}),
    ("r is upside down: r = sigma_B / sigma (batch over running), not sigma / sigma_B", {"inv_r": True}),
    ("d has the wrong sign: d = (mu_B - running_mean) / sigma", {"d_sign": -1.0}),
    ("d is divided by the batch's sigma_B; it is measured in units of the running sigma = sqrt(running_var + eps)",
     {"d_scale": "sigma_b"}),
    ("unbiased batch variance (correction=1): use the biased one, var(0, unbiased=False)", {"ddof": 1}),
    ("eps is missing from sigma_B or sigma in r: both are sqrt(var + eps)", {"eps_in_r": False}),
]  # fmt: skip


def check_batch_renorm(batch_renorm_forward: Callable) -> None:
    """Check ``batch_renorm_forward(x, gamma, beta, running_mean, running_var, r_max, d_max, eps) -> (out, r, d)``.

    Torch tensors in float64, ``x`` of shape (N, D). Compared: ``out``, ``r``, ``d``, and the gradients of
    ``sum(out * g)`` with respect to ``x``, ``gamma`` and ``beta`` (so the stop-gradient on r and d is checked).

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    name, cases = "check_batch_renorm", _brn_cases()
    got: dict[str, list[np.ndarray]] = {k: [] for k in ("out", "r", "d", "dx", "dgamma", "dbeta")}
    for c in cases:
        x = c["x"].clone().requires_grad_()
        gamma, beta = c["gamma"].clone().requires_grad_(), c["beta"].clone().requires_grad_()
        args = (x, gamma, beta, c["running_mean"].clone(), c["running_var"].clone(), c["r_max"], c["d_max"], c["eps"])
        out, r, d = as_tuple(call(batch_renorm_forward, name, *args), name, "batch_renorm_forward", "(out, r, d)", 3)
        if not isinstance(out, torch.Tensor) or not out.requires_grad or not out.is_floating_point():
            got_kind = f"a {out.dtype} tensor" if isinstance(out, torch.Tensor) else type(out).__name__
            msg = ("out must be a real floating-point torch tensor computed from x, gamma and beta with torch ops (so "
                   f"that autograd can differentiate it); do not convert to numpy. Got {got_kind}")  # fmt: skip
            fail(name, msg)
        call(lambda o, g: (o * g).sum().backward(), f"{name}: backward of out", out, c["g"])
        for k, v, shape in (("out", out, x.shape), ("r", r, (x.shape[1],)), ("d", d, (x.shape[1],))):
            got[k].append(as_array(v, name, k, tuple(shape)))
        for k, t in (("dx", x), ("dgamma", gamma), ("dbeta", beta)):
            if t.grad is None:
                fail(name, f"no gradient reached {k[1:]}: is out computed from it with torch ops?")
            got[k].append(t.grad.numpy())
    refs = [_brn(c) for c in cases]
    hint = ("r = clip(sigma_B / sigma, 1/r_max, r_max), d = clip((mu_B - mu) / sigma, -d_max, d_max), both "
            "detached; out = gamma * ((x - mu_B) / sigma_B * r + d) + beta")  # fmt: skip
    for k in ("r", "d", "out", "dx", "dgamma", "dbeta"):
        variants = [(h, lambda c, kw=kw, k=k: _brn(c, **kw)[k]) for h, kw in _BRN_VARIANTS]
        judge(name, k, got[k], [ref[k] for ref in refs], cases, variants, tol_for(*got[k]), scale=_columns, hint=hint)
    print(f"{name}: all {len(cases)} cases passed for out, r, d and their gradients")


# ------------------------------------------------------------------------ 3, 4. SyncBN's global statistics


def _split_cases() -> list[dict]:
    """Devices' slices of one batch: equal and unequal sizes, different means per device, one device."""
    rng = np.random.default_rng(60)
    cases = []
    for counts in [(4, 4, 4, 4), (2, 7, 3), (5,), (1, 9), (3, 3)]:
        c = 3
        parts = [rng.normal(rng.uniform(-4, 4, c), rng.uniform(0.5, 2, c), (n, c)) for n in counts]
        x = np.concatenate(parts)
        cases.append({"label": f"counts {counts}", "parts": parts,
                      "x": x, "counts": np.array(counts, dtype=np.int64), "mean": x.mean(0),
                      "var": x.var(0), "means": np.array([p.mean(0) for p in parts]),
                      "vars": np.array([p.var(0) for p in parts])})  # fmt: skip
    return cases


def _common_variants(c_key: str) -> Variants:
    return [
        ("unbiased variance (divided by N - 1): BN normalises with the biased variance, divide by the total count N",
         lambda c: c["var"] * c["x"].shape[0] / max(c["x"].shape[0] - 1, 1) if c_key == "var" else c["mean"]),
        (f"you averaged the devices' {'variances' if c_key == 'var' else 'means'} without weighting them by their "
         "counts: devices with more examples must count more",
         lambda c: c["vars"].mean(0) + c["means"].var(0) if c_key == "var" else c["means"].mean(0)),
        ("you averaged the devices' variances (weighted by counts) but left out the spread of the device means: "
         "var = sum_p n_p (var_p + (mean_p - mean)^2) / N",
         lambda c: (c["counts"][:, None] * c["vars"]).sum(0) / c["counts"].sum() if c_key == "var" else c["mean"]),
        ("you averaged the devices' variances without the spread of the device means (and without weights)",
         lambda c: c["vars"].mean(0) if c_key == "var" else c["mean"]),
        ("divided by the number of devices instead of the total number of examples N = sum(counts)",
         lambda c: (c["x"] ** 2).sum(0) / len(c["counts"]) - c["mean"] ** 2 if c_key == "var"
         else c["x"].sum(0) / len(c["counts"])),
        ("var = E[x^2] is missing '- mean^2'", lambda c: (c["x"] ** 2).mean(0) if c_key == "var" else c["mean"]),
        ("you returned the standard deviation; return the variance", lambda c: c["x"].std(0) if c_key == "var"
         else c["mean"]),
    ]  # fmt: skip


def _check_stats(fn: Callable, name: str, inputs: Callable[[dict], tuple], hint: str) -> None:
    cases = _split_cases()
    outs: dict[str, list] = {"mean": [], "var": []}
    for c in cases:
        res = as_tuple(call(fn, name, *inputs(c)), name, name[6:], "(mean, var)", 2)
        for k, v in zip(("mean", "var"), res, strict=True):
            outs[k].append(as_array(v, name, k, (c["x"].shape[1],)))
    errs = [judge(name, k, outs[k], [c[k] for c in cases], cases, _common_variants(k), tol_for(*outs[k]),
                  scale=_columns, hint=hint) for k in ("mean", "var")]  # fmt: skip
    print(f"{name}: all {len(cases)} cases passed (max error {max(errs):.1e})")


def check_sync_stats(sync_stats: Callable) -> None:
    """Check ``sync_stats(sums, sum_sqs, counts) -> (mean, var)``: per-device sums ``(P, C)``, sums of
    squares ``(P, C)`` and counts ``(P,)`` -> the global mean and biased variance ``(C,)``.

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    _check_stats(sync_stats, "check_sync_stats",
                 lambda c: (np.array([p.sum(0) for p in c["parts"]]), np.array([(p**2).sum(0) for p in c["parts"]]),
                            c["counts"].copy()),
                 "N = counts.sum(); mean = sums.sum(0) / N; var = sum_sqs.sum(0) / N - mean**2")  # fmt: skip


def check_combine_moments(combine_moments: Callable) -> None:
    """Check ``combine_moments(means, vars, counts) -> (mean, var)``: per-device means ``(P, C)``, biased
    variances ``(P, C)`` and counts ``(P,)`` -> the global mean and biased variance ``(C,)``.

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    _check_stats(combine_moments, "check_combine_moments", lambda c: (c["means"].copy(), c["vars"].copy(),
                 c["counts"].copy()),
                 "mean = sum_p n_p mean_p / N; var = sum_p n_p (var_p + (mean_p - mean)**2) / N")  # fmt: skip


# ------------------------------------------------------------------- predict, then run: small batches, Ghost BN

SMALL_BATCH_EXAMPLES = 2400  # training examples per run (every run sees the same number)
DROP_TOL = 12.0  # percentage points: the tolerance of a predicted accuracy drop


def small_batch_run(seed: int = 0, num_examples: int = SMALL_BATCH_EXAMPLES, num_test: int = 2000) -> dict[str, Any]:
    """The experiment of the predict-then-run exercise: chapter 6's MLP (784-100-100-10, ReLU, a norm after each
    hidden layer) on Fashion-MNIST, trained three ways on ``num_examples`` examples (SGD with momentum 0.9,
    learning rate 0.1 at batch 32, scaled linearly): BN on batches of 32, BN on batches of 2, and Ghost BN with
    ghost batches of 2 inside SGD batches of 32. Test accuracy on the first ``num_test`` test images.

    Returns:
        ``acc``: test accuracy (a fraction) of ``"bn_32"``, ``"bn_2"``, ``"ghost_2"``; ``drop``: the drops from
        ``bn_32`` in percentage points, ``"bn"`` and ``"ghost"``; the configuration.
    """
    from bncourse import data as bdata
    from bncourse.experiments.batchsize import sweep_model
    from bncourse.training import train_models

    ds = bdata.load_dataset("fashion_mnist")
    acc = {}
    for key, norm, b, step in (("bn_32", "bn", 32, 32), ("bn_2", "bn", 2, 2), ("ghost_2", "ghost", 2, 32)):
        steps = num_examples // step
        cfg = {"lr": 0.1 * step / 32, "momentum": 0.9, "data_seed": seed}
        out = train_models(lambda c, n=norm, b=b, s=steps: sweep_model(n, b, s, seed=seed), [cfg], ds.x_train,
                           ds.y_train, ds.x_test[:num_test], ds.y_test[:num_test], num_steps=steps, batch_size=step,
                           eval_every=steps, device="cpu", progress=False)  # fmt: skip
        acc[key] = float(out["test_acc"][0, -1])
    drop = {"bn": 100 * (acc["bn_32"] - acc["bn_2"]), "ghost": 100 * (acc["bn_32"] - acc["ghost_2"])}
    return {"acc": acc, "drop": drop, "seed": seed, "num_examples": num_examples, "num_test": num_test}


def check_small_batch_prediction(prediction: Any, run: dict[str, Any]) -> None:
    """Grade the predicted accuracy drops (percentage points, from BN at batch 32 to BN at batch 2 and to Ghost BN
    with ghost batches of 2), a dict ``{"bn": ..., "ghost": ...}``, against the drops :func:`small_batch_run`
    measured, within :data:`DROP_TOL` points each. Raises ``AssertionError`` naming the misconception; prints
    the explanation when right.
    """
    name = "check_small_batch_prediction"
    prediction = filled(prediction, name, "prediction")
    if not isinstance(prediction, dict) or set(prediction) != {"bn", "ghost"}:
        fail(name, 'prediction must be a dict {"bn": drop, "ghost": drop} (two numbers, percentage points); '
                   f"got {prediction!r:.80}")  # fmt: skip
    got = {k: as_number(filled(prediction[k], name, f'prediction["{k}"]'), name, f'prediction["{k}"]')
           for k in ("bn", "ghost")}  # fmt: skip
    drop, acc = run["drop"], run["acc"]
    off = {k: abs(got[k] - drop[k]) > DROP_TOL for k in got}
    measured = (f"measured: BN {100 * acc['bn_32']:.1f}% at batch 32, {100 * acc['bn_2']:.1f}% at batch 2 "
                f"(a drop of {drop['bn']:.1f} points), Ghost BN {100 * acc['ghost_2']:.1f}% "
                f"(a drop of {drop['ghost']:.1f})")  # fmt: skip
    if not any(off.values()):
        print(f"{name}: right within {DROP_TOL:g} points; {measured}. With 2 examples per statistic every "
              "feature is normalised to x_hat = +1 or -1 in each pair: only which of the two is larger survives, "
              "whatever the features' values. Ghost BN averages the gradient over 32 examples but normalises "
              "each ghost batch of 2 the same way, so it loses the same information: it helps against "
              "noisy gradients, not against statistics taken from too few examples.")  # fmt: skip
        return
    if all(0 < abs(got[k]) < 1 for k in got) and all(abs(100 * got[k] - drop[k]) <= DROP_TOL for k in got):
        fail(name, f"give the drops in percentage points ({drop['bn']:.0f}, not {drop['bn'] / 100:.2f}); {measured}")
    if off["ghost"] and got["ghost"] < drop["ghost"] - DROP_TOL and got["ghost"] < got["bn"]:
        hint = ("Ghost BN was expected to rescue small batches. Its SGD steps average the gradient over 32 "
                "examples, but each ghost batch of 2 is normalised by its own two values, x_hat = +1 or -1 per "
                "feature, exactly as BN at batch 2: the gradient batch does not fix the statistics")  # fmt: skip
    elif off["bn"] and got["bn"] < drop["bn"] - DROP_TOL:
        hint = ("BN was expected to cope with batches of 2. With two values per feature, (x - mean) / std is +1 "
                "or -1 whatever the values: the layer keeps only which example is larger, and the running "
                "statistics that the test uses average these crude estimates")  # fmt: skip
    elif any(got[k] > drop[k] + DROP_TOL for k in got):
        hint = (f"the networks still learn: BN at batch 32 reaches {100 * acc['bn_32']:.0f}%, and at batch 2 they "
                "stay well above chance (10%); the sign comparisons that survive carry some information")  # fmt: skip
    else:
        hint = "compare the two: a ghost batch of 2 has the statistics of a real batch of 2"
    bad = ", ".join(f"{k} {got[k]:g}" for k in got if off[k])
    fail(name, f"prediction off by more than {DROP_TOL:g} points ({bad}); {measured}.\nHint: {hint}")


# --------------------------------------------------------------- open experiment: SyncBN's statistics in float32

PRECISION_OFFSETS = (0.0, 1e2, 1e3, 1e4)


def precision_data(seed: int = 0, devices: int = 4, per_device: int = 256, channels: int = 8) -> list[np.ndarray]:
    """The configuration of the open experiment: for each offset of :data:`PRECISION_OFFSETS`, float32 activations
    ``(devices, per_device, channels)``, ``offset + shift_p + std_c * z``: each device's data shifted by
    ``shift_p`` in [-1, 1] (devices see different examples), ``std_c`` in [0.5, 2], ``z`` standard normal."""
    rng = np.random.default_rng(seed)
    std = rng.uniform(0.5, 2.0, channels)
    shift = rng.uniform(-1.0, 1.0, (devices, 1, 1))
    z = rng.normal(size=(devices, per_device, channels))
    return [(off + shift + std * z).astype(np.float32) for off in PRECISION_OFFSETS]


def check_precision_experiment(experiment: Callable, seed: int = 0) -> None:
    """Grade ``experiment(xs) -> dict``: for each float32 array ``xs[k]`` ``(P, n, C)`` of :func:`precision_data`
    (P devices of n examples), the global biased variance per channel computed in float32 two ways, as SyncBN
    could: ``"var_sums"`` from the devices' sums and sums of squares (E[x^2] - E[x]^2) and ``"var_moments"`` from
    the devices' means and variances (combined with the between-device term), each ``(K, C)``; and
    ``"more_accurate"``, ``"sums"`` or ``"moments"``, by the student's own errors against the float64 variance.

    The moments route must agree with the float64 variance to float32 rounding (1e-4 plus 1e-6 per unit of
    offset, relative); the sums route to float32 rounding of E[x^2] (1e-5 of offset^2 plus the variance), while
    showing the cancellation at the largest offset; the conclusion must follow from the student's numbers.

    Raises:
        AssertionError: naming the likely mistake (float64 arithmetic, a one-pass variance per device, the
            between-device term missing, the wrong shape, a conclusion the numbers contradict).
    """
    name = "check_precision_experiment"
    xs = precision_data(seed)
    res = call(experiment, f"{name}: experiment", [x.copy() for x in xs])
    if not isinstance(res, dict):
        fail(name, f"return a dict with var_sums, var_moments, more_accurate; got {type(res).__name__}")
    missing = [k for k in ("var_sums", "var_moments", "more_accurate") if k not in res]
    if missing:
        fail(name, f"the dict lacks {', '.join(missing)}")
    k, c = len(xs), xs[0].shape[2]
    hint = "one row per offset (data set), one column per channel: shape (K, C)"
    sums = as_array(res["var_sums"], name, "var_sums", (k, c), shape_hint=hint).astype(np.float64)
    moms = as_array(res["var_moments"], name, "var_moments", (k, c), shape_hint=hint).astype(np.float64)
    flat = [x.astype(np.float64).reshape(-1, c) for x in xs]
    true = np.stack([f.var(axis=0) for f in flat])
    within = np.stack([(x.astype(np.float64).var(axis=1)).mean(axis=0) for x in xs])  # average within-device var
    err_m, err_s = np.abs(moms - true) / true, np.abs(sums - true) / true
    tol_m = 1e-4 + 1e-6 * np.asarray(PRECISION_OFFSETS)[:, None]  # float32 rounding of means near the offset
    if (err_m > tol_m).any():
        j = int(np.argmax((err_m > tol_m).any(axis=1)))
        if rel_err(moms, within) <= 1e-3:
            why = ("var_moments is the average of the devices' variances: the devices' means differ too, so add the "
                   "between-device term, mean over devices of (mean_p - mean)^2")  # fmt: skip
        elif (err_m[0] <= tol_m[0]).all():
            why = ("it is right at offset 0 and wrong at large offsets: your per-device variance cancels like the "
                   "sums route; compute it in two passes, ((x - x.mean(1, keepdims=True)) ** 2).mean(1)")  # fmt: skip
        else:
            why = "the global variance is the count-weighted mean of (var_p + (mean_p - mean)^2)"
        fail(name, f"var_moments is off by {err_m[j].max():.1e} (relative) at offset {PRECISION_OFFSETS[j]:g}: {why}")
    bound = 1e-5 * (np.asarray(PRECISION_OFFSETS)[:, None] ** 2 + true) / true
    if (err_s > bound).any():
        j = int(np.argmax((err_s > bound).any(axis=1)))
        fail(name, f"var_sums is off by {err_s[j].max():.1e} (relative) at offset {PRECISION_OFFSETS[j]:g}, more "
                   "than float32 rounding of E[x^2] explains: mean = S / n and var = Q / n - mean**2, with S and Q "
                   "the sums over all devices of x and x**2")  # fmt: skip
    if err_s[-1].max() < 1e-3:
        fail(name, f"var_sums is accurate to {err_s[-1].max():.1e} at offset {PRECISION_OFFSETS[-1]:g}: the float32 "
                   "sums route cannot be; did you compute in float64 (astype(np.float64), Python floats) or "
                   "subtract the mean before squaring? The experiment is the float32 sums the devices "
                   "all-reduce")  # fmt: skip
    choice = res["more_accurate"]
    if choice not in ("sums", "moments"):
        fail(name, f'more_accurate must be "sums" or "moments"; got {choice!r:.40}')
    if choice != "moments":
        fail(name, f'more_accurate = "{choice}" does not follow from your numbers: at offset '
                   f"{PRECISION_OFFSETS[-1]:g} the sums route is off by {err_s[-1].max():.1e}, the moments route by "
                   f"{err_m[-1].max():.1e}")  # fmt: skip
    rows = ", ".join(f"{o:g}: {a:.1e} vs {b:.1e}" for o, a, b in zip(PRECISION_OFFSETS, err_s.max(1), err_m.max(1),
                                                                       strict=True))  # fmt: skip
    print(f"{name}: measured on the stated data. Largest relative error, sums vs moments, by offset: {rows}. "
          "E[x^2] - E[x]^2 subtracts two numbers near offset^2, and float32 keeps about 7 significant digits of "
          "each, so a variance near 1 keeps about 7 - log10(offset^2) of its digits, none at offset 10^4; means "
          "and variances per device never form offset^2. "
          "That is why a SyncBN gathers per-device moments, or shifts the data first.")  # fmt: skip
