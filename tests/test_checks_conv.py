"""Chapter 5's thinking exercises: the predicted count behind a BN statistic, and the measured bias before BN."""

import copy

import numpy as np
import pytest
import torch

from bncourse.checks import conv as checks


@pytest.fixture(scope="module")
def counts():
    return checks.bn_stat_counts(batch_size=2)


def test_counts_are_measured_by_the_hooks():
    got = checks.bn_stat_counts(batch_size=3)
    assert [d["shape"] for d in got] == [(3, 16, 28, 28), (3, 32, 14, 14), (3, 64, 7, 7)]
    assert [d["values"] for d in got] == [3 * 28 * 28, 3 * 14 * 14, 3 * 7 * 7]
    assert [d["statistics"] for d in got] == [16, 32, 64]


@pytest.mark.parametrize("right", [98, 98.0, np.int64(98), torch.tensor(98), np.array([98])])
def test_right_count_passes_and_explains(right, counts, capsys):
    checks.check_stat_count(right, counts)
    assert "right, 98 values" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (2, "an MLP's count"),
        (2 * 64 * 49, "every channel together"),
        (49, "Instance Norm"),
        (64 * 49, "Layer Norm"),
        (64, "how many means"),
        (2 * 3 * 3, "before the max-pool"),
        (2 * 14 * 14, "BN layer 2"),
        (2 * 28 * 28, "BN layer 1"),
        (100, "halves it"),
        (None, "not filled in yet"),
        (..., "not filled in yet"),
        ("98", "str"),
    ],
)
def test_wrong_count_names_the_misconception(wrong, hint, counts):
    with pytest.raises(AssertionError, match="check_stat_count") as e:
        checks.check_stat_count(wrong, counts)
    assert hint in str(e.value)


def _reference(conv, bn, x, direction, scales):
    res = {"train_diff": [], "eval_diff": []}
    with torch.no_grad():
        z = conv(x)
        for key, train in (("train_diff", True), ("eval_diff", False)):
            b = copy.deepcopy(bn).train(train)
            ref = b(z)
            for s in scales:
                res[key].append((b(z + s * direction.view(1, -1, 1, 1)) - ref).abs().max().item())
    res["bias_matters_in_train"] = max(res["train_diff"]) > 1e-3
    res["bias_matters_in_eval"] = max(res["eval_diff"]) > 1e-3
    return res


def _functional(conv, bn, x, direction, scales):
    """A correct alternative: the conv's own bias set per scale, F.batch_norm on saved statistics, numpy arrays."""
    f = torch.nn.functional.batch_norm
    rm, rv = bn.running_mean.clone(), bn.running_var.clone()
    tr, ev = [], []
    with torch.no_grad():
        conv.bias.zero_()
        z0 = conv(x)
        for s in scales:
            conv.bias.copy_(s * direction)
            z = conv(x)
            ev.append(
                float((f(z, rm, rv, bn.weight, bn.bias, False) - f(z0, rm, rv, bn.weight, bn.bias, False)).abs().max())
            )
            tr.append(
                float(
                    (f(z, None, None, bn.weight, bn.bias, True) - f(z0, None, None, bn.weight, bn.bias, True))
                    .abs()
                    .max()
                )
            )
    return {"train_diff": np.array(tr), "eval_diff": np.array(ev), "bias_matters_in_train": np.bool_(max(tr) > 0.01),
            "bias_matters_in_eval": bool(max(ev) > 0.01)}  # fmt: skip


@pytest.mark.parametrize("experiment", [_reference, _functional])
def test_right_experiment_passes(experiment, capsys):
    checks.check_bias_experiment(experiment)
    assert "measured on the stated configuration" in capsys.readouterr().out


def _no_copy(conv, bn, x, direction, scales):
    """Training mode first on the real bn: its running statistics move before eval mode is measured."""
    res = {"train_diff": [], "eval_diff": []}
    with torch.no_grad():
        z = conv(x)
        for key, train in (("train_diff", True), ("eval_diff", False)):
            bn.train(train)
            for s in scales:
                res[key].append((bn(z + s * direction.view(1, -1, 1, 1)) - bn(z)).abs().max().item())
    return {**res, "bias_matters_in_train": False, "bias_matters_in_eval": True}


def _patched(fn):
    def run(conv, bn, x, direction, scales):
        return fn(_reference(conv, bn, x, direction, scales))

    return run


def _eval_in_train_mode(r):
    return {**r, "eval_diff": r["train_diff"], "bias_matters_in_eval": False}


def _mean_not_max(conv, bn, x, direction, scales):
    r = _reference(conv, bn, x, direction, scales)
    with torch.no_grad():
        z, b = conv(x), copy.deepcopy(bn).eval()
        r["eval_diff"] = [(b(z + s * direction.view(1, -1, 1, 1)) - b(z)).abs().mean().item() for s in scales]
    return r


WRONG = {
    "running_stats_moved": (_no_copy, "changed bn's running statistics"),
    "eval_in_train_mode": (_patched(_eval_in_train_mode), "you measured it in training mode"),
    "mean_not_max": (_mean_not_max, "mean of |difference|"),
    "made_up": (_patched(lambda r: {**r, "eval_diff": [0.0, 1.0, 4.0, 16.0]}), "does not match the stated"),
    "train_from_eval": (_patched(lambda r: {**r, "train_diff": r["eval_diff"]}), "train_diff matches eval mode"),
    "train_conclusion": (_patched(lambda r: {**r, "bias_matters_in_train": True}), "does not follow"),
    "eval_conclusion": (_patched(lambda r: {**r, "bias_matters_in_eval": False}), "does not follow"),
    "string_conclusion": (_patched(lambda r: {**r, "bias_matters_in_eval": "yes"}), "True or False"),
    "missing_key": (_patched(lambda r: {"train_diff": r["train_diff"]}), "lacks eval_diff"),
    "wrong_length": (_patched(lambda r: {**r, "eval_diff": r["eval_diff"][:2]}), "wrong shape"),
    "not_a_dict": (_patched(lambda r: list(r.values())), "return a dict"),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_wrong_experiment_is_named(name):
    fn, hint = WRONG[name]
    with pytest.raises(AssertionError, match="check_bias_experiment") as e:
        checks.check_bias_experiment(fn)
    assert hint in str(e.value)


def test_stub_experiment_is_not_filled_in():
    def stub(conv, bn, x, direction, scales):
        raise NotImplementedError("write your solution here")

    with pytest.raises(AssertionError, match="not filled in yet"):
        checks.check_bias_experiment(stub)


def test_bias_setup_is_reproducible():
    a, b = checks.bias_setup(), checks.bias_setup()
    assert torch.equal(a[0].weight, b[0].weight) and torch.equal(a[1].running_mean, b[1].running_mean)
    assert torch.equal(a[2], b[2]) and torch.equal(a[3], b[3]) and not a[1].training
    assert a[2].shape == (64, 1, 28, 28) and float(a[0].bias.detach().abs().max()) == 0.0
