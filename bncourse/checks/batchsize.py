"""Graders for the chapter-6 exercises (``book/exercises/06_batchsize_exercises``): Ghost BN, Batch
Renormalization, and SyncBN's reduction.

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

from bncourse.checks.base import Variants, as_array, as_tuple, call, fail, judge, tol_for

__all__ = ["check_batch_renorm", "check_combine_moments", "check_ghost_batchnorm", "check_sync_stats"]


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
