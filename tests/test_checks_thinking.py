"""Tests of the thinking exercises' checkers (issue 19): right predictions pass and explain, plausible wrong ones
fail with the hint that names the misconception, stubs fail as not filled in; open experiments pass on the
reference and on an alternative implementation, and fail on wrong or made-up measurements."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import bncourse.checks as C
from bncourse.checks import base as kit
from bncourse.checks.batchnorm import M2_DOUT, M2_X, SHRINKAGE_M
from bncourse.checks.covariate_shift import BIAS_STEPS, bias_run
from bncourse.checks.inference import SWEEP_M
from bncourse.checks.sgd import SAMPLED_SIZES, STABLE_LRS, stability_runs
from bncourse.gradcheck import eval_numerical_gradient_array
from bncourse.norms import batchnorm_backward, batchnorm_forward

THINKING = {  # the checkers this file covers
    "check_bias_before_bn",
    "check_diverging_runs",
    "check_gradient_shrinkage",
    "check_largest_stable_lr",
    "check_m2_gradient",
    "check_mean_only_saturation",
    "check_sampled_variance",
    "check_train_eval_ratio",
    "check_train_mode_sweep",
}


def _fails(fn, *args, match: str) -> str:
    with pytest.raises(AssertionError) as info:
        fn(*args)
    msg = str(info.value)
    assert msg.startswith("check_"), msg
    assert any(w.lower() in msg.lower() for w in match.split("|")), msg
    return msg


# ------------------------------------------------------------------------------------------------ the kit


def test_prediction_stubs_are_not_filled_in():
    for stub in (None, ...):
        msg = _fails(kit.as_prediction, stub, "check_x", "prediction", (2,), match="not filled in yet")
        assert "check_x" in msg
    for bad, word in (("0.5", "str"), ([0.1, 0.2, 0.3], "shape"), (np.nan, "NaN"), ([1, 2j], "complex")):
        _fails(kit.as_prediction, bad, "check_x", "prediction", (2,), match=word)
    assert kit.as_prediction([0.5], "check_x", "p").shape == ()


def test_choices_and_records_are_validated():
    assert kit.as_choice(" 1 - 2/M ", "check_x", "law", ["1", "1 - 2/m"]) == "1 - 2/m"
    _fails(kit.as_choice, None, "check_x", "law", ["1"], match="not filled in yet")
    _fails(kit.as_choice, "2", "check_x", "law", ["1"], match="one of")
    _fails(kit.as_record, [1], "check_x", "f", {"a": ()}, match="dict")
    _fails(kit.as_record, {"a": 1, "b": 2}, "check_x", "f", {"a": ()}, match="unexpected")
    _fails(kit.as_record, {"a": [1, 2]}, "check_x", "f", {"a": ()}, match="shape")
    rec = kit.as_record({"a": 1, "b": "x"}, "check_x", "f", {"a": (), "b": None})
    assert rec["a"] == 1.0 and rec["b"] == "x"


def test_grade_prediction_explains_either_way(capsys):
    kit.grade_prediction("check_x", "p", 0.52, 0.5, 0.05, [("too big", 1.0)], "because")
    assert "right" in capsys.readouterr().out
    msg = _fails(kit.grade_prediction, "check_x", "p", 0.98, 0.5, 0.05, [("too big", 1.0)], "because",
                 match="too big")  # fmt: skip
    assert "because" in msg
    assert "Why: b" in _fails(kit.grade_prediction, "check_x", "p", 3.0, 0.5, 0.05, [], "b", match="off by")
    kit.grade_choice("check_x", "c", "a", "a", {"a": "", "b": "b is wrong"}, "why")
    assert "why" in _fails(kit.grade_choice, "check_x", "c", "b", "a", {"a": "", "b": "b is wrong"}, "why",
                           match="b is wrong")  # fmt: skip


# ------------------------------------------------------------------------------------------------ chapter 3


def _m2_measured() -> np.ndarray:
    def bn(x):
        return batchnorm_forward(x, np.ones(1), np.zeros(1), 1e-5)[0]

    return eval_numerical_gradient_array(bn, M2_X.copy(), M2_DOUT).ravel()


def _m2_autograd() -> np.ndarray:
    x = torch.tensor(M2_X, requires_grad=True)
    torch.nn.functional.batch_norm(x, None, None, training=True, eps=1e-5).backward(torch.tensor(M2_DOUT))
    return x.grad.numpy().ravel()


@pytest.mark.parametrize("prediction", [[0.0, 0.0], (0.01, -0.02), np.zeros((2, 1)), [1e-5, -1e-5]])
def test_m2_right_predictions_pass(prediction, capsys):
    C.check_m2_gradient(prediction, _m2_measured())
    C.check_m2_gradient(prediction, _m2_autograd())  # torch measures the same
    assert "Why" in capsys.readouterr().out


@pytest.mark.parametrize(
    "prediction, hint",
    [([1.0, -2.0], "treated mu and sigma as constants"), ([1.5, -1.5], "without the path through sigma"),
     ([0.71, -1.41], "unbiased"), ([0.5, 0.5], "off by")],
)  # fmt: skip
def test_m2_wrong_predictions_name_the_misconception(prediction, hint):
    msg = _fails(C.check_m2_gradient, prediction, _m2_measured(), match=hint)
    assert "whatever x is" in msg  # the explanation comes with the error


def test_m2_stub_and_bad_measurements_fail():
    _fails(C.check_m2_gradient, None, _m2_measured(), match="not filled in yet")
    _fails(C.check_m2_gradient, ..., _m2_measured(), match="not filled in yet")
    _fails(C.check_m2_gradient, [0, 0], np.array([1.0, -2.0]), match="experiment cell as given")
    _fails(C.check_m2_gradient, [0, 0], None, match="None")


def _shrinkage(dx_fn, law="1 - 2/m", draws=10, seed=0):
    """An honest experiment with ``dx_fn(x, dout) -> dx`` (gamma = 1, eps = 1e-5)."""

    def experiment():
        rng, ratios = np.random.default_rng(seed), []
        for m in SHRINKAGE_M:
            r = []
            for _ in range(draws):
                x, dout = rng.normal(size=(m, 256)), rng.normal(size=(m, 256))
                sigma = np.sqrt(x.var(axis=0) + 1e-5)
                r.append(((sigma * dx_fn(x, dout)) ** 2).sum(axis=0) / (dout**2).sum(axis=0))
            ratios.append(np.mean(r))
        return {"m": list(SHRINKAGE_M), "ratio": ratios, "law": law}

    return experiment


def _dx_reference(x, dout):
    return batchnorm_backward(dout, batchnorm_forward(x, np.ones(x.shape[1]), np.zeros(x.shape[1]), 1e-5)[1])[0]


def _dx_autograd(x, dout):
    """A correct alternative: torch's autograd in float32, per-batch ratios computed the same way."""
    t = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    torch.nn.functional.batch_norm(t, None, None, training=True, eps=1e-5).backward(torch.tensor(dout).float())
    return t.grad.double().numpy()


def _dx_constants(x, dout):
    return dout / np.sqrt(x.var(axis=0) + 1e-5)


def _dx_mean_only(x, dout):
    return (dout - dout.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-5)


def test_shrinkage_reference_and_alternative_pass(capsys):
    C.check_gradient_shrinkage(_shrinkage(_dx_reference))
    C.check_gradient_shrinkage(_shrinkage(_dx_autograd, law="1-2/m", draws=4, seed=5))
    out = capsys.readouterr().out
    assert out.count("agree with the checker's") == 2


@pytest.mark.parametrize(
    "experiment, hint",
    [
        (_shrinkage(_dx_constants, law="1"), "treats mu and sigma as constants"),
        (_shrinkage(_dx_mean_only, law="1 - 1/m"), "mean's path but not the variance's"),
        (_shrinkage(_dx_reference, law="1 - 1/m"), "does not follow from your own ratios"),
        (_shrinkage(_dx_reference, law="1/m"), "they follow '1 - 2/m'"),
        (lambda: {"m": list(SHRINKAGE_M), "ratio": [0.0, 0.3, 0.5, 0.7, 0.9, 1.0], "law": "1 - 2/m"}, "disagrees"),
        (lambda: {"m": [2, 4, 8, 16, 32, 64], "ratio": [0.0] * 6, "law": "1 - 2/m"}, "stated batch sizes"),
        (lambda: {"m": list(SHRINKAGE_M), "ratio": [0.0] * 6}, "missing ['law']"),
        (lambda: {"m": list(SHRINKAGE_M), "ratio": [0.0] * 5, "law": "1"}, "shape"),
        (lambda: [0.5] * 6, "must return a dict"),
    ],
)
def test_shrinkage_wrong_or_made_up_measurements_fail(experiment, hint):
    _fails(C.check_gradient_shrinkage, experiment, match=hint)


def test_shrinkage_stub_fails():
    def stub():
        raise NotImplementedError("write your solution here")

    _fails(C.check_gradient_shrinkage, stub, match="not filled in yet")
    ok = _shrinkage(_dx_reference)
    _fails(C.check_gradient_shrinkage, lambda: ok() | {"law": None}, match="not filled in yet")
    _fails(C.check_gradient_shrinkage, lambda: ok() | {"ratio": [np.nan] * 6}, match="NaN")


# ------------------------------------------------------------------------------------------------ chapter 4


@pytest.fixture(scope="module")
def trained():
    """A small BN network trained on a synthetic 4-class problem, in eval mode, and its test data."""
    from bncourse.models import MLP

    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(20, 4, generator=g)
    x = torch.randn(1536, 20, generator=g) * 2 + 1
    y = (x @ teacher).argmax(1)
    model = MLP((20, 32, 32, 4), norm="bn", activation="relu", init="default", seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(200):
        idx = torch.randint(0, 1024, (32,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), x[1024:], y[1024:]


def _acc(net, x, y, m=None):
    with torch.no_grad():
        if m is None:
            return (net(x).argmax(1) == y).float().mean().item()
        return (
            torch.cat([net(x[i : i + m]).argmax(1) == y[i : i + m] for i in range(0, len(x), m)]).float().mean().item()
        )


def _sweep(model, x, y):
    """The page's solution."""
    ms, net = [2, 4, 8, 16, 64, 256], copy.deepcopy(model).train()
    accs = [_acc(net, x, y, m) for m in ms]
    eval_acc = _acc(model, x, y)
    smallest = next(m for m, a in zip(ms, accs, strict=True) if a >= eval_acc - 0.02)
    return {"m": ms, "train_acc": accs, "eval_acc": eval_acc, "smallest_m": smallest}


def _sweep_restore(model, x, y):
    """A correct alternative: the BN layers alone switched to train mode on the model itself, buffers restored,
    the batches made by torch.split, float64 counts, numpy outputs."""
    saved = copy.deepcopy(model.state_dict())
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    accs = []
    for m in SWEEP_M:
        for bn in bns:
            bn.train()
        with torch.no_grad():
            right = sum(int((model(a).argmax(1) == b).sum()) for a, b in zip(x.split(m), y.split(m), strict=True))
        accs.append(right / len(x))
    model.load_state_dict(saved)
    model.eval()
    eval_acc = _acc(model, x, y)
    ok = [m for m, a in zip(SWEEP_M, accs, strict=True) if a >= eval_acc - 0.02]
    return {"m": np.array(SWEEP_M), "train_acc": np.array(accs), "eval_acc": np.float64(eval_acc), "smallest_m": ok[0]}


def test_ratio_predictions(trained, capsys):
    C.check_train_eval_ratio(0.75, 0.76)
    C.check_train_eval_ratio(np.array([0.7]), 0.76)
    assert "running averages" in capsys.readouterr().out
    for p, hint in ((1.0, "two modes agree"), (0.12, "chance level"), (1.3, "Above 1"), (0.45, "off by")):
        assert "Why" in _fails(C.check_train_eval_ratio, p, 0.76, match=hint)
    _fails(C.check_train_eval_ratio, None, 0.76, match="not filled in yet")
    _fails(C.check_train_eval_ratio, ..., 0.76, match="not filled in yet")
    _fails(C.check_train_eval_ratio, "0.8", 0.76, match="str")
    _fails(C.check_train_eval_ratio, 0.8, -1.0, match="experiment cell")
    model, x, y = trained
    measured = _acc(copy.deepcopy(model).train(), x, y, 4) / _acc(model, x, y)
    assert 0.2 < measured < 0.98, measured  # train mode at m = 4 costs accuracy here too
    C.check_train_eval_ratio(measured, measured)


def test_sweep_reference_and_alternative_pass(trained, capsys):
    model, x, y = trained
    before = copy.deepcopy(model.state_dict())
    C.check_train_mode_sweep(_sweep, model, x, y)
    C.check_train_mode_sweep(_sweep_restore, model, x, y)
    assert capsys.readouterr().out.count("agree with the checker's") == 2
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()) and not model.training


def _no_copy(model, x, y):
    res = _sweep(model, x, y)
    model.train()
    _acc(model, x, y, 8)  # measured on the model itself: its running statistics move
    return res


def _eval_only(model, x, y):
    res = _sweep(model, x, y)
    return res | {"train_acc": [_acc(model, x, y)] * 6}


def _shuffled(model, x, y):
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    return _sweep(model, x[perm], y[perm]) | {"eval_acc": _acc(model, x, y)}


@pytest.mark.parametrize(
    "change, hint",
    [
        (_no_copy, "changed the model"),
        (_eval_only, "stayed in eval mode"),
        (_shuffled, "disagrees"),
        (lambda m, x, y: _sweep(m, x, y) | {"smallest_m": 2}, "does not follow"),
        (lambda m, x, y: _sweep(m, x, y) | {"eval_acc": 100 * _acc(m, x, y)}, "not a percentage"),
        (lambda m, x, y: _sweep(m, x, y) | {"train_acc": [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]}, "disagrees"),
        (lambda m, x, y: _sweep(m, x, y) | {"m": [1, 2, 4, 8, 16, 32]}, "stated batch sizes"),
        (lambda m, x, y: {"train_acc": [0.5] * 6}, "missing"),
        (lambda m, x, y: 0.9, "must return a dict"),
    ],
)
def test_sweep_wrong_or_made_up_measurements_fail(trained, change, hint):
    model, x, y = trained
    before = copy.deepcopy(model.state_dict())
    _fails(C.check_train_mode_sweep, change, model, x, y, match=hint)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), "the checker restores the model"


def test_sweep_stub_fails(trained):
    def stub(model, x, y):
        raise NotImplementedError("write your solution here")

    _fails(C.check_train_mode_sweep, stub, *trained, match="not filled in yet")
    _fails(C.check_train_mode_sweep, lambda *a: _sweep(*a) | {"eval_acc": None}, *trained, match="None")


def test_every_thinking_checker_is_public_and_covered():
    from test_checks_bad_returns import THINKING as EXCLUDED

    assert THINKING == EXCLUDED and THINKING <= set(C.__all__)


# ------------------------------------------------------------------------------------------------ chapter 1


def test_diverging_runs_predictions(capsys):
    measured = ["plain, std 1"]
    C.check_diverging_runs("plain, std 1 only", measured)
    C.check_diverging_runs(" Plain, std 1 ONLY ", tuple(measured))
    assert "1/|W|" in capsys.readouterr().out
    for p, hint in (
        ("none", "not safe for large ones"),
        ("both plain runs", "still trains at lr = 3"),
        ("both std 1 runs", "removes the weights' scale"),
        ("all four", "keeps both initial scales training"),
    ):
        assert "Why" in _fails(C.check_diverging_runs, p, measured, match=hint)
    _fails(C.check_diverging_runs, None, measured, match="not filled in yet")
    _fails(C.check_diverging_runs, ..., measured, match="not filled in yet")
    _fails(C.check_diverging_runs, "plain only", measured, match="one of")
    _fails(C.check_diverging_runs, "none", ["plain std 1"], match="experiment cell")
    _fails(C.check_diverging_runs, "none", ["BN, std 1"], match="none of the outcomes")
    C.check_diverging_runs("both plain runs", ["plain, std 1", "plain, std 0.1"])  # graded on what was measured


@pytest.fixture(scope="module")
def fashion():
    from bncourse.data import load_dataset

    return load_dataset("fashion_mnist")


@pytest.fixture(scope="module")
def sweep(fashion):
    """The page's solution: every run of the open experiment through the engine at once."""
    from bncourse.experiments.sgd_sensitivity import classify

    lrs = list(STABLE_LRS)
    loss, acc = stability_runs(fashion, [(norm, lr) for norm in (None, "bn") for lr in lrs])
    loss, acc = loss.reshape(2, 6), acc.reshape(2, 6)
    n = np.cumprod(classify(loss, acc) != 2, axis=1).sum(axis=1)
    return dict(lr=lrs, plain_loss=loss[0], plain_acc=acc[0], bn_loss=loss[1], bn_acc=acc[1],
                plain_max_lr=lrs[n[0] - 1], bn_max_lr=lrs[n[1] - 1])  # fmt: skip


def _torch_loop(ds, norm, lr):
    """A correct alternative: one plain PyTorch training loop per run, autograd and torch.optim.SGD."""
    from bncourse.data import batch_indices, flat_images
    from bncourse.models import paper_mlp

    x, y = flat_images(ds.x_train), torch.as_tensor(ds.y_train)
    model, losses = paper_mlp(norm=norm, init_std=0.1, seed=0), []
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for idx in batch_indices(len(x), 60, 200, data_seed=0):
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        acc = (model.eval()(flat_images(ds.x_test[:1000])).argmax(1) == torch.as_tensor(ds.y_test[:1000])).float()
    return float(np.mean(losses)), acc.mean().item()


def test_stable_lr_reference_and_alternative_pass(fashion, sweep, capsys):
    assert sweep["plain_max_lr"] < sweep["bn_max_lr"]
    C.check_largest_stable_lr(lambda: sweep, fashion)
    # the alternative measures only up to the first divergence, and reports later runs as NaN losses
    alt = {k: (list(v) if k.endswith(("_loss", "_acc")) else v) for k, v in sweep.items()}
    for norm in ("plain", "bn"):
        k = STABLE_LRS.index(sweep[f"{norm}_max_lr"])
        for i in (k, k + 1):
            alt[f"{norm}_loss"][i], alt[f"{norm}_acc"][i] = _torch_loop(fashion, None if norm == "plain" else "bn",
                                                                        STABLE_LRS[i])  # fmt: skip
        alt[f"{norm}_loss"][k + 2 :] = [np.nan] * len(alt[f"{norm}_loss"][k + 2 :])
        alt[f"{norm}_acc"][k + 2 :] = [0.1] * len(alt[f"{norm}_acc"][k + 2 :])
    C.check_largest_stable_lr(lambda: alt, fashion)
    assert capsys.readouterr().out.count("agree with the checker's runs") == 2


def _made_up(sweep):
    """Made-up numbers that tell a consistent story: the plain network stable up to lr = 10."""
    return sweep | {"plain_loss": [1.0, 0.9, 0.8, 0.8, 50.0, 300.0], "plain_acc": [0.6, 0.65, 0.7, 0.7, 0.1, 0.1],
                    "plain_max_lr": 10.0}  # fmt: skip


@pytest.mark.parametrize(
    "change, hint",
    [
        (lambda s: s | {"bn_max_lr": 100.0}, "does not follow from your own measurements"),
        (lambda s: s | {"plain_max_lr": 1.0}, "does not follow from your own measurements"),
        (_made_up, "disagrees with the checker's own measurement"),
        (lambda s: s | {"bn_acc": 100 * np.asarray(s["bn_acc"])}, "fractions"),
        (lambda s: s | {"lr": [0.1, 0.3, 1, 3, 10, 30]}, "stated rates"),
        (lambda s: s | {"bn_loss": s["plain_loss"], "bn_acc": s["plain_acc"], "bn_max_lr": s["plain_max_lr"]},
         "disagrees|no more stable"),
        (lambda s: {k: v for k, v in s.items() if k != "bn_max_lr"}, "missing ['bn_max_lr']"),
        (lambda s: s | {"plain_max_lr": None}, "None"),
    ],
)  # fmt: skip
def test_stable_lr_wrong_or_made_up_measurements_fail(fashion, sweep, change, hint):
    _fails(C.check_largest_stable_lr, lambda: change(sweep), fashion, match=hint)


def test_stable_lr_stub_fails(fashion):
    def stub():
        raise NotImplementedError("write your solution here")

    _fails(C.check_largest_stable_lr, stub, fashion, match="not filled in yet")


# ------------------------------------------------------------------------------------------------ chapter 2


def test_mean_only_saturation_predictions(capsys):
    measured = [0.515, 0.327, 0.0]
    for p in (0.35, 0.25, [0.42]):
        C.check_mean_only_saturation(p, measured)
    assert "unit scale" in capsys.readouterr().out
    for p, hint in ((0.0, "leaves its spread"), (0.5, "removes each unit's own offset"), (33.0, "percentage"),
                    (0.8, "off by")):  # fmt: skip
        assert "Why" in _fails(C.check_mean_only_saturation, p, measured, match=hint)
    _fails(C.check_mean_only_saturation, None, measured, match="not filled in yet")
    _fails(C.check_mean_only_saturation, ..., measured, match="not filled in yet")
    _fails(C.check_mean_only_saturation, 0.3, [0.1, 0.3, 0.0], match="experiment cell")
    _fails(C.check_mean_only_saturation, 0.3, [0.5, 0.3], match="shape")


def _bias_experiment(ds, remove_output_bias=False, output_bias_moved=False, steps=BIAS_STEPS):
    """The page's solution, or a mistake: the output layer's bias removed too, or its change measured."""

    def experiment():
        from bncourse.models import paper_mlp

        models = {b: paper_mlp(norm="bn", seed=0) for b in (True, False)}
        lin = {b: [m for m in models[b].net if isinstance(m, torch.nn.Linear)] for b in models}
        for layer in lin[False] if remove_output_bias else lin[False][:-1]:
            layer.bias = None
        watched = lin[True] if output_bias_moved else lin[True][:-1]
        b0 = [m.bias.detach().clone() for m in watched]
        losses = {b: _train(models[b], ds, steps) for b in models}
        moved = max((m.bias.detach() - b).abs().max().item() for m, b in zip(watched, b0, strict=True))
        same = max(abs(a - b) for a, b in zip(losses[True], losses[False], strict=True)) < 1e-3
        return {"loss_with_bias": losses[True], "loss_without_bias": losses[False], "bias_moved": moved,
                "redundant": same}  # fmt: skip

    return experiment


def _train(model, ds, steps):
    from bncourse.data import batch_indices, flat_images

    x, y = flat_images(ds.x_train), torch.as_tensor(ds.y_train)
    opt, losses = torch.optim.SGD(model.parameters(), lr=0.5), []
    for idx in batch_indices(len(x), 60, steps, data_seed=0):
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def bias_result(fashion):
    return _bias_experiment(fashion)()


def test_bias_reference_and_alternative_pass(fashion, bias_result, capsys):
    C.check_bias_before_bn(lambda: bias_result, fashion)
    # an alternative: the package's run, numpy arrays, a numpy bool
    alt = {"loss_with_bias": np.array(bias_run(True, BIAS_STEPS, fashion)),
           "loss_without_bias": np.array(bias_run(False, BIAS_STEPS, fashion)), "bias_moved": np.float32(0.0),
           "redundant": np.bool_(True)}  # fmt: skip
    C.check_bias_before_bn(lambda: alt, fashion)
    assert capsys.readouterr().out.count("agree with the checker's") == 2


@pytest.mark.parametrize(
    "change, hint",
    [
        (lambda r: r | {"redundant": False}, "does not follow from your curves"),
        (lambda r: r | {"bias_moved": 0.3}, "output layer's bias"),
        (lambda r: r | {"loss_with_bias": [2.3] * BIAS_STEPS, "loss_without_bias": [2.3] * BIAS_STEPS},
         "disagrees with the checker's own measurement"),
        (lambda r: r | {"loss_without_bias": r["loss_without_bias"][:5] + [2.0] * (BIAS_STEPS - 5),
                        "redundant": False}, "differ by up to"),
        (lambda r: r | {"redundant": "yes"}, "True or False"),
        (lambda r: r | {"loss_with_bias": r["loss_with_bias"][:50]}, "shape"),
    ],
)  # fmt: skip
def test_bias_wrong_or_made_up_measurements_fail(fashion, bias_result, change, hint):
    _fails(C.check_bias_before_bn, lambda: change(bias_result), fashion, match=hint)


def test_bias_mistakes_in_the_experiment_fail(fashion):
    _fails(C.check_bias_before_bn, _bias_experiment(fashion, output_bias_moved=True), fashion, match="output layer")
    _fails(C.check_bias_before_bn, _bias_experiment(fashion, remove_output_bias=True), fashion,
           match="disagrees|differ")  # fmt: skip

    def stub():
        raise NotImplementedError("write your solution here")

    _fails(C.check_bias_before_bn, stub, fashion, match="not filled in yet")


def _sampled(grads, rng, replace_swapped=False, per_coordinate=False, one_example=False, law="(n - N)/(n - 1)"):
    """The page's solution, or one of its mistakes."""
    n, sizes, full = len(grads), [1, 2, 5, 8, 10], grads.mean(axis=0)
    var = {True: [], False: []}
    for replace in (True, False):
        for size in sizes:
            idx = np.array([rng.choice(n, size, replace=replace ^ replace_swapped) for _ in range(4000)])
            g = grads[idx[:, 0]] if one_example else grads[idx].mean(axis=1)
            sq = ((g - full) ** 2).mean(axis=1) if per_coordinate else ((g - full) ** 2).sum(axis=1)
            var[replace].append(sq.mean())
    return {"batch_size": sizes, "with_replacement": var[True], "without_replacement": var[False], "law": law}


def _sampled_vectorised(grads, rng):
    """A correct alternative: whole arrays of draws (integers with replacement, a random permutation's first N
    without), float32 arrays, a different number of draws, the law with other spacing."""
    n, full, out = len(grads), grads.mean(axis=0), {}
    for size in SAMPLED_SIZES:
        with_r = rng.integers(0, n, (6000, size))
        without = np.argsort(rng.random((6000, n)), axis=1)[:, :size]
        for key, idx in (("with_replacement", with_r), ("without_replacement", without)):
            out.setdefault(key, []).append(np.float32(((grads[idx].mean(axis=1) - full) ** 2).sum(axis=1).mean()))
    return {"batch_size": np.array(SAMPLED_SIZES), **{k: np.array(v) for k, v in out.items()}, "law": "(n-N)/(n-1)"}


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_sampled_variance_reference_and_alternative_pass(seed, capsys):
    C.check_sampled_variance(lambda g, rng: _sampled(g, np.random.default_rng(seed)))
    C.check_sampled_variance(lambda g, rng: _sampled_vectorised(g, np.random.default_rng(seed)))
    assert capsys.readouterr().out.count("within 10% of the exact values") == 2


def _typed_formula(grads, rng):
    n, sizes = len(grads), np.array([1, 2, 5, 8, 10])
    tr = ((grads - grads.mean(axis=0)) ** 2).sum() / n
    without = tr / sizes * (n - sizes) / (n - 1)
    law = "(n - N)/(n - 1)"
    return {"batch_size": sizes, "with_replacement": tr / sizes, "without_replacement": without, "law": law}


@pytest.mark.parametrize(
    "experiment, hint",
    [
        (_typed_formula, "computed, not measured"),
        (lambda g, rng: _sampled(g, rng, replace_swapped=True), "other sampling scheme"),
        (lambda g, rng: _sampled(g, rng, per_coordinate=True), "times too small"),
        (lambda g, rng: _sampled(g, rng, one_example=True), "do not change with N"),
        (lambda g, rng: _sampled(g, rng, law="1"), "they follow '(n - N)/(n - 1)'"),
        (lambda g, rng: _sampled(g, rng, law="N/n"), "does not follow from your ratios"),
        (lambda g, rng: _sampled(g, rng) | {"with_replacement": [2.0, 1.0, 0.5, 0.3, 0.2]}, "disagrees"),
        (lambda g, rng: _sampled(g, rng) | {"batch_size": [1, 2, 4, 8, 10]}, "stated batch sizes"),
        (lambda g, rng: _sampled(g, rng) | {"law": None}, "not filled in yet"),
        (lambda g, rng: 0.5, "must return a dict"),
    ],
)
def test_sampled_variance_mistakes_fail(experiment, hint):
    _fails(C.check_sampled_variance, experiment, match=hint)


def test_sampled_variance_stub_fails():
    def stub(grads, rng):
        raise NotImplementedError("write your solution here")

    _fails(C.check_sampled_variance, stub, match="not filled in yet")
