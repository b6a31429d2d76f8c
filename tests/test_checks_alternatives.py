"""Chapter 7's thinking exercises: the predicted set of layers that ignore the batch, and the open experiment on
the largest stable learning rate with and without normalisation."""

import copy

import numpy as np
import pytest
import torch

from bncourse.checks import alternatives as checks

RUN = {
    "diff": {"bn_train": 2.5, "bn_eval": 0.0, "ln": 0.0, "gn": 1e-7, "in": 0.0},
    "independent": ["bn_eval", "ln", "gn", "in"],
}


def test_batch_of_one_run_measures_each_layer():
    run = checks.batch_of_one_run(batch_size=8)
    assert set(run["diff"]) == set(checks.BATCH_NORMS)
    assert run["independent"] == ["bn_eval", "ln", "gn", "in"] and run["diff"]["bn_train"] > 0.1


@pytest.mark.parametrize(
    "right", [{"bn_eval", "ln", "gn", "in"}, ["in", "gn", "ln", "bn_eval"], ("ln", "gn", "in", "bn_eval")]
)
def test_right_set_passes_and_explains(right, capsys):
    checks.check_batch_of_one(right, RUN)
    assert "running statistics" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        ({"ln", "gn", "in"}, "BN in eval mode uses its running statistics"),
        ({"bn_train", "bn_eval", "ln", "gn", "in"}, "it silently computes something else"),
        ({"bn_eval", "ln"}, "Group Norm normalises each example's group"),
        ({"bn_eval", "ln", "gn"}, "Instance Norm normalises each example's channel"),
        (None, "not filled in yet"),
        (..., "not filled in yet"),
        ("ln", "put the string in braces"),
        ({"ln", "layernorm"}, "use names from"),
    ],
)
def test_wrong_set_names_the_misconception(wrong, hint):
    with pytest.raises(AssertionError, match="check_batch_of_one") as e:
        checks.check_batch_of_one(wrong, RUN)
    assert hint in str(e.value)


def _final_loss(make_model, x, y, norm, lr, steps, momentum=0.0, eval_mode=False, model=None):
    ce = torch.nn.functional.cross_entropy
    model = model or make_model(norm)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    for _ in range(steps):
        opt.zero_grad()
        ce(model(x), y).backward()
        opt.step()
    model.train(not eval_mode)
    with torch.no_grad():
        return ce(model(x), y).item()


def _result(loss, lrs):
    stable = {n: max(r for r, v in zip(lrs, loss[n], strict=True) if v < np.log(10)) for n in loss}
    return {"loss": loss, "max_stable": stable, "best": max(stable, key=stable.get)}


def _reference(make_model, x, y, lrs, steps):
    return _result({n: [_final_loss(make_model, x, y, n, lr, steps) for lr in lrs] for n in checks.LR_NORMS}, lrs)


@pytest.fixture(scope="module")
def reference():
    return _reference(*checks.lr_setup(), checks.LR_GRID, checks.LR_STEPS)


def test_reference_finds_the_ordering(reference, capsys):
    assert reference["max_stable"] == {"none": 0.27, "bn": 2.43, "ln": 0.81} and reference["best"] == "bn"
    checks.check_lr_experiment(lambda *a: copy.deepcopy(reference))
    assert "measured on the stated configuration" in capsys.readouterr().out


def test_correct_alternative_passes(capsys):
    """Manual parameter updates, numpy losses with inf for a diverged run, max_stable by a loop."""

    def manual(make_model, x, y, lrs, steps):
        loss, stable = {}, {}
        for norm in ("ln", "bn", "none"):
            out = []
            for lr in lrs:
                m = make_model(norm)
                for _ in range(steps):
                    m.zero_grad()
                    torch.nn.functional.cross_entropy(m(x), y).backward()
                    with torch.no_grad():
                        for p in m.parameters():
                            p.add_(p.grad, alpha=-lr)
                v = torch.nn.functional.cross_entropy(m(x), y).item()
                out.append(v if v < 100 else np.inf)
            loss[norm] = np.array(out)
            stable[norm] = [lr for lr, v in zip(lrs, out, strict=True) if np.isfinite(v) and v < np.log(10)][-1]
        return {"loss": loss, "max_stable": stable, "best": "bn"}

    checks.check_lr_experiment(manual)
    assert "Largest stable rate: none 0.27, bn 2.43, ln 0.81" in capsys.readouterr().out


def _patched_points(reference, norm, fn):
    """The reference with the checked points of ``norm`` (the smallest rate and its largest stable one) replaced by
    ``fn(make_model, x, y, lr)``: a wrong experiment costs only those runs."""
    make_model, x, y = checks.lr_setup()
    r = copy.deepcopy(reference)
    for lr in (checks.LR_GRID[0], r["max_stable"][norm]):
        r["loss"][norm][checks.LR_GRID.index(lr)] = fn(make_model, x, y, lr)
    return lambda *a: r


WRONG = {
    "momentum": ("none", lambda m, x, y, lr: _final_loss(m, x, y, "none", lr, 20, momentum=0.9), "no momentum"),
    "bn_eval_mode": ("bn", lambda m, x, y, lr: _final_loss(m, x, y, "bn", lr, 20, eval_mode=True), "training mode"),
    "too_few_steps": ("ln", lambda m, x, y, lr: _final_loss(m, x, y, "ln", lr, 10), "stated configuration"),
    "made_up": ("ln", lambda m, x, y, lr: 0.5, "stated configuration"),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_wrong_measurement_is_named(name, reference):
    norm, fn, hint = WRONG[name]
    with pytest.raises(AssertionError, match="check_lr_experiment") as e:
        checks.check_lr_experiment(_patched_points(reference, norm, fn))
    assert hint in str(e.value)


def _edit(reference, fn):
    r = copy.deepcopy(reference)
    fn(r)
    return lambda *a: r


CONCLUSIONS = {
    "max_stable_off": (lambda r: r["max_stable"].update(ln=2.43), 'max_stable["ln"] = 2.43 does not follow'),
    "best_off": (lambda r: r.update(best="ln"), 'best = "ln" does not follow'),
    "best_unknown": (lambda r: r.update(best="BatchNorm"), "best must be one of"),
    "missing_norm": (lambda r: r["loss"].pop("ln"), "one entry per norm"),
    "short_losses": (lambda r: r["loss"].update(bn=r["loss"]["bn"][:3]), "wrong shape"),
    "no_stable_rate": (lambda r: r["loss"].update(none=[np.nan] * 6), "no stable rate for none"),
    "missing_key": (lambda r: r.pop("best"), "return a dict with loss, max_stable and best"),
}


@pytest.mark.parametrize("name", list(CONCLUSIONS))
def test_conclusion_must_follow_from_the_numbers(name, reference):
    fn, hint = CONCLUSIONS[name]
    with pytest.raises(AssertionError, match="check_lr_experiment") as e:
        checks.check_lr_experiment(_edit(reference, fn))
    assert hint in str(e.value)


def test_stub_experiment_is_not_filled_in():
    def stub(make_model, x, y, lrs, steps):
        raise NotImplementedError("write your solution here")

    with pytest.raises(AssertionError, match="not filled in yet"):
        checks.check_lr_experiment(stub)


def test_lr_setup_models_are_fresh_and_equal():
    make_model, x, y = checks.lr_setup()
    a, b = make_model("none"), make_model("ln")
    assert torch.equal(a.net[0].weight, b.net[0].weight) and a.net[0].weight is not b.net[0].weight
    assert x.shape == (256, 784) and y.shape == (256,)
    with pytest.raises(ValueError, match="norm must be one of"):
        make_model("gn")
