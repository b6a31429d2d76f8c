"""Chapter 4.2: the residual MLP, the training recipes, the experiments and their plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from bncourse.experiments import bn_training as exp  # noqa: E402
from bncourse.models import MLP, ResidualBlock, ResidualMLP  # noqa: E402
from bncourse.norms import bn_layers, train_bn_frozen  # noqa: E402
from bncourse.plots import bn_training as plots  # noqa: E402
from bncourse.result import Result  # noqa: E402
from bncourse.training.recipes import NORM_TYPES, decay_param_groups  # noqa: E402


def _block_reference(block: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    """The block's formula written out with batch statistics (biased variance), float64."""

    def bn(z, layer):
        mu, var = z.mean(0), z.var(0, unbiased=False)
        return layer.weight * (z - mu) / torch.sqrt(var + layer.eps) + layer.bias

    h = torch.relu(bn(x @ block.fc1.weight.T, block.bn1))
    return x + bn(h @ block.fc2.weight.T, block.bn2)


@pytest.mark.parametrize("zero_init", [False, True])
def test_residual_block_matches_its_formula(zero_init):
    block = ResidualBlock(5, zero_init=zero_init).double().train()
    x = torch.randn(16, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(block(x), _block_reference(block, x), rtol=1e-12, atol=1e-12)
    # a known-wrong reference (no skip connection) must not match
    assert not torch.allclose(block(x), _block_reference(block, x) - x)


def test_zero_init_block_is_identity_and_gamma_one_is_not():
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ResidualBlock(8, zero_init=True).train()(x), x)
    assert (ResidualBlock(8, zero_init=False).train()(x) - x).abs().max() > 0.1


def test_residual_mlp_shapes_seed_and_errors():
    a, b = ResidualMLP(64, 16, 3, 10, seed=3), ResidualMLP(64, 16, 3, 10, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = ResidualMLP(64, 16, 3, 10, seed=4)
    assert not torch.equal(a.stem[0].weight, c.stem[0].weight)
    assert a(torch.randn(4, 8, 8)).shape == (4, 10)
    assert all(blk.bn2.weight.abs().sum() == 0 for blk in ResidualMLP(64, 16, 2, zero_init=True).blocks)
    with pytest.raises(ValueError, match="blocks"):
        ResidualMLP(blocks=-1)


def test_decay_param_groups_split_and_all():
    model = ResidualMLP(64, 16, 2, 10)
    groups = decay_param_groups(model, 1e-3)
    assert [g["weight_decay"] for g in groups] == [1e-3, 0.0]
    decayed, free = ({id(p) for p in g["params"]} for g in groups)
    norm_params = {id(p) for m in model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters()}
    assert norm_params and norm_params <= free and not norm_params & decayed
    assert id(model.head.bias) in free and id(model.head.weight) in decayed
    assert len(decayed) + len(free) == len(list(model.parameters()))
    (everything,) = decay_param_groups(model, 1e-3, decay_norm=True)
    assert len(everything["params"]) == len(list(model.parameters()))
    # a model without normalisation: only the biases escape the decay
    plain = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert [len(g["params"]) for g in decay_param_groups(plain, 0.1)] == [2, 2]
    torch.optim.SGD(groups, lr=0.1)  # what the groups are for
    with pytest.raises(ValueError, match="weight_decay"):
        decay_param_groups(model, -1.0)


def test_decay_norm_shrinks_gamma_and_split_does_not():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(4)
    for decay_norm, shrinks in ((True, True), (False, False)):
        model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4))
        opt = torch.optim.SGD(decay_param_groups(model, 0.5, decay_norm=decay_norm), lr=0.1)
        opt.zero_grad()
        model(torch.randn(8, 3)).sum().backward()  # sum: zero gradient for gamma after BN
        opt.step()
        assert (model[1].weight.detach().norm() < bn.weight.detach().norm() - 1e-3) == shrinks


def test_train_bn_frozen_keeps_running_stats_and_trains_gamma():
    model = train_bn_frozen(ResidualMLP(8, 6, 1, 3))
    bns = bn_layers(model)
    assert bns and all(not bn.training for bn in bns) and model.head.training
    before = [bn.running_mean.clone() for bn in bns]
    F.cross_entropy(model(torch.randn(10, 8) * 3 + 1), torch.randint(0, 3, (10,))).backward()
    assert all(torch.equal(b, bn.running_mean) for b, bn in zip(before, bns, strict=True))
    assert bns[0].weight.grad is not None and bns[0].weight.grad.abs().sum() > 0
    model.train()  # undoes it, as the docstring warns
    model(torch.randn(10, 8) * 3 + 1)
    assert not torch.equal(before[0], bns[0].running_mean)


def test_digits_tensors_range():
    x, y, xt, yt = exp.digits_tensors()
    assert x.shape[1] == 64 and float(x.max()) == 1.0 and float(x.min()) == 0.0
    assert len(x) == len(y) and len(xt) == len(yt) and int(y.max()) == 9


def test_scale_invariance_with_bn_and_without():
    d = exp.scale_invariance(scales=(0.5, 3.0)).data
    assert d["loss_change"].max() < 1e-9 and np.allclose(d["grad_ratio"], 1, atol=1e-6)
    assert abs(d["cosine"]) < 1e-9
    bad = exp.scale_invariance(scales=(0.5, 3.0), norm=None).data  # no BN: not invariant
    assert bad["loss_change"].max() > 1e-4 and abs(bad["cosine"]) > 1e-4
    assert not np.allclose(bad["grad_ratio"], 1, atol=1e-2)
    eps = exp.scale_invariance(scales=(0.1,), eps=1e-3).data  # a large eps breaks it
    assert eps["loss_change"][0] > 1e-3
    assert isinstance(MLP((64, 32, 32, 10), norm="bn"), nn.Module)


def test_weight_decay_runs_small():
    r = exp.weight_decay_runs(weight_decay=0.05, steps=40, width=16)
    d = r.data
    assert d["w_norm"].shape == (3, 40) and d["test_acc"].shape == (3,)
    np.testing.assert_allclose(d["eff_lr"], r.config["lr"] / d["w_norm"] ** 2)
    assert d["gamma_norm"][1, -1] < d["gamma_norm"][2, -1] < d["gamma_norm"][0, -1] + 0.1
    assert d["w_norm"][0, -1] > d["w_norm"][2, -1]  # no decay: the norm before BN grows more
    fig = plots.plot_weight_decay(r)
    assert all(ax.get_xlabel() and ax.get_ylabel() and ax.get_title() for ax in fig.axes)
    plt.close(fig)
    with pytest.raises(ValueError, match="weight_decay_runs"):
        plots.plot_weight_decay(Result("zero_init_runs", {}, {}))


def test_zero_init_runs_small():
    r = exp.zero_init_runs(blocks=3, width=16, steps=5, seeds=(0,))
    d = r.data
    assert d["loss"].shape == (2, 1, 5) and np.isfinite(d["loss"]).all()
    assert d["identity_err"][1] == 0.0 and d["identity_err"][0] > 0.1
    assert d["out_std"][0] > d["out_std"][1]
    fig = plots.plot_zero_init(r)
    assert fig.axes[0].get_ylabel() and fig.axes[0].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="zero_init_runs"):
        plots.plot_zero_init(Result("weight_decay_runs", {}, {}))


def test_ddp_batch_slices_differ():
    x, y = exp.ddp_batch(8, 0, 2)
    assert x.dtype == torch.float64 and x.shape == (8, 4) and y.shape == (8,)
    assert x[4:].mean() - x[:4].mean() > 1.0
    assert torch.equal(exp.ddp_batch(8, 1, 2)[0], exp.ddp_batch(8, 1, 2)[0])
    assert exp.ddp_model()[0].weight.dtype == torch.float64


def test_ddp_buffers_demo_two_processes():
    r = exp.ddp_buffers_demo(world_size=2, per_rank=4, steps=2)
    d = r.data
    assert d["entry_spread"].shape == (2, 2)
    assert d["entry_spread"][0, 1] > 1e-3 and d["entry_spread"][1].max() == 0.0
    assert d["sync_diff"].max() < 1e-12 < d["local_diff"][0]
    assert r.meta["converted_type"] == "SyncBatchNorm"
    forked = exp.ddp_buffers_demo(world_size=2, per_rank=4, steps=2, start_method="fork")
    for key in ("entry_spread", "final_spread", "running_mean"):  # the start method changes nothing
        np.testing.assert_array_equal(forked.data[key], d[key])
    with pytest.raises(ValueError, match="world_size"):
        exp.ddp_buffers_demo(world_size=1)


def test_frozen_bn_runs_small_and_errors():
    r = exp.frozen_bn_runs(steps=60, frozen_steps=20, lr=0.1, width=16, blocks=1, seeds=(0,))
    d = r.data
    assert d["test_acc"].shape == (len(exp.FROZEN_SETUPS), 1) and d["stat_gap"].shape == (1,)
    assert ((d["test_acc"] >= 0) & (d["test_acc"] <= 1)).all() and d["stat_gap"][0] > 0
    assert d["train_acc"][1, 0] > 0.3  # the recalibrated model has learned something
    with pytest.raises(ValueError, match="frozen_steps"):
        exp.frozen_bn_runs(steps=10, frozen_steps=10)
