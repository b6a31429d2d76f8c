"""BN in practice (chapter 4's page ``04_bn_practice``): frozen BN, porting, folding into the next layer,
and the page's experiments and figures. Comparisons with PyTorch in float64."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

from bncourse.norms import (
    BNFrozenTrainMixin,
    FrozenBatchNorm,
    FrozenBatchNorm2d,
    GradSwitchBatchNorm,
    PortedBatchNorm,
    bn_from_keras,
    convert_momentum,
    eps_scale_error,
    fold_bn_into_next,
    freeze_bn,
    train_bn_frozen,
)

matplotlib.use("Agg")
D = torch.float64


def _trained_bn(c: int = 3, dim: int = 2, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    bn = (nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d)(c, dtype=D)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g, dtype=D))
        bn.running_var.copy_(torch.rand(c, generator=g, dtype=D) + 0.1)
        bn.weight.copy_(torch.randn(c, generator=g, dtype=D))
        bn.bias.copy_(torch.randn(c, generator=g, dtype=D))
    return bn


# ------------------------------------------------------------------------------------------------ frozen


def test_frozen_bn_is_torchvision_formula_and_eval_bn():
    bn = _trained_bn()
    frozen = FrozenBatchNorm2d.from_bn(bn)
    x = torch.randn(4, 3, 5, 5, dtype=D)
    view = (1, -1, 1, 1)
    expected = (x - bn.running_mean.reshape(view)) / torch.sqrt(bn.running_var.reshape(view) + bn.eps)
    expected = expected * bn.weight.reshape(view) + bn.bias.reshape(view)
    for mode in (True, False):  # the same in both modes
        assert torch.allclose(frozen.train(mode)(x), expected, atol=1e-12, rtol=0)
    assert torch.allclose(bn.eval()(x), expected, atol=1e-12, rtol=0)
    # a known-wrong formula (no eps) differs measurably for a small variance
    bn.running_var.fill_(1e-4)
    no_eps = (x - bn.running_mean.reshape(view)) / torch.sqrt(bn.running_var.reshape(view))
    no_eps = no_eps * bn.weight.reshape(view) + bn.bias.reshape(view)
    assert not torch.allclose(FrozenBatchNorm2d.from_bn(bn)(x), no_eps, atol=1e-6)


def test_frozen_bn_has_no_parameters_loads_bn_state_and_checks_inputs():
    bn = _trained_bn(dim=1)
    frozen = FrozenBatchNorm(3)
    assert list(frozen.parameters()) == []
    state = {k: v for k, v in bn.state_dict().items() if k != "num_batches_tracked"}
    frozen.load_state_dict({k: v.float() for k, v in state.items()})
    assert torch.allclose(frozen.running_var, bn.running_var.float())
    with pytest.raises(ValueError, match="4D"):
        FrozenBatchNorm2d(3)(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="expected"):
        FrozenBatchNorm(3)(torch.zeros(2, 4))
    with pytest.raises(TypeError):
        FrozenBatchNorm.from_bn(nn.Linear(3, 3))


def test_model_train_undoes_bn_eval_and_the_fixes_keep_it():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU())
    model[1].eval()
    model.train()
    assert model[1].training  # the trap
    train_bn_frozen(model)
    assert model.training and not model[1].training
    x = torch.randn(8, 4)
    before = model[1].running_mean.clone()
    model(x)
    assert torch.equal(model[1].running_mean, before)
    frozen = freeze_bn(model)
    assert isinstance(frozen[1], FrozenBatchNorm) and frozen.train().training
    y1 = frozen(x)
    assert torch.equal(frozen(x[:2]), y1[:2])  # no batch dependence in train mode
    with pytest.raises(ValueError, match="no BatchNorm"):
        freeze_bn(nn.Linear(2, 2))


def test_bn_frozen_train_mixin_overrides_train():
    from bncourse.models import MLP

    class FineTuned(BNFrozenTrainMixin, MLP):
        pass

    net = FineTuned((4, 3, 2), norm="bn")
    assert net.train() is net and net.training and net.net[0].training
    assert not net.net[1].training  # BN stays in eval mode
    assert not any(m.training for m in net.eval().modules())
    plain = MLP((4, 3, 2), norm="bn").train()
    assert plain.net[1].training  # without the mixin: the trap


# ------------------------------------------------------------------------------------------------ porting


def test_convert_momentum():
    assert convert_momentum(0.99) == pytest.approx(0.01)
    assert convert_momentum(0.1) == pytest.approx(0.9)
    assert convert_momentum(convert_momentum(0.3)) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        convert_momentum(1.5)


def test_bn_from_keras_matches_the_keras_formula_in_float64():
    g = np.random.default_rng(0)
    gamma, beta, mean = g.normal(size=4), g.normal(size=4), g.normal(size=4)
    var = np.array([1e-5, 1e-4, 1e-2, 1.0])
    x = g.normal(size=(6, 4))
    keras = gamma * (x - mean) / np.sqrt(var + 1e-3) + beta  # Keras' inference formula, epsilon 1e-3
    bn = bn_from_keras(gamma, beta, mean, var)
    assert bn.eps == 1e-3 and bn.momentum == pytest.approx(0.01) and not bn.training
    out = bn(torch.as_tensor(x)).detach().numpy()
    assert np.abs(out - keras).max() < 1e-12
    naive = nn.BatchNorm1d(4, dtype=D).eval()  # copying the arrays but keeping PyTorch's eps: wrong
    naive.load_state_dict({k: v for k, v in bn.state_dict().items()})
    naive.eps = 1e-5
    assert np.abs(naive(torch.as_tensor(x)).detach().numpy() - keras).max() > 1e-2
    with pytest.raises(ValueError, match="arrays"):
        bn_from_keras(gamma, beta, mean, var[:3])


def test_eps_scale_error():
    err = eps_scale_error([0.0, 1e-3, 1e3])
    assert err[0] == pytest.approx(9.0)
    assert err[1] == pytest.approx(np.sqrt(2e-3 / 1.01e-3) - 1)
    assert abs(err[2]) < 1e-6
    assert eps_scale_error([0.5], 1e-3, 1e-3)[0] == 0.0
    with pytest.raises(ValueError):
        eps_scale_error([-1.0])


def test_ported_bn_equals_nn_batchnorm1d_and_grad_switch_does_not():
    torch.manual_seed(0)
    ref, ported, switch = nn.BatchNorm1d(3, dtype=D), PortedBatchNorm(3).double(), GradSwitchBatchNorm(3).double()
    for _ in range(5):
        x = torch.randn(8, 3, dtype=D) * 2 + 1
        assert torch.allclose(ported(x), ref(x), atol=1e-12)
        switch(x)
    assert torch.allclose(ported.moving_var, ref.running_var, atol=1e-12)
    assert torch.allclose(ported.moving_mean, ref.running_mean, atol=1e-12)
    assert torch.allclose(switch.moving_mean, ref.running_mean, atol=1e-12)  # 0.9 old = 0.1 new for the mean
    assert not torch.allclose(switch.moving_var, ref.running_var, atol=1e-3)  # biased vs unbiased
    x = torch.randn(4, 3, dtype=D)
    ported.eval(), ref.eval(), switch.eval()
    assert torch.allclose(ported(x), ref(x), atol=1e-12)
    assert not torch.allclose(switch(x), ref(x), atol=1e-3)  # eval() ignored: batch statistics with grad on
    with torch.no_grad():  # under no_grad: the moving statistics, whatever the mode
        moving = (x - switch.moving_mean) / torch.sqrt(switch.moving_var + switch.eps) * switch.weight + switch.bias
        assert torch.allclose(switch.train()(x), moving, atol=1e-12)
    one = torch.randn(1, 3, dtype=D)
    assert torch.allclose(switch(one), switch.bias.detach().expand(1, 3), atol=1e-6)  # a batch of 1 -> beta
    with pytest.raises(ValueError, match="2 examples"):
        ported.train()(one)


# ------------------------------------------------------------------------------------------------ folding


def test_fold_bn_into_next_exact_without_padding_wrong_at_the_border_with_it():
    torch.manual_seed(0)
    bn = _trained_bn(3).eval()
    conv = nn.Conv2d(3, 4, 3, dtype=D)
    x = torch.randn(2, 3, 6, 6, dtype=D)
    assert torch.allclose(fold_bn_into_next(bn, conv)(x), conv(bn(x)), atol=1e-12)
    padded = nn.Conv2d(3, 4, 3, padding=1, dtype=D)
    with pytest.raises(ValueError, match="borders"):
        fold_bn_into_next(bn, padded)
    err = (fold_bn_into_next(bn, padded, allow_padding=True)(x) - padded(bn(x))).abs().amax((0, 1))
    assert err[1:-1, 1:-1].max() < 1e-12 and err[0].min() > 1e-6 and err[:, -1].min() > 1e-6
    lin = nn.Linear(3, 2, dtype=D)
    bn1 = _trained_bn(3, dim=1).eval()
    x1 = torch.randn(5, 3, dtype=D)
    assert torch.allclose(fold_bn_into_next(bn1, lin)(x1), lin(bn1(x1)), atol=1e-12)
    with pytest.raises(ValueError, match="cannot precede"):
        fold_bn_into_next(bn1, nn.Linear(4, 2))
    with pytest.raises(TypeError):
        fold_bn_into_next(bn1, nn.ReLU())


# ------------------------------------------------------------------------------------------------ models


def test_dropout_bn_mlp_places_dropout_before_bn_or_after_the_last_one():
    from bncourse.models import dropout_bn_mlp

    before = dropout_bn_mlp((8, 6, 6, 6, 3), p=0.5, placement="before_bn", seed=0)
    after = dropout_bn_mlp((8, 6, 6, 6, 3), p=0.5, placement="after_last_bn", seed=0)
    kinds = [type(m).__name__ for m in before]
    assert kinds.count("Dropout") == 3 and kinds.index("Dropout") < len(kinds) - 4
    assert [type(m).__name__ for m in after].count("Dropout") == 1
    assert isinstance(after[-2], nn.Dropout) and isinstance(after[-3], nn.ReLU)
    assert torch.equal(before[0].weight, after[0].weight)
    with pytest.raises(ValueError, match="placement"):
        dropout_bn_mlp(placement="after_bn")
    with pytest.raises(ValueError, match="rate"):
        dropout_bn_mlp(p=1.0)


def test_grad_switch_mlp_uses_the_requested_layer():
    from bncourse.models import grad_switch_mlp

    assert any(type(m) is GradSwitchBatchNorm for m in grad_switch_mlp((4, 5, 3)))
    assert any(type(m) is PortedBatchNorm for m in grad_switch_mlp((4, 5, 3), ported=True))


# ------------------------------------------------------------------------------------------------ experiments


def test_load_flat_and_sgd_steps_keep_frozen_statistics():
    from bncourse.experiments.bn_practice import load_flat
    from bncourse.models import MLP
    from bncourse.training.steps import sgd_steps

    x_tr, y_tr, x_te, y_te = load_flat("digits")
    assert x_tr.shape[1] == 64 and float(x_tr.max()) == 1.0 and len(x_te) == len(y_te)
    model = MLP((64, 16, 10), norm="bn", activation="relu", init="default")
    before = model.net[1].running_mean.clone()
    sgd_steps(model, x_tr, y_tr, 5, 8, 0.1, set_mode=train_bn_frozen)
    assert torch.equal(model.net[1].running_mean, before)
    sgd_steps(model, x_tr, y_tr, 5, 8, 0.1)  # the default model.train(): statistics move
    assert not torch.equal(model.net[1].running_mean, before)


def test_finetune_trap_breaks_and_the_fixes_hold():
    from bncourse.experiments.bn_practice import finetune_trap

    r = finetune_trap(pre_steps=200)
    acc = r.data["acc"]
    assert r.data["bn_training"]
    assert min(acc[1], acc[2]) > acc[0] + 0.2 and min(acc[1], acc[2]) > r.data["pre_acc"] - 0.02
    assert r.data["var_change"][1] == 0 and r.data["var_change"][2] == 0 and r.data["var_change"][0] > 0.1


def test_porting_experiments():
    from bncourse.experiments.bn_practice import eps_port, grad_switch_port, momentum_port

    r = eps_port()
    assert np.allclose(r.data["naive_err"], r.data["predicted"], rtol=1e-6)
    assert r.data["ported_err"].max() < 1e-14 and r.data["naive_err"][0] > 8
    m = momentum_port()
    assert m.data["ported_diff"] < 1e-12 and m.data["naive_diff"] > 0.5
    g = grad_switch_port(num_steps=100)
    acc = g.data["acc"]
    assert acc[0, 0] < 0.3 < 0.8 < acc[0, 1] and np.ptp(acc[1]) == 0
    assert g.data["port_max_diff"] < 1e-12
    assert g.data["switch_var_ratio"] == pytest.approx((g.data["m"] - 1) / g.data["m"], abs=0.01)


def test_dropout_shift_measured_matches_predicted_and_recalibration_removes_it():
    from bncourse.experiments.bn_practice import dropout_shift

    r = dropout_shift(num_steps=150, seeds=(0,))
    d = r.data
    assert d["var_ratio"].shape == (1, 2) and d["acc"].shape == (1, 3)
    assert (d["var_ratio"] > 1.15).all() and (d["running_ratio"] > 1.1).all()
    assert np.allclose(d["predicted_ratio"], d["var_ratio"], rtol=0.1)
    assert np.allclose(d["recal_ratio"], 1.0, atol=0.05)


def test_folding_experiments():
    from bncourse.experiments.bn_practice import fold_crosscheck, fold_next_error

    c = fold_crosscheck()
    assert max(c.data.values()) < 1e-12
    f = fold_next_error()
    assert f.data["interior_max"] < 1e-12 and f.data["valid_max"] < 1e-12 and f.data["border_min"] > 1e-3
    assert f.data["err_padded"].shape == (12, 12) and f.data["err_valid"].shape == (10, 10)


# ------------------------------------------------------------------------------------------------ plots


def test_plots_draw_their_result_and_refuse_others():
    import matplotlib.pyplot as plt

    from bncourse.experiments import bn_practice as exp
    from bncourse.plots import bn_practice as plots
    from bncourse.result import Result

    fake = Result(
        "finetune_trap", {"regimes": ["a", "b"], "ft_batch": 2}, {"acc": np.array([0.2, 0.9]), "pre_acc": 0.9}
    )
    drop = {k: np.ones((2, 2)) for k in ("var_ratio", "predicted_ratio", "running_ratio", "recal_ratio")}
    cases = [
        (plots.plot_finetune_trap, fake),
        (plots.plot_eps_port, exp.eps_port()),
        (plots.plot_momentum_port, exp.momentum_port(num_batches=20)),
        (plots.plot_dropout_shift, Result("dropout_shift", {"p": 0.5}, drop)),
        (plots.plot_fold_next, exp.fold_next_error()),
    ]
    for plot, result in cases:
        fig = plot(result)
        ax = fig.axes[0]
        assert ax.get_xlabel() and ax.get_ylabel() and (ax.get_title() or fig._suptitle)
        plt.close(fig)
        with pytest.raises(ValueError, match="draws"):
            plot(Result("other", {}, {}))
