"""Graders for the chapter-5 exercises (``book/exercises/05_conv_exercises``): batch norm for convolutional
``(N, C, H, W)`` inputs.

- :func:`check_spatial_forward` - ``forward(x, gamma, beta, eps) -> (out, cache)``, one mean and variance per
  channel over ``(N, H, W)``;
- :func:`check_spatial_backward` - ``backward(dout, cache) -> (dx, dgamma, dbeta)`` for the student's cache;
- :func:`check_spatial_via_2d` - the forward written with a 2-D batchnorm after moving channels last;
- :func:`check_fold_conv_bias` - delete a conv bias before BN without changing either mode's output;
- :func:`check_stat_count` - a predicted count (values behind one channel's statistic in ConvNet3's last BN
  layer at b = 2) against the count :func:`bn_stat_counts` measures;
- :func:`check_bias_experiment` - an open experiment (the bias before BN, in both modes, over
  :data:`BIAS_SCALES`, on :func:`bias_setup`'s configuration), graded on its measurements.

Each runs the student's code on fixed cases (a single image, 1x1 maps, a tiny-variance channel, a non-default
``eps``), compares with :mod:`bncourse.norms`, prints one line when right and otherwise raises
``AssertionError`` naming the mistake that a known-wrong variant reproduces (statistics over the wrong axes,
per-pixel statistics, the wrong count ``m``, a reshape without the transposition, ...). Tolerances follow
the dtype returned (1e-7 for float64, 1e-3 otherwise), as a fraction of each channel's scale.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace as _Case
from typing import Any

import numpy as np
import torch

from bncourse import data as bdata
from bncourse.checks.base import (
    EPS_GUESSES,
    Variants,
    as_array,
    as_number,
    as_tuple,
    call,
    fail,
    filled,
    forward_first,
    judge,
    rel_err,
    tol_for,
    verdict,
)
from bncourse.norms import batchnorm_backward, batchnorm_forward

__all__ = [
    "BIAS_SCALES",
    "bias_setup",
    "bn_stat_counts",
    "check_bias_experiment",
    "check_fold_conv_bias",
    "check_spatial_backward",
    "check_spatial_forward",
    "check_spatial_via_2d",
    "check_stat_count",
]

AX = (0, 2, 3)  # BN's axes for (N, C, H, W): the batch and both spatial axes
_RIGHT = "mu and var per channel over axis=(0, 2, 3) (biased var), x_hat = (x - mu) / sqrt(var + eps)"
_BCAST = "gamma and beta have shape (C,): reshape them to (1, C, 1, 1) so they line up with axis 1"
_DX = "dx = gamma / std * (dout - mean(dout) - x_hat * mean(dout * x_hat)), means over axis=(0, 2, 3)"
_KEEP = f"{_BCAST}, or reduce with keepdims=True"


def _case(label: str, shape: tuple[int, ...], eps: float, rng: np.random.Generator, tiny: bool = False) -> _Case:
    n, c, h, w = shape
    x = rng.normal(rng.uniform(-4, 4, (1, c, 1, 1)), rng.uniform(1, 3, (1, c, 1, 1)), size=shape)
    x += rng.normal(0.0, 1.0, (1, c, h, w))  # a per-pixel pattern, so per-pixel statistics differ
    if tiny:
        x[:, 1] = rng.normal(0.0, 1e-3, (n, h, w))
    gamma = rng.uniform(0.5, 2.0, c) * rng.choice([-1.0, 1.0], c)
    beta, dout = rng.uniform(-2.0, 2.0, c), rng.normal(size=shape)
    mu, var = x.mean(AX, keepdims=True), x.var(AX, keepdims=True)
    xh = (x - mu) / np.sqrt(var + eps)
    g4 = gamma.reshape(1, -1, 1, 1)
    return _Case(label=label, x=x, gamma=gamma, beta=beta, eps=eps, dout=dout, m=n * h * w, n=n, g4=g4,
                 b4=beta.reshape(1, -1, 1, 1), std=np.sqrt(var + eps), xh=xh, md=dout.mean(AX, keepdims=True),
                 mdx=(dout * xh).mean(AX, keepdims=True))  # fmt: skip


def _cases() -> list[_Case]:
    """Fixed cases; no two of N, C, H, W are equal where that would hide an axis mistake."""
    rng = np.random.default_rng(5)
    return [
        _case("N=2, C=3, H=4, W=5", (2, 3, 4, 5), 1e-5, rng),
        _case("N=1 (a single image), C=4, H=3, W=6", (1, 4, 3, 6), 1e-5, rng),
        _case("N=6, C=2, H=W=1 (1x1 maps)", (6, 2, 1, 1), 1e-5, rng),
        _case("N=3, C=5, H=2, W=4 with a channel of std 1e-3", (3, 5, 2, 4), 1e-5, rng, tiny=True),
        _case("N=4, C=2, H=3, W=5, eps=0.1", (4, 2, 3, 5), 0.1, rng),
    ]


def _bn(c: _Case, axes: Any = AX, ddof: int = 0, eps: float | None = None, sd: str = "sqrt", count: str = "") -> Any:
    """gamma * x_hat + beta, right (defaults) or with statistics over other axes, another count or eps."""
    eps = c.eps if eps is None else eps
    x = c.x
    if count:  # sums divided by the wrong count
        k = {"N": c.n, "size": x.size}[count]
        mu = x.sum(AX, keepdims=True) / k
        var = ((x - mu) ** 2).sum(AX, keepdims=True) / k
    else:
        mu, var = x.mean(axes, keepdims=True), x.var(axes, ddof=ddof, keepdims=True)
    s = {"sqrt": np.sqrt(var + eps), "outside": np.sqrt(var) + eps, "var": var + eps}[sd]
    return c.g4 * (x - mu) / s + c.b4


def _reshaped(c: _Case, move: bool, back: bool) -> Any:
    """The 2-D route with or without moving channels last (``move``) and back (``back``)."""
    n, ch, h, w = c.x.shape
    x2 = c.x.transpose(0, 2, 3, 1).reshape(-1, ch) if move else c.x.reshape(-1, ch)
    out2 = batchnorm_forward(x2, c.gamma, c.beta, c.eps)[0]
    return out2.reshape(n, h, w, ch).transpose(0, 3, 1, 2) if back else out2.reshape(n, ch, h, w)


_AXES_HINTS = [
    ((0,), "per-pixel statistics: you averaged over the batch only (axis=0), one mean per (c, h, w) and "
           "from N values; BN in a convnet takes one mean and var per channel over axis=(0, 2, 3)"),
    (None, "mean and var over the whole array (all four axes); BN needs one per channel: axis=(0, 2, 3)"),
    ((2, 3), "mean and var per image and channel, axis=(2, 3): that is Instance Norm; BN also averages over "
             "the batch: axis=(0, 2, 3)"),
    ((1, 2, 3), "mean and var per image, axis=(1, 2, 3): that is Layer Norm; BN: per channel, axis=(0, 2, 3)"),
    ((0, 1), "mean and var over the batch and the channels, axis=(0, 1): one per pixel; BN: axis=(0, 2, 3)"),
    ((0, 2), "the width axis is missing: you reduced over axis=(0, 2); BN: axis=(0, 2, 3)"),
    ((0, 3), "the height axis is missing: you reduced over axis=(0, 3); BN: axis=(0, 2, 3)"),
]  # fmt: skip
_FORWARD: Variants = [
    *[(hint, lambda c, a=a: _bn(c, a)) for a, hint in _AXES_HINTS],
    ("x.reshape(-1, C) without moving the channels last mixes channels and positions: use "
     "x.transpose(0, 2, 3, 1).reshape(-1, C), and transpose back after", lambda c: _reshaped(c, False, False)),
    ("wrong count m: the sums are divided by N (x.shape[0]); each channel has m = N * H * W values",
     lambda c: _bn(c, count="N")),
    ("wrong count m: the sums are divided by x.size = N * C * H * W; each channel has m = N * H * W values",
     lambda c: _bn(c, count="size")),
    ("unbiased variance (ddof=1, m - 1): BN normalises with the biased one (divide by m = N * H * W)",
     lambda c: _bn(c, ddof=1)),
    ("eps is missing (or far too small): use sqrt(var + eps)", lambda c: _bn(c, eps=0.0)),
    *[(f"eps is ignored: your out matches eps = {e:g} hard-coded; use the eps argument",
       lambda c, e=e: _bn(c, eps=e)) for e in EPS_GUESSES],
    ("eps added outside the square root: sqrt(var + eps)", lambda c: _bn(c, sd="outside")),
    ("divided by the variance, not the standard deviation: sqrt(var + eps)", lambda c: _bn(c, sd="var")),
    ("gamma and beta swapped: out = gamma * x_hat + beta", lambda c: c.b4 * c.xh + c.g4),
    ("gamma left out: out = gamma * x_hat + beta", lambda c: c.xh + c.b4),
    ("beta left out: out = gamma * x_hat + beta", lambda c: c.g4 * c.xh),
    ("gamma and beta both left out: you returned x_hat", lambda c: c.xh),
]  # fmt: skip
_DXV: Variants = [
    ("dx treats mu and var as constants; add the paths through them", lambda c: c.g4 / c.std * c.dout),
    ("dx is missing the variance path (the x_hat * mean(dout * x_hat) term)", lambda c: _dx(c, c.md, 0)),
    ("dx is missing the mean path (the mean(dout) term)", lambda c: _dx(c, 0, c.mdx)),
    ("gamma left out of dx: dx_hat = dout * gamma", lambda c: _dx(c, c.md, c.mdx) / c.g4),
    ("dx: per-pixel means (axis=0 only); the means in dx run over axis=(0, 2, 3)",
     lambda c: _dx(c, c.dout.mean(0), (c.dout * c.xh).mean(0))),
    ("dx: means over the whole array; they run over axis=(0, 2, 3), per channel",
     lambda c: _dx(c, c.dout.mean(), (c.dout * c.xh).mean())),
    ("dx divides by N (x.shape[0]) where it should divide by m = N * H * W",
     lambda c: _dx(c, c.md * c.m / c.n, c.mdx * c.m / c.n)),
    ("dx uses m - 1 instead of m = N * H * W", lambda c: _dx(c, c.md * c.m / (c.m - 1), c.mdx * c.m / (c.m - 1))),
    ("dx uses sums where means belong (divide by m = N * H * W)", lambda c: _dx(c, c.m * c.md, c.m * c.mdx)),
    ("dx is missing the division by std = sqrt(var + eps)", lambda c: _dx(c, c.md, c.mdx) * c.std),
    ("dx has the sign of the variance path wrong: - x_hat * mean(dout * x_hat)", lambda c: _dx(c, c.md, -c.mdx)),
]  # fmt: skip
_DGV: Variants = [
    ("dgamma takes the mean instead of the sum: dgamma = sum(dout * x_hat, axis=(0, 2, 3))",
     lambda c: (c.dout * c.xh).mean(AX)),
    ("dgamma uses x instead of x_hat", lambda c: (c.dout * c.x).sum(AX)),
    ("dgamma is missing the x_hat factor: dgamma = sum(dout * x_hat, axis=(0, 2, 3))", lambda c: c.dout.sum(AX)),
    ("dgamma is multiplied by gamma", lambda c: (c.dout * c.xh).sum(AX) * c.gamma),
]  # fmt: skip
_DBV: Variants = [
    ("dbeta takes the mean instead of the sum: dbeta = sum(dout, axis=(0, 2, 3))", lambda c: c.dout.mean(AX)),
    ("dbeta is multiplied by gamma: dbeta = sum(dout, axis=(0, 2, 3))", lambda c: c.dout.sum(AX) * c.gamma),
    ("dbeta is multiplied by x_hat (that is dgamma)", lambda c: (c.dout * c.xh).sum(AX)),
]  # fmt: skip


def _dx(c: _Case, a: Any, b: Any) -> Any:
    return c.g4 / c.std * (c.dout - a - c.xh * b)


def _scale(key: str, c: _Case, ref: np.ndarray) -> np.ndarray:
    """Per-channel scale of an output's terms: errors are measured as a fraction of it."""
    if key == "dx":
        return np.abs(c.g4 / c.std) * np.abs(c.dout).max(AX, keepdims=True)
    if key == "dgamma":
        return np.abs(c.dout * c.xh).sum(AX)
    if key == "dbeta":
        return np.abs(c.dout).sum(AX)
    return np.abs(ref).max(AX, keepdims=True) if ref.ndim == 4 else np.abs(ref).max()


def _shape_hint(what: str, shape: tuple[int, ...]) -> Callable[[tuple[int, ...]], str]:
    """What a wrong shape of ``what`` (expected ``shape``: (N, C, H, W) or (C,)) suggests."""

    def hint(got: tuple[int, ...]) -> str:
        if len(shape) == 4 and len(got) == 4 and got[:3] == shape[:3]:
            return f"it grew along the last axis: {_BCAST}"
        if len(shape) == 4 and len(got) == 4:
            return f"check how gamma and beta broadcast ({_BCAST}) and the order of any transpose"
        if len(shape) == 1 and len(got) == 3:
            return "it is reduced over the batch only: sum over axis=(0, 2, 3)"
        if len(shape) == 1 and int(np.prod(got)) == shape[0]:
            return "make it 1-D: reduce over axis=(0, 2, 3) without keepdims=True"
        return ""

    return hint


def _out(v: Any, name: str, what: str, shape: tuple[int, ...]) -> np.ndarray:
    return as_array(v, name, what, shape, shape_hint=_shape_hint(what, shape))


def _run_forward(forward: Callable, name: str, extra: tuple = (), what: str = "forward") -> tuple[list, list, float]:
    cases, outs, caches = _cases(), [], []
    for c in cases:
        res = call(
            forward, f"{name}: {what}", c.x.copy(), c.gamma.copy(), c.beta.copy(), c.eps, *extra, shape_hint=_KEEP
        )
        out, cache = as_tuple(res, name, what, "(out, cache)", 2)
        outs.append(_out(out, name, "out", c.x.shape))
        caches.append(cache)
    tol = tol_for(*outs)
    refs = [batchnorm_forward(c.x, c.gamma, c.beta, c.eps)[0] for c in cases]
    variants = _FORWARD + [("channels moved last but not moved back: after the 2-D batchnorm, reshape to "
                            "(N, H, W, C) and transpose(0, 3, 1, 2)", lambda c: _reshaped(c, True, False))]  # fmt: skip
    judge(name, "out", outs, refs, cases, variants, tol, scale=partial(_scale, "out"), hint=_RIGHT)
    return cases, caches, tol


def check_spatial_forward(forward: Callable) -> None:
    """Check ``forward(x, gamma, beta, eps) -> (out, cache)`` for ``x`` of shape ``(N, C, H, W)``.

    Raises:
        AssertionError: naming the likely mistake when ``out`` is wrong or the function raises.
    """
    cases, _, tol = _run_forward(forward, "check_spatial_forward")
    print(f"check_spatial_forward: all {len(cases)} cases passed (tolerance {tol:.0e})")


def check_spatial_backward(forward: Callable, backward: Callable) -> None:
    """Check ``backward(dout, cache) -> (dx, dgamma, dbeta)`` fed the caches of the student's ``forward``.

    Raises:
        AssertionError: naming the likely mistake; a wrong forward is reported first.
    """
    name = "check_spatial_backward"
    cases, caches, ftol = forward_first(
        lambda: _run_forward(forward, "check_spatial_forward"), name, "check_spatial_forward"
    )
    got: dict[str, list] = {"dx": [], "dgamma": [], "dbeta": []}
    refs: dict[str, list] = {"dx": [], "dgamma": [], "dbeta": []}
    for c, cache in zip(cases, caches, strict=True):
        res = as_tuple(call(backward, f"{name}: backward", c.dout.copy(), cache, shape_hint=_KEEP), name, "backward",
                     "(dx, dgamma, dbeta)", 3)  # fmt: skip
        ref = batchnorm_backward(c.dout, batchnorm_forward(c.x, c.gamma, c.beta, c.eps)[1])
        for k, v, r in zip(got, res, ref, strict=True):
            got[k].append(_out(v, name, k, r.shape))
            refs[k].append(r)
    variants = {"dx": _DXV, "dgamma": _DGV, "dbeta": _DBV}
    msgs = [verdict(k, got[k], refs[k], cases, variants[k], max(tol_for(*got[k]), ftol), scale=partial(_scale, k),
                    hint=_DX if k == "dx" else _RIGHT) for k in got]  # fmt: skip
    if any(msgs):
        fail(name, "\n".join(m for m in msgs if m))
    print(f"{name}: all {len(cases)} cases passed for dx, dgamma, dbeta")


def check_spatial_via_2d(forward_2d: Callable) -> None:
    """Check ``forward_2d(x, gamma, beta, eps, bn2d) -> (out, cache)``: spatial BN through a 2-D batchnorm.

    ``bn2d(x2, gamma, beta, eps) -> (out2, cache)`` is the chapter-3 forward for ``(M, D)`` inputs; it must
    be called on an ``(N*H*W, C)`` array (channels last), which this checker verifies.

    Raises:
        AssertionError: naming the likely mistake (no transposition, the wrong way back, wrong 2-D shape).
    """
    name = "check_spatial_via_2d"
    calls: list[tuple[int, ...]] = []

    def bn2d(x2: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5) -> tuple[np.ndarray, Any]:
        x2 = np.asarray(x2)
        calls.append(x2.shape)
        if x2.ndim != 2:
            fail(name, f"bn2d needs a 2-D array (N*H*W, C); got shape {x2.shape}")
        if x2.shape[1] != np.size(gamma):
            fail(
                name,
                f"bn2d got shape {x2.shape} with {np.size(gamma)} channels: its columns must be the C "
                "channels (rows: every image and position). x.reshape(N, -1) makes one feature per pixel; use "
                "x.transpose(0, 2, 3, 1).reshape(-1, C)",
            )
        return batchnorm_forward(x2, gamma, beta, eps)

    cases, _, tol = _run_forward(forward_2d, name, extra=(bn2d,), what="forward_2d")
    want = [(c.m, c.x.shape[1]) for c in cases]
    if not set(want) <= set(calls):
        fail(name, f"call bn2d on the (N*H*W, C) array of channels-last values (shapes {want})")
    print(f"{name}: all {len(cases)} cases passed, through bn2d on (N*H*W, C) arrays (tolerance {tol:.0e})")


def _eval_bn(v: np.ndarray, q: dict, eps: float) -> np.ndarray:
    """BN in eval mode: ``(N, C, H, W)`` normalised with the running statistics of ``q``."""
    g, b, mean, var = (np.asarray(q[k]).reshape(1, -1, 1, 1) for k in ("gamma", "beta", "running_mean", "running_var"))
    return g * (v - mean) / np.sqrt(var + eps) + b


def check_fold_conv_bias(fold: Callable) -> None:
    """Check ``fold(bias, bn) -> new_bn``: BN parameters that make a conv without ``bias`` behave as with it.

    ``bn`` is a dict with ``gamma``, ``beta``, ``running_mean``, ``running_var`` ``(C,)`` and ``eps``. With the
    returned dict, BN(conv(x)) must equal BN(conv(x) + bias) in training mode (batch statistics) and in
    eval mode (running statistics).

    Raises:
        AssertionError: naming the likely mistake.
    """
    name = "check_fold_conv_bias"
    rng = np.random.default_rng(55)
    for n, ch, h, w in [(4, 3, 5, 6), (2, 6, 3, 3)]:
        z = rng.normal(rng.uniform(-2, 2, (1, ch, 1, 1)), 1.5, (n, ch, h, w))  # conv output without its bias
        b = rng.uniform(-3, 3, ch)
        bn = {"gamma": rng.uniform(0.5, 2, ch), "beta": rng.normal(0, 1, ch), "running_mean": rng.normal(0, 1, ch),
              "running_var": rng.uniform(0.5, 2, ch), "eps": 1e-5}  # fmt: skip
        new = call(fold, f"{name}: fold", b.copy(), {k: np.copy(v) for k, v in bn.items()})
        if not isinstance(new, dict) or not {"gamma", "beta", "running_mean", "running_var"} <= set(new):
            fail(name, f"return a dict with gamma, beta, running_mean, running_var (and eps); got {type(new).__name__}")
        p = {
            k: as_array(new[k], name, k, (ch,)).astype(np.float64)
            for k in ("gamma", "beta", "running_mean", "running_var")
        }
        eps = as_number(new.get("eps", bn["eps"]), name, "eps")

        zb = z + b.reshape(1, -1, 1, 1)
        train_ok = np.allclose(batchnorm_forward(z, p["gamma"], p["beta"], eps)[0],
                               batchnorm_forward(zb, bn["gamma"], bn["beta"], bn["eps"])[0], atol=1e-8)  # fmt: skip
        eval_ok = np.allclose(_eval_bn(z, p, eps), _eval_bn(zb, bn, bn["eps"]), atol=1e-8)
        if train_ok and eval_ok:
            continue
        close = {k: np.allclose(p[k], bn[k]) for k in p}
        if np.allclose(p["running_mean"], bn["running_mean"] + b):
            hint = "the sign: the running mean was collected with the bias in it, so subtract the bias"
        elif not close["running_var"]:
            hint = "running_var changed: adding a constant per channel shifts the mean only, not the variance"
        elif not (close["gamma"] and close["beta"]):
            hint = (
                "gamma or beta changed: in training mode the bias has no effect at all (the batch mean removes it), "
                "so any change to gamma or beta changes the training output; change running_mean only"
            )
        elif all(close.values()):
            hint = (
                "nothing changed: in training mode that is right, but in eval mode running_mean still contains the "
                "bias, so the output moves by gamma * bias / sqrt(running_var + eps)"
            )
        else:
            hint = "in eval mode BN subtracts running_mean, which was collected with the bias in it"
        modes = ", ".join(m for m, ok in (("training", train_ok), ("eval", eval_ok)) if not ok)
        fail(name, f"the output changes in {modes} mode. Hint: {hint}")
    print(f"{name}: both cases passed; training- and eval-mode outputs are unchanged without the bias")


# --------------------------------------------------------------- exercise 3: predict, then run (the count m)


@functools.lru_cache(maxsize=2)
def _images(n: int) -> torch.Tensor:
    """The first ``n`` Fashion-MNIST test images, ``(n, 1, 28, 28)`` in [0, 1]."""
    return bdata.images_to_tensor(bdata.load_dataset("fashion_mnist").x_test[:n])


def bn_stat_counts(batch_size: int = 2, seed: int = 0) -> list[dict[str, Any]]:
    """Exercise 3's experiment: ConvNet3 with BN (chapter 7's network) on ``batch_size`` Fashion-MNIST test
    images, with a forward hook on every BN layer that records the shape of what it normalises.

    Returns:
        One dict per BN layer, in order: ``layer`` (1, 2, 3), ``shape`` ``(N, C, H, W)``, ``statistics`` (C:
        one mean and one variance per channel) and ``values`` (N * H * W: what each of them averages over).
    """
    from bncourse.models import ConvNet3

    model, found = ConvNet3("bn", seed=seed), []
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.register_forward_hook(lambda mod, inp, out: found.append(tuple(inp[0].shape)))
    with torch.no_grad():
        model.train()(_images(batch_size))
    return [{"layer": k + 1, "shape": s, "statistics": s[1], "values": s[0] * s[2] * s[3]} for k, s in enumerate(found)]


def check_stat_count(prediction: Any, counts: list[dict[str, Any]]) -> None:
    """Grade the prediction of exercise 3: how many values each channel's mean and variance in ConvNet3's *last*
    BN layer averages over, for a batch of 2 images, against the count :func:`bn_stat_counts` measured.

    The tolerance is zero (a count). Raises ``AssertionError`` naming the misconception a plausible wrong count
    reveals; prints the explanation when right.
    """
    name = "check_stat_count"
    guess = as_number(filled(prediction, name, "prediction"), name, "prediction", "predict one count")
    last = counts[-1]
    n, c, h, w = last["shape"]
    want = last["values"]
    if guess == want:
        first = counts[0]["values"]
        print(f"{name}: right, {want} values = N x H x W = {n} x {h} x {w}. An MLP's BN at b = {n} would average "
              f"over {n}; here every position of the {h} x {w} map counts, and the first layer sees {first}. The "
              f"last layer is where BN is thinnest: its {want} values come from only {n} images, and neighbouring "
              "positions of one image are strongly correlated, so they are worth far fewer independent values "
              "(chapter 5, 'How many values stand behind one statistic').")  # fmt: skip
        return
    earlier = {d["values"]: d for d in counts[:-1]}
    hints = [
        (n, "that is an MLP's count, the batch alone: in a conv layer each channel's statistics also average "
            "over every position of its feature map, m = N x H x W"),
        (n * c * h * w, "you counted every channel together: BN keeps one mean and one variance per channel "
                        f"({c} of each here), each over N x H x W values"),
        (c, f"{c} is how many means (channels) the layer keeps, not how many values each one averages"),
        (h * w, "that is one image's map, Instance Norm's count: BN averages over the batch as well, N x H x W"),
        (n * (h // 2) * (w // 2), "the BN sits before the max-pool: it normalises the conv's output at "
                                  f"{h} x {w}, not the pooled {h // 2} x {w // 2}"),
        (c * h * w, "that is one image's values over all its channels, Layer Norm's count: BN takes one "
                    "statistic per channel, over the batch and the positions, N x H x W"),
    ]  # fmt: skip
    for value, hint in hints:
        if guess == value:
            fail(name, f"prediction {guess:g} is wrong: {hint}. Rerun after changing it.")
    if guess in earlier:
        d = earlier[guess]
        fail(name, f"prediction {guess:g} is the count of BN layer {d['layer']} (maps of {d['shape'][2]} x "
                   f"{d['shape'][3]}); the question is about the last BN layer, after two 2 x 2 max-pools")  # fmt: skip
    fail(name, f"prediction {guess:g} is wrong: count N x H x W at the last BN layer; the input is 28 x 28 and "
               "every block halves it after its BN (conv 3x3 with padding 1 keeps the size)")  # fmt: skip


# --------------------------------------------------------------- exercise 5: open experiment (the bias before BN)

BIAS_SCALES = (0.0, 0.5, 2.0, 8.0)


def bias_setup(seed: int = 0) -> tuple[torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.Tensor, torch.Tensor]:
    """Exercise 5's configuration: ``(conv, bn, x, direction)``.

    ``conv`` is a seeded ``Conv2d(1, 8, 3, padding=1)`` with a zero bias; ``bn`` a ``BatchNorm2d(8)`` whose running
    statistics come from five training-mode passes over 64 Fashion-MNIST test images each (bias zero);
    ``x`` the 64 test images that follow, ``(64, 1, 28, 28)``; ``direction`` a seeded ``(8,)`` bias direction.
    """
    g = torch.Generator().manual_seed(seed)
    conv = torch.nn.Conv2d(1, 8, 3, padding=1)
    bn = torch.nn.BatchNorm2d(8)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / 3.0)
        conv.bias.zero_()
        imgs = _images(384)
        for k in range(5):
            bn(conv(imgs[64 * k : 64 * (k + 1)]))
    return conv, bn.eval(), imgs[320:384].clone(), torch.randn(8, generator=g)


def _bias_outputs(seed: int, scales: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """max and mean |BN(conv(x) + s d) - BN(conv(x))| per scale, in eval mode; and the train-mode max."""
    conv, bn, x, d = bias_setup(seed)
    with torch.no_grad():
        z = conv(x)
        out = []
        for s in scales:
            zb = z + s * d.reshape(1, -1, 1, 1)
            ev = torch.nn.functional.batch_norm(zb, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0,
                                                bn.eps) - torch.nn.functional.batch_norm(z, bn.running_mean,
                                                bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)  # fmt: skip
            tr = torch.nn.functional.batch_norm(zb, None, None, bn.weight, bn.bias, True, 0.0, bn.eps) - (
                torch.nn.functional.batch_norm(z, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
            )
            out.append((ev.abs().max().item(), ev.abs().mean().item(), tr.abs().max().item()))
    return tuple(np.array(v) for v in zip(*out, strict=True))  # type: ignore[return-value]


def check_bias_experiment(experiment: Callable, seed: int = 0) -> None:
    """Grade exercise 5: ``experiment(conv, bn, x, direction, scales) -> dict`` measures what a bias added before
    BN does, for each scale ``s``: the largest ``|BN(conv(x) + s * direction) - BN(conv(x))|`` in training mode
    (``"train_diff"``) and in eval mode with ``bn``'s running statistics as handed over (``"eval_diff"``), and
    states its conclusion as booleans ``"bias_matters_in_train"`` and ``"bias_matters_in_eval"``.

    The checker builds the configuration with :func:`bias_setup`, recomputes every eval-mode point itself
    (tolerance 1e-3 of the largest), requires the training-mode differences to be float32 rounding (at most
    1e-4 per unit of bias scale), and the conclusions to follow from the student's own measurements.

    Raises:
        AssertionError: naming the likely mistake (eval measured in training mode, running statistics changed
            by a training-mode pass, a mean instead of the largest difference, a conclusion the numbers contradict).
    """
    name = "check_bias_experiment"
    scales = BIAS_SCALES
    conv, bn, x, d = bias_setup(seed)
    rm, rv = bn.running_mean.clone(), bn.running_var.clone()
    res = call(experiment, f"{name}: experiment", conv, bn, x, d, scales)
    if not isinstance(res, dict):
        fail(name, f"return a dict with train_diff, eval_diff, bias_matters_in_train, bias_matters_in_eval; got "
                   f"{type(res).__name__}")  # fmt: skip
    missing = [k for k in ("train_diff", "eval_diff", "bias_matters_in_train", "bias_matters_in_eval") if k not in res]
    if missing:
        fail(name, f"the dict lacks {', '.join(missing)}")
    k = len(scales)
    train = as_array(res["train_diff"], name, "train_diff", (k,), shape_hint="one value per scale")
    ev = as_array(res["eval_diff"], name, "eval_diff", (k,), shape_hint="one value per scale")
    if (train < 0).any() or (ev < 0).any():
        fail(name, "differences are absolute values (max of |...|): they cannot be negative")
    ref_max, ref_mean, ref_train = _bias_outputs(seed, scales)
    moved = not (torch.equal(bn.running_mean, rm) and torch.equal(bn.running_var, rv))
    if rel_err(ev, ref_max) > 1e-3:
        if rel_err(ev, ref_train, ref_max.max()) <= 1e-3:
            hint = (
                "eval_diff is rounding only: you measured it in training mode, where the batch mean removes "
                "the bias. Call bn.eval(): it normalises with running_mean, which never saw this bias"
            )
        elif rel_err(ev, ref_mean) <= 1e-3:
            hint = "you took the mean of |difference|; the stated measure is the largest, .abs().max()"
        elif moved:
            hint = (
                "a forward in training mode changed bn's running statistics (momentum 0.1), so your eval "
                "mode used other statistics than the stated ones: measure eval mode first, or on a "
                "copy.deepcopy(bn), or under bn.eval() only"
            )
        else:
            hint = (
                "compare BN(conv(x) + s * direction) with BN(conv(x)), direction[c] added to channel c, "
                "with bn.eval() and its running statistics as handed over"
            )
        fail(name, f"eval_diff {np.round(ev, 4).tolist()} does not match the stated configuration (the checker "
                   f"measures {np.round(ref_max, 4).tolist()}). Hint: {hint}")  # fmt: skip
    bound = 1e-4 * np.maximum(1.0, np.asarray(scales))
    if (train > bound).any():
        hint = ("train_diff matches eval mode: call bn.train() for it (batch statistics)"
                if rel_err(train, ref_max) <= 1e-3 else
                "in training mode BN subtracts the batch mean, which contains the bias: the outputs agree up to "
                "float32 rounding; compare with the bias-free output of the same mode")  # fmt: skip
        fail(name, f"train_diff {train.tolist()} is too large (at most {bound.tolist()}). Hint: {hint}")
    for key, want, why in (
        ("bias_matters_in_train", False, f"your train_diff is at most {train.max():.1e}, float32 rounding"),
        ("bias_matters_in_eval", True, f"your eval_diff reaches {ev.max():.2f}"),
    ):
        v = res[key]
        if not isinstance(v, (bool, np.bool_)):
            fail(name, f"{key} must be True or False; got {v!r}")
        if bool(v) != want:
            fail(name, f"{key} = {v} does not follow from your measurements: {why}")
    print(f"{name}: measured on the stated configuration. In training mode the outputs agree to "
          f"{train.max():.1e} at every scale (rounding): the batch mean absorbs the bias, and it gets no gradient. "
          f"In eval mode they differ by up to {ev[-1]:.2f} at scale {scales[-1]:g}, growing linearly with the "
          "scale: the running mean does not follow a bias that changes. The bias can go, with running_mean "
          "corrected once (exercise 4).")  # fmt: skip
