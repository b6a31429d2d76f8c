"""Chapter 6's thinking exercises: predicted accuracy drops at batch 2 (with and without Ghost BN), and the
open experiment on SyncBN's statistics in float32 (sums or per-device moments)."""

import numpy as np
import pytest

from bncourse.checks import batchsize as checks

RUN = {"acc": {"bn_32": 0.71, "bn_2": 0.42, "ghost_2": 0.39}, "drop": {"bn": 29.0, "ghost": 32.0}}


def test_small_batch_run_measures_three_runs():
    run = checks.small_batch_run(num_examples=320, num_test=200)
    acc = run["acc"]
    assert set(acc) == {"bn_32", "bn_2", "ghost_2"} and all(0.0 <= a <= 1.0 for a in acc.values())
    assert run["drop"]["bn"] == pytest.approx(100 * (acc["bn_32"] - acc["bn_2"]))
    assert run["drop"]["ghost"] == pytest.approx(100 * (acc["bn_32"] - acc["ghost_2"]))
    assert acc["bn_32"] > 0.3  # it learned something in 10 steps of 32


@pytest.mark.parametrize(
    "right", [{"bn": 29, "ghost": 32}, {"bn": 20.0, "ghost": np.float32(40)}, {"bn": 40, "ghost": 25}]
)
def test_right_prediction_passes_and_explains(right, capsys):
    checks.check_small_batch_prediction(right, RUN)
    assert "Ghost BN averages the gradient over 32" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        ({"bn": 30, "ghost": 2}, "Ghost BN was expected to rescue"),
        ({"bn": 3, "ghost": 3}, "BN was expected to cope"),
        ({"bn": 3, "ghost": 30}, "BN was expected to cope"),
        ({"bn": 65, "ghost": 65}, "above chance"),
        ({"bn": 0.29, "ghost": 0.32}, "percentage points"),
        (None, "not filled in yet"),
        (..., "not filled in yet"),
        ({"bn": None, "ghost": 30}, "not filled in yet"),
        (30, "must be a dict"),
        ({"bn": 30}, "must be a dict"),
        ({"bn": "30", "ghost": 30}, "str"),
    ],
)
def test_wrong_prediction_names_the_misconception(wrong, hint):
    with pytest.raises(AssertionError, match="check_small_batch_prediction") as e:
        checks.check_small_batch_prediction(wrong, RUN)
    assert hint in str(e.value)


def _combine(means, variances, counts):
    w = counts[:, None] / counts.sum()
    mean = (w * means).sum(0)
    return mean, (w * (variances + (means - mean) ** 2)).sum(0)


def _routes(x, one_pass_device=False, float64=False, no_between=False):
    x = x.astype(np.float64) if float64 else x
    p, n, c = x.shape
    mean = x.sum(axis=(0, 1)) / (p * n)
    sums = (x**2).sum(axis=(0, 1)) / (p * n) - mean**2
    var_p = (x**2).mean(1) - x.mean(1) ** 2 if one_pass_device else x.var(1)
    moms = var_p.mean(0) if no_between else _combine(x.mean(1), var_p, np.full(p, n))[1]
    return sums, moms


def _experiment(**kw):
    def run(xs):
        s, m = zip(*(_routes(x, **kw) for x in xs), strict=True)
        return {"var_sums": np.array(s), "var_moments": np.array(m), "more_accurate": "moments"}

    return run


def _torch_experiment(xs):
    """A correct alternative in torch float32, with the moments combined by hand (not by Chan's formula)."""
    import torch

    vs, vm = [], []
    for a in xs:
        t = torch.from_numpy(a)
        p, n, c = t.shape
        m = t.sum((0, 1)) / (p * n)
        vs.append(((t * t).sum((0, 1)) / (p * n) - m * m).numpy())
        mp, vp = t.mean(1), t.var(1, unbiased=False)
        vm.append((vp.mean(0) + ((mp - mp.mean(0)) ** 2).mean(0)).numpy())
    return {"var_sums": vs, "var_moments": vm, "more_accurate": "moments"}


@pytest.mark.parametrize("experiment", [_experiment(), _torch_experiment])
def test_right_experiment_passes(experiment, capsys):
    checks.check_precision_experiment(experiment)
    assert "measured on the stated data" in capsys.readouterr().out


def _patch(fn):
    def run(xs):
        return fn(_experiment()(xs), xs)

    return run


def _made_up(r, xs):
    true = np.stack([x.astype(np.float64).reshape(-1, 8).var(0) for x in xs])
    return {**r, "var_sums": true * np.array([[1.01], [1.01], [1.1], [3.0]])}  # made-up errors on the true variance


WRONG = {
    "float64_sums": (_experiment(float64=True), "float64"),
    "one_pass_per_device": (_experiment(one_pass_device=True), "per-device variance cancels"),
    "no_between_term": (_experiment(no_between=True), "between-device term"),
    "made_up_sums": (_patch(_made_up), "more than float32 rounding"),
    "hard_coded_sums": (_patch(lambda r, xs: {**r, "var_sums": np.ones((4, 8))}), "more than float32 rounding"),
    "random_moments": (_patch(lambda r, xs: {**r, "var_moments": np.ones((4, 8))}), "var_moments is off"),
    "wrong_conclusion": (_patch(lambda r, xs: {**r, "more_accurate": "sums"}), "does not follow"),
    "bad_conclusion": (_patch(lambda r, xs: {**r, "more_accurate": True}), '"sums" or "moments"'),
    "transposed": (_patch(lambda r, xs: {**r, "var_sums": r["var_sums"].T}), "shape (K, C)"),
    "missing": (_patch(lambda r, xs: {"var_sums": r["var_sums"]}), "lacks var_moments"),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_wrong_experiment_is_named(name):
    fn, hint = WRONG[name]
    with pytest.raises(AssertionError, match="check_precision_experiment") as e:
        checks.check_precision_experiment(fn)
    assert hint in str(e.value)


def test_stub_experiment_is_not_filled_in():
    def stub(xs):
        raise NotImplementedError("write your solution here")

    with pytest.raises(AssertionError, match="not filled in yet"):
        checks.check_precision_experiment(stub)


def test_precision_data_is_float32_and_reproducible():
    a, b = checks.precision_data(), checks.precision_data()
    assert len(a) == len(checks.PRECISION_OFFSETS) and all(x.dtype == np.float32 and x.shape == (4, 256, 8) for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert abs(float(a[-1].mean()) - 1e4) < 2
