"""Graders for the chapter-4 exercises: the running-statistics update, folding BN into a linear layer, and
recalibrating a model's BN statistics (PreciseBN).

Each checker runs the student's function on a few fixed cases (copies of the inputs), compares with a
reference, prints one line when they agree, and otherwise raises ``AssertionError`` with a hint that names
the likely mistake: the student's output is compared with known-wrong variants (Keras' momentum
convention, the biased variance, eps left out, columns scaled instead of rows, statistics not reset, ...).
Correct alternatives pass: float32 or float64, in place or not, either estimator of the variance in the
recalibration (PyTorch's cumulative average of batch variances, or the pooled variance of all examples).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from types import SimpleNamespace as _Case
from typing import Any

import numpy as np
import torch
from torch import nn

from bncourse.checks.base import (
    Variants,
    agree,
    as_array,
    as_number,
    as_record,
    as_tuple,
    call,
    fail,
    grade_prediction,
    rel_err,
    tol_for,
    verdict,
)
from bncourse.norms import bn_layers, recalibrate_bn

__all__ = [
    "SWEEP_M",
    "check_fold_linear_bn",
    "check_recalibrate",
    "check_running_update",
    "check_train_eval_ratio",
    "check_train_mode_sweep",
    "train_mode_accuracy",
]

_SHAPES = "a (D,) vector against an (N, D) array; reduce over axis=0, the batch"


def _arrays(res: Any, name: str, fn: str, names: tuple[str, str], shapes: tuple) -> tuple[list[np.ndarray], float]:
    """The student's two outputs as float64 arrays of the expected shapes, and the tolerance for their dtypes."""
    out = [
        as_array(v, name, what, shape)
        for v, what, shape in zip(as_tuple(res, name, fn, f"({', '.join(names)})", 2), names, shapes, strict=True)
    ]
    return [a.astype(np.float64) for a in out], tol_for(*out, narrow=1e-4)


# ------------------------------------------------------------------------------- 1. the running update

_PT = "PyTorch: running = (1 - momentum) * running + momentum * batch, with the unbiased batch variance"


def _update_cases() -> list[_Case]:
    rng = np.random.default_rng(4)
    cases = []
    for n, d, mom in [(2, 3, 0.1), (5, 4, 0.5), (32, 2, 0.01), (8, 3, 1.0), (16, 1, 0.25)]:
        x = rng.normal(rng.normal(0, 3, d), rng.uniform(0.5, 3, d), (n, d))
        rm, rv = rng.normal(0, 1, d), rng.uniform(0.5, 2.0, d)
        mu, vb, vu = x.mean(0), x.var(0), x.var(0, ddof=1)
        cases.append(_Case(x=x, rm=rm, rv=rv, mom=mom, mu=mu, vb=vb, vu=vu, label=f"N={n}, D={d}, momentum={mom}"))
    return cases


def _ema(c: _Case, old: np.ndarray, new: np.ndarray, w: float) -> np.ndarray:
    return (1 - w) * old + w * new


_UPDATE_MEAN: Variants = [
    ("the momentum weights the old value here (Keras' and CS231n's convention: running = momentum * running + "
     f"(1 - momentum) * batch); in {_PT}", lambda c: _ema(c, c.rm, c.mu, 1 - c.mom)),
    ("the running mean is returned unchanged: update it too", lambda c: c.rm),
    ("you returned the batch mean: it must be averaged into the running mean with the momentum",
     lambda c: c.mu),
    ("the momentum is hard-coded to 0.1: use the momentum argument", lambda c: _ema(c, c.rm, c.mu, 0.1)),
]  # fmt: skip
_UPDATE_VAR: Variants = [
    ("this is CS231n's update (momentum on the old value, biased variance np.var). " + _PT + " (ddof=1)",
     lambda c: _ema(c, c.rv, c.vb, 1 - c.mom)),
    ("the momentum weights the old value here (Keras' and CS231n's convention); in " + _PT,
     lambda c: _ema(c, c.rv, c.vu, 1 - c.mom)),
    ("running_var got the biased batch variance (np.var, dividing by N). BN normalises with that one, but PyTorch "
     "stores the unbiased one, x.var(axis=0, ddof=1) = N / (N - 1) times larger", lambda c: _ema(c, c.rv, c.vb, c.mom)),
    ("running_var averaged a standard deviation: average the (unbiased) variance, not its square root",
     lambda c: _ema(c, c.rv, np.sqrt(c.vu), c.mom)),
    ("running_var averaged the biased standard deviation: average the unbiased variance x.var(axis=0, ddof=1)",
     lambda c: _ema(c, c.rv, np.sqrt(c.vb), c.mom)),
    ("the running variance is returned unchanged: update it too", lambda c: c.rv),
    ("you returned the batch variance: it must be averaged into running_var with the momentum", lambda c: c.vu),
    ("the momentum is hard-coded to 0.1: use the momentum argument", lambda c: _ema(c, c.rv, c.vu, 0.1)),
]  # fmt: skip


def check_running_update(update: Callable) -> None:
    """Check ``update(running_mean, running_var, x, momentum) -> (new_mean, new_var)`` (PyTorch's convention).

    Args:
        update: the student's function; ``x`` is ``(N, D)``, the running values ``(D,)``, float64 numpy.

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    name, cases, got, tols = "check_running_update", _update_cases(), [], []
    for c in cases:
        res = call(update, f"{name}: update", c.rm.copy(), c.rv.copy(), c.x.copy(), c.mom, shape_hint=_SHAPES)
        arrays, tol = _arrays(res, name, "update", ("new_mean", "new_var"), (c.rm.shape, c.rv.shape))
        got.append(arrays)
        tols.append(tol)
    tol = max(tols)
    msgs = []
    for k, (what, ref, variants) in enumerate(
        [("new_mean", lambda c: _ema(c, c.rm, c.mu, c.mom), _UPDATE_MEAN),
         ("new_var", lambda c: _ema(c, c.rv, c.vu, c.mom), _UPDATE_VAR)]
    ):  # fmt: skip
        msgs.append(verdict(what, [g[k] for g in got], [ref(c) for c in cases], cases, variants, tol, slack=10.0))
    if any(msgs):
        fail(name, "\n".join(m for m in msgs if m) + f"\nReminder: {_PT}.")
    print(f"{name}: all {len(cases)} cases passed (momentum in {sorted({c.mom for c in cases})}, N down to 2)")


# ------------------------------------------------------------------------------- 2. folding BN into a linear layer


def _fold_cases() -> list[_Case]:
    rng = np.random.default_rng(5)
    cases = []
    shapes = [(3, 3, 1e-5, "square W"), (4, 6, 1e-5, "W of shape (4, 6)"), (1, 5, 1e-3, "one output"),
              (5, 2, 1e-3, "tiny running_var, eps=1e-3")]  # fmt: skip
    for d_out, d_in, eps, label in shapes:
        w, b = rng.normal(0, 1, (d_out, d_in)), rng.normal(0, 1, d_out)
        gamma, beta = rng.uniform(0.5, 2.0, d_out), rng.normal(0, 1, d_out)
        rm, rv = rng.normal(0, 2, d_out), rng.uniform(0.2, 4.0, d_out)
        if "tiny" in label:
            rv[0] = 1e-4
        cases.append(_Case(w=w, b=b, gamma=gamma, beta=beta, rm=rm, rv=rv, eps=eps, label=label,
                           std=np.sqrt(rv + eps)))  # fmt: skip
    return cases


_ROWS = (
    "W is (out, in), PyTorch's layout, and s = gamma / sqrt(running_var + eps) is (out,); BN scales the outputs, "
    "so scale the rows of W: s[:, None] * W, not W * s"
)


def _rows(c: _Case, s: np.ndarray) -> np.ndarray:
    return s[:, None] * c.w


_FOLD_W: Variants = [
    ("W_f scales the columns of W; BN acts on the outputs, so scale the rows: s[:, None] * W (W is (out, in))",
     lambda c: c.w * (c.gamma / c.std)[None, :] if c.w.shape[0] == c.w.shape[1] else None),
    ("eps is missing: s = gamma / sqrt(running_var + eps)", lambda c: _rows(c, c.gamma / np.sqrt(c.rv))),
    ("eps is outside the square root: s = gamma / sqrt(running_var + eps)",
     lambda c: _rows(c, c.gamma / (np.sqrt(c.rv) + c.eps))),
    ("divided by the variance, not the standard deviation: s = gamma / sqrt(running_var + eps)",
     lambda c: _rows(c, c.gamma / (c.rv + c.eps))),
    ("gamma is missing from W_f: s = gamma / sqrt(running_var + eps)", lambda c: _rows(c, 1 / c.std)),
    ("multiplied by the standard deviation instead of dividing: s = gamma / sqrt(running_var + eps)",
     lambda c: _rows(c, c.gamma * c.std)),
]  # fmt: skip
_FOLD_B: Variants = [
    ("the running mean is not subtracted: b_f = s * (b - running_mean) + beta",
     lambda c: c.gamma / c.std * c.b + c.beta),
    ("beta is missing: b_f = s * (b - running_mean) + beta", lambda c: c.gamma / c.std * (c.b - c.rm)),
    ("b is not scaled: b_f = s * (b - running_mean) + beta, s multiplies b too",
     lambda c: c.b - c.gamma / c.std * c.rm + c.beta),
    ("the layer's own bias b is missing: b_f = s * (b - running_mean) + beta",
     lambda c: -c.gamma / c.std * c.rm + c.beta),
    ("the running mean has the wrong sign: b_f = s * (b - running_mean) + beta",
     lambda c: c.gamma / c.std * (c.b + c.rm) + c.beta),
    ("gamma is missing from b_f: b_f = s * (b - running_mean) + beta with s = gamma / sqrt(running_var + eps)",
     lambda c: (c.b - c.rm) / c.std + c.beta),
    ("b_f is not scaled at all: b_f = s * (b - running_mean) + beta", lambda c: c.b - c.rm + c.beta),
    ("eps is missing in b_f: s = gamma / sqrt(running_var + eps)",
     lambda c: c.gamma / np.sqrt(c.rv) * (c.b - c.rm) + c.beta),
]  # fmt: skip


@torch.no_grad()
def _torch_fold_error(c: _Case, w_f: np.ndarray, b_f: np.ndarray) -> float:
    """Largest difference between x @ W_f.T + b_f and PyTorch's Linear -> BatchNorm1d in eval mode."""
    lin = nn.Linear(c.w.shape[1], c.w.shape[0]).double()
    bn = nn.BatchNorm1d(c.w.shape[0], eps=c.eps).double().eval()
    for p, v in ((lin.weight, c.w), (lin.bias, c.b), (bn.weight, c.gamma), (bn.bias, c.beta)):
        p.copy_(torch.as_tensor(v))
    bn.running_mean.copy_(torch.as_tensor(c.rm))
    bn.running_var.copy_(torch.as_tensor(c.rv))
    x = torch.randn(7, c.w.shape[1], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = bn(lin(x)).numpy()
    return rel_err(x.numpy() @ w_f.T + b_f, ref)


def check_fold_linear_bn(fold: Callable) -> None:
    """Check ``fold(W, b, gamma, beta, running_mean, running_var, eps) -> (W_f, b_f)``.

    ``W`` is ``(out, in)`` (PyTorch's ``nn.Linear`` layout), every other argument ``(out,)``; the folded layer
    ``x @ W_f.T + b_f`` must equal the linear layer followed by BN in eval mode.

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    name, cases, got, tols = "check_fold_linear_bn", _fold_cases(), [], []
    for c in cases:
        args = (c.w.copy(), c.b.copy(), c.gamma.copy(), c.beta.copy(), c.rm.copy(), c.rv.copy(), c.eps)
        arrays, tol = _arrays(call(fold, f"{name}: fold", *args, shape_hint=_ROWS), name, "fold", ("W_f", "b_f"),
                              (c.w.shape, c.b.shape))  # fmt: skip
        got.append(arrays)
        tols.append(tol)
    tol, msgs = max(tols), []
    refs = [(_rows(c, c.gamma / c.std), c.gamma / c.std * (c.b - c.rm) + c.beta) for c in cases]
    for k, (what, variants) in enumerate((("W_f", _FOLD_W), ("b_f", _FOLD_B))):
        msgs.append(verdict(what, [g[k] for g in got], [r[k] for r in refs], cases, variants, tol, slack=10.0))
    if any(msgs):
        fail(
            name,
            "\n".join(m for m in msgs if m) + "\nReminder: s = gamma / sqrt(running_var + eps); W_f = s[:, None] * W; "
            "b_f = s * (b - running_mean) + beta.",
        )
    err = max(_torch_fold_error(c, *g) for c, g in zip(cases, got, strict=True))
    print(f"{name}: all {len(cases)} cases passed; x @ W_f.T + b_f equals nn.Linear -> nn.BatchNorm1d (eval) "
          f"to {err:.1e}")  # fmt: skip


# ------------------------------------------------------------------------------- 3. recalibrating a model


def _recal_cases() -> list[_Case]:
    """Three float64 models (an MLP with BN momentum 0.1 and 0.3, a small convnet, an MLP with dropout before its
    BN layer) in eval mode, with stale running statistics (and 50 batches counted), and their recalibration
    batches."""
    g = torch.Generator().manual_seed(6)
    with torch.random.fork_rng():
        torch.manual_seed(6)
        mlp = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 5),
                            nn.BatchNorm1d(5, momentum=0.3), nn.ReLU(), nn.Linear(5, 3))  # fmt: skip
        cnn = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                            nn.Linear(4 * 5 * 5, 3))  # fmt: skip
        drop = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    cases = []
    models = ((mlp, (16, 6), 6, "MLP, 6 batches of 16"), (cnn, (8, 2, 5, 5), 5, "convnet"),
              (drop, (16, 6), 4, "MLP with dropout before BN"))  # fmt: skip
    for model, shape, n, label in models:
        model = model.double().eval()
        with torch.no_grad():
            for bn in bn_layers(model):
                bn.running_mean.fill_(5.0)
                bn.running_var.fill_(9.0)
                bn.num_batches_tracked.fill_(50)
                bn.weight.uniform_(0.5, 2.0, generator=g)
                bn.bias.normal_(0.0, 1.0, generator=g)
        batches = [torch.randn(shape, generator=g, dtype=torch.float64) * 2.0 + 1.0 for _ in range(n)]
        cases.append(_Case(model=model, batches=batches, label=label))
    return cases


@torch.no_grad()
def _emulate(c: _Case, reset: bool, momentum: float | None | str, batches: list | None = None) -> nn.Module:
    """A copy of the case's model after train-mode passes: reset or not, with a momentum (or "keep")."""
    m = copy.deepcopy(c.model)
    for bn in bn_layers(m):
        if reset:
            bn.reset_running_stats()
        if momentum != "keep":
            bn.momentum = momentum
        bn.train()  # only the BN layers: dropout stays off, as in a correct recalibration
    for x in batches if batches is not None else c.batches:
        m(x)
    return m


@torch.no_grad()
def _all_train(c: _Case) -> list[np.ndarray]:
    """The statistics after a correct recalibration run with ``model.train()``, i.e. with dropout on (same seed
    as the student's call)."""
    m = copy.deepcopy(c.model)
    for bn in bn_layers(m):
        bn.reset_running_stats()
        bn.momentum = None
    m.train()
    with torch.random.fork_rng():
        torch.manual_seed(_RECAL_SEED)
        for x in c.batches:
            m(x)
    return _stats(m)


_RECAL_SEED = 0


def _stats(model: nn.Module) -> list[np.ndarray]:
    bns = bn_layers(model)
    mean = np.concatenate([bn.running_mean.numpy() for bn in bns])  # all layers' channels, (sum C,)
    return [mean, np.concatenate([bn.running_var.numpy() for bn in bns])]


_RECAL: Variants = [
    ("the running statistics did not change: BN only updates them in train mode; call model.train() (or .train() "
     "on each BN layer) before the passes", lambda c: _stats(c.model)),
    ("the running statistics stayed at their reset values (mean 0, variance 1): BN only updates them in train "
     "mode; call model.train() (or .train() on each BN layer) before the passes",
     lambda c: [np.zeros_like(s) if k == 0 else np.ones_like(s) for k, s in enumerate(_stats(c.model))]),
    ("the old statistics were not reset: with momentum=None PyTorch continues the average from "
     "num_batches_tracked; call bn.reset_running_stats() on every BN layer first",
     lambda c: _stats(_emulate(c, reset=False, momentum=None))),
    ("the momentum was left as it was, so the statistics are an exponential average that weights the last "
     "batches most; set bn.momentum = None for an equal-weight cumulative average (and restore it after)",
     lambda c: _stats(_emulate(c, reset=True, momentum="keep"))),
    ("the statistics were neither reset nor averaged with momentum=None: you only ran the batches in train mode; "
     "reset them and set bn.momentum = None first", lambda c: _stats(_emulate(c, reset=False, momentum="keep"))),
    ("only the last batch counts (momentum=1.0?): set bn.momentum = None for an equal-weight average of all batches",
     lambda c: _stats(_emulate(c, reset=True, momentum=1.0))),
    ("only the first batch was used: run every batch", lambda c: _stats(_emulate(c, True, None, c.batches[:1]))),
    ("model.train() also switched dropout on, so BN saw inputs with dropped units and rescaled survivors, not what "
     "it sees at inference: put only the BN layers in train mode (model.eval(), then bn.train() for each BN "
     "layer)", _all_train),
]  # fmt: skip


def check_recalibrate(recalibrate: Callable) -> None:
    """Check ``recalibrate(model, batches)``: PreciseBN, in place, on three small float64 models.

    After the call every BN layer's ``running_mean`` and ``running_var`` must be the average statistics of
    ``batches`` (a list of input tensors) with the weights unchanged, each layer's ``momentum`` as it was,
    and the model in eval mode. PyTorch's cumulative average (``momentum=None``) passes, and so do the pooled
    statistics of all examples. The third model has dropout before its BN layer: only the BN layers may run in
    train mode (``model.train()``, as ``torch.optim.swa_utils.update_bn`` does, switches dropout on).

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    name = "check_recalibrate"
    for c in _recal_cases():
        model = copy.deepcopy(c.model)
        params = [p.detach().clone() for p in model.parameters()]
        momenta = [bn.momentum for bn in bn_layers(model)]
        with torch.random.fork_rng():  # the seed the dropout variant is emulated with
            torch.manual_seed(_RECAL_SEED)
            call(recalibrate, f"{name}: recalibrate", model, [x.clone() for x in c.batches])
        if not all(torch.equal(p, q) for p, q in zip(params, model.parameters(), strict=True)):
            fail(f"{name} ({c.label})", "the weights changed: recalibration only re-estimates the BN "
                                 "statistics (no optimizer step; run the batches under torch.no_grad())")  # fmt: skip
        got = _stats(model)
        refs = {
            "cumulative": _stats(recalibrate_bn(copy.deepcopy(c.model), c.batches, method="cumulative")),
            "pooled": _stats(recalibrate_bn(copy.deepcopy(c.model), c.batches, method="exact")),
            "one batch": _stats(_emulate(c, True, None, [torch.cat(c.batches)])),
        }
        tol = 1e-6
        ok = [k for k, r in refs.items() if rel_err(got[0], r[0]) <= tol and rel_err(got[1], r[1]) <= tol]
        if not ok:
            hint = None
            for h, f in _RECAL:
                ref = f(c)
                if rel_err(got[0], ref[0]) <= tol and rel_err(got[1], ref[1]) <= tol:
                    hint = h
                    break
            ref = refs["cumulative"]
            if hint is None and rel_err(got[0], ref[0]) <= tol:
                hint = ("the means are right but the variances are not: average the unbiased batch variances (what "
                        "BN stores with momentum=None), not the biased ones or standard deviations")  # fmt: skip
            errs = f"max error: mean {rel_err(got[0], ref[0]):.1e}, var {rel_err(got[1], ref[1]):.1e}"
            hint = hint or "reset, set momentum=None, run every batch in train mode"
            fail(f"{name} ({c.label})", f"the running statistics are wrong ({errs}).\nHint: {hint}")
        after = [bn.momentum for bn in bn_layers(model)]
        if after != momenta:
            fail(f"{name} ({c.label})", f"the BN momenta are {after} after your function, not "
                                 f"{momenta}: restore each layer's own momentum, or later training would average "
                                 "cumulatively")  # fmt: skip
        if any(m.training for m in model.modules()):
            fail(f"{name} ({c.label})", "the model is left in train mode: end with model.eval(), so "
                                 "that inference uses the new statistics")  # fmt: skip
    print(f"{name}: all three models passed ({' / '.join(ok)} statistics), weights, momenta and eval mode as expected")


# ------------------------------------------------------------------ thinking exercises (issue 19)

_RATIO_TOL = 0.08
_RATIO_WHY = (
    "in train mode BN normalises each test batch with its own mean and variance. From m = 4 examples these are "
    "noisy estimates (the variance of 4 values is often far from the feature's), so every layer's output is "
    "shifted and rescaled at random, and each prediction depends on the 3 other examples of its batch. Eval "
    "mode uses the running averages collected over training: one fixed function, applied to each example alone."
)


def check_train_eval_ratio(prediction: Any, measured: Any) -> None:
    """Grade a prediction of the ratio (train-mode accuracy on test batches of m = 4) / (eval-mode accuracy) of
    a trained BN network, against ``measured``, the ratio the experiment cell measured (tolerance 0.08).

    Plausible wrong predictions name their misconception: 1 (the two modes agree on test data), chance level
    (train mode breaks the network entirely), clearly above 1 (the test batch's own statistics fit better).

    Raises:
        AssertionError: the prediction is wrong or missing, or ``measured`` is not a ratio of accuracies.
    """
    name = "check_train_eval_ratio"
    m = as_number(measured, name, "measured")
    if not 0.0 < m <= 10.0:
        fail(name, f"measured = {m:.3g} is not a ratio of two accuracies: run the experiment cell as given")
    grade_prediction(name, "prediction", prediction, m, _RATIO_TOL, [
        ("1 means the two modes agree, but on a test batch train mode does not use the running statistics: "
         "it normalises with the batch's own, noisy, mean and variance.", 1.0),
        ("That is about chance level (10 classes): the network still sees every example normalised, only with "
         "noisy statistics, so most predictions survive.", 0.1 / 0.85),
        ("Above 1 means the batch's own statistics would help; four examples estimate them far worse than the "
         "running averages over thousands of training examples.", lambda p: p > max(1.0, m) + _RATIO_TOL),
    ], _RATIO_WHY)  # fmt: skip


SWEEP_M = (2, 4, 8, 16, 64, 256)  # the test-batch sizes of the open experiment
_WITHIN = 0.02  # "as good as eval mode": train-mode accuracy at least eval accuracy minus this


def train_mode_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, m: int | None) -> float:
    """Accuracy of ``model`` on ``(x, y)``: in eval mode (``m=None``), or in train mode on consecutive batches of
    ``m`` examples in order (the last one shorter if ``m`` does not divide ``len(x)``). Runs on a copy, so
    the model's running statistics and mode stay as they are."""
    net = copy.deepcopy(model).train(m is not None)
    with torch.no_grad():
        if m is None:
            return (net(x).argmax(1) == y).double().mean().item()
        hits = [net(x[i : i + m]).argmax(1) == y[i : i + m] for i in range(0, len(x), m)]
    return torch.cat(hits).double().mean().item()


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def check_train_mode_sweep(sweep: Callable, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Grade the open experiment: how large must a test batch be for train mode to match eval mode?

    ``sweep(model, x, y)`` returns ``{"m": SWEEP_M, "train_acc": (6,), "eval_acc": number, "smallest_m": m}``:
    the accuracy in train mode on consecutive test batches of each m (in order), the eval-mode accuracy, and the
    smallest m of the list whose train-mode accuracy is at least the eval accuracy minus 0.02. The checker
    measures every point itself on the same model and data (they must agree to half an example), requires
    the model to come back unchanged (a forward pass in train mode updates the running statistics), and
    ``smallest_m`` to follow from the student's own accuracies.

    Raises:
        AssertionError: when a measurement or the conclusion is wrong, the model was changed, or ``sweep`` raises.
    """
    name = "check_train_mode_sweep"
    before = _state(model)
    res = call(sweep, name, model, x, y)
    changed = [k for k, v in _state(model).items() if not torch.equal(v, before[k])]
    for k, v in before.items():
        model.state_dict()[k].copy_(v)  # put the model back for the cells after this one
    model.eval()
    if changed:
        fail(name, f"your sweep changed the model ({', '.join(changed[:3])}): a forward pass in train mode updates "
                   "BN's running statistics. Measure on a copy (copy.deepcopy(model)), as the experiment cell of "
                   "the previous exercise does.")  # fmt: skip
    n = len(SWEEP_M)
    rec = as_record(res, name, "sweep", {"m": (n,), "train_acc": (n,), "eval_acc": (), "smallest_m": ()})
    if not np.array_equal(rec["m"], np.asarray(SWEEP_M, dtype=np.float64)):
        fail(name, f"measure at m = {list(SWEEP_M)} (the stated batch sizes, in order); got {rec['m'].tolist()}")
    acc, eval_acc = rec["train_acc"], float(rec["eval_acc"])
    tol = 0.5 / len(x)  # half an example
    ref_eval = train_mode_accuracy(model, x, y, None)
    ref = np.array([train_mode_accuracy(model, x, y, m) for m in SWEEP_M])
    if abs(eval_acc - ref_eval) > tol:
        fail(
            name,
            f"eval_acc = {eval_acc:.4f}, but the model in eval mode scores {ref_eval:.4f} on these data"
            + (" (accuracy as a fraction, not a percentage)" if abs(eval_acc / 100 - ref_eval) <= tol else ""),
        )
    if np.all(np.abs(acc - ref_eval) <= tol) and np.any(np.abs(acc - ref) > tol):
        fail(name, "your train-mode accuracies all equal the eval-mode accuracy: the model stayed in eval mode. "
                   "Call .train() on the copy you measure.")  # fmt: skip
    agree(name, "train_acc", acc, ref, tol, [f"m={m}" for m in SWEEP_M],
          "Split x into consecutive batches of m, in order, and use train mode on a copy of the model.")  # fmt: skip
    ok = [m for m, a in zip(SWEEP_M, acc, strict=True) if a >= eval_acc - _WITHIN]
    want = ok[0] if ok else None
    if want is None or rec["smallest_m"] != want:
        fail(name, f"smallest_m = {rec['smallest_m']:g} does not follow from your accuracies: the smallest m with "
                   f"train_acc >= eval_acc - {_WITHIN} is {want}")  # fmt: skip
    print(f"{name}: your measurements agree with the checker's. Train mode reaches eval mode's accuracy "
          f"({eval_acc:.3f}, within {_WITHIN}) from m = {want}; at m = {SWEEP_M[0]} it scores {acc[0]:.3f}. "
          "The batch's mean and variance are estimates whose noise falls like 1/sqrt(m): it takes batches of "
          "tens of examples before train mode's statistics are as good as the running averages.")  # fmt: skip
