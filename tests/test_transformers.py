"""Chapter 7's "Normalisation in transformers": token BN with and without a padding mask, the tiny transformer
(pre-LN / post-LN, Layer Norm / RMSNorm), the page's experiments and figures."""

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from bncourse.experiments import transformers as exp_tr
from bncourse.models.transformer import SelfAttention, TinyTransformer, TransformerBlock, token_norm
from bncourse.norms.group import LayerNorm, RMSNorm
from bncourse.norms.masked import masked_batch_stats, masked_batchnorm
from bncourse.plots import transformers as plot_tr
from bncourse.result import Result

f64 = torch.float64


def _padded(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, 4, generator=gen, dtype=f64) + 1.0
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    return x * mask[..., None], mask  # padded positions are zero


def test_unmasked_token_bn_is_batchnorm1d_over_all_positions():
    x, _ = _padded()
    bn = nn.BatchNorm1d(4, affine=False).double().train()
    ref = bn(x.reshape(-1, 4)).reshape(x.shape)
    assert torch.allclose(masked_batchnorm(x), ref, atol=1e-12)
    mean, var = masked_batch_stats(x)
    assert torch.allclose(mean, x.reshape(-1, 4).mean(0)) and torch.allclose(var, x.reshape(-1, 4).var(0, False))


def test_masked_token_bn_is_batchnorm1d_over_real_tokens_only():
    x, mask = _padded()
    ref = nn.BatchNorm1d(4, affine=False).double().train()(x[mask])
    ours = masked_batchnorm(x, mask)
    assert torch.allclose(ours[mask], ref, atol=1e-12)
    # known-wrong: the statistics over every position (padding included) differ when there is padding
    assert not torch.allclose(masked_batchnorm(x)[mask], ref, atol=1e-3)


def test_masked_token_bn_refuses_bad_input():
    x, mask = _padded()
    with pytest.raises(ValueError, match=r"\(N, T, D\)"):
        masked_batchnorm(x[0])
    with pytest.raises(ValueError, match="mask must be a bool"):
        masked_batchnorm(x, mask.double())
    with pytest.raises(ValueError, match="mask must be a bool"):
        masked_batchnorm(x, mask[:, :3])
    with pytest.raises(ValueError, match="no token"):
        masked_batchnorm(x, torch.zeros_like(mask))


def test_self_attention_matches_torch_multihead_attention_with_padding():
    torch.manual_seed(0)
    ours = SelfAttention(8, 2).double()
    theirs = nn.MultiheadAttention(8, 2, batch_first=True).double()
    with torch.no_grad():
        theirs.in_proj_weight.copy_(ours.qkv.weight)
        theirs.in_proj_bias.copy_(torch.randn(24, dtype=f64))
        ours.qkv.bias.copy_(theirs.in_proj_bias)
        theirs.out_proj.weight.copy_(ours.out.weight)
        theirs.out_proj.bias.copy_(ours.out.bias)
    x = torch.randn(3, 5, 8, dtype=f64)
    _, mask = _padded()
    ref = theirs(x, x, x, key_padding_mask=~mask, need_weights=False)[0]
    assert torch.allclose(ours(x, mask), ref, atol=1e-12)
    assert torch.allclose(ours(x), theirs(x, x, x, need_weights=False)[0], atol=1e-12)
    # known-wrong: ignoring the mask changes the padded sequences' outputs
    assert not torch.allclose(ours(x)[1:], ref[1:], atol=1e-3)


def test_attention_ignores_the_content_of_padded_positions():
    torch.manual_seed(0)
    model = TinyTransformer(10, 6, d_model=8, n_heads=2, d_ff=16, n_layers=2).double()
    tokens = torch.randint(0, 10, (2, 6))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    other = tokens.clone()
    other[1, 3:] = (tokens[1, 3:] + 1) % 10
    a, b = model(tokens, mask), model(other, mask)
    assert torch.allclose(a[1, :3], b[1, :3], atol=1e-12)
    assert not torch.allclose(model(tokens)[1, :3], model(other)[1, :3], atol=1e-6)  # without the mask they mix


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_block_placements_compute_their_formulas(norm):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, dtype=f64)
    outs = {}
    for placement in ("pre", "post"):
        block = TransformerBlock(8, 2, 16, norm, placement).double()
        n1, n2, attn, mlp = block.norm1, block.norm2, block.attn, block.mlp
        if placement == "pre":
            h = x + attn(n1(x))
            expected = h + mlp(n2(h))
        else:
            h = n1(x + attn(x))
            expected = n2(h + mlp(h))
        assert torch.allclose(block(x), expected, atol=1e-12)
        outs[placement] = block(x)
        assert isinstance(n1, LayerNorm if norm == "layer" else RMSNorm)
    # post-LN ends with a norm: each token's output has zero mean and unit variance (Layer Norm, gamma = 1)
    if norm == "layer":
        assert torch.allclose(outs["post"].mean(-1), torch.zeros(2, 5, dtype=f64), atol=1e-10)
        assert not torch.allclose(outs["pre"].mean(-1), torch.zeros(2, 5, dtype=f64), atol=1e-3)


def test_tiny_transformer_shapes_init_and_errors():
    model = TinyTransformer(10, 16, d_model=32, n_heads=4, d_ff=64, n_layers=3, norm="rms", placement="pre")
    assert model(torch.randint(0, 10, (4, 12))).shape == (4, 12, 10)
    assert isinstance(model.final_norm, RMSNorm)
    assert isinstance(TinyTransformer(10, 16, placement="post").final_norm, nn.Identity)
    w = model.blocks[0].mlp[0].weight
    assert w.abs().max() <= math.sqrt(6 / (32 + 64)) and model.blocks[0].mlp[0].bias.abs().max() == 0  # Xavier
    with pytest.raises(ValueError, match="exceed seq_len"):
        model(torch.randint(0, 10, (1, 17)))
    with pytest.raises(ValueError, match="placement"):
        TransformerBlock(8, 2, 16, "layer", "middle")
    with pytest.raises(ValueError, match="norm must be one of"):
        token_norm("batch", 8)
    with pytest.raises(ValueError, match="n_heads must divide"):
        SelfAttention(8, 3)


def test_reverse_batch():
    tokens, targets = exp_tr.reverse_batch(5, 7, 4, torch.Generator().manual_seed(0))
    assert tokens.shape == (5, 7) and int(tokens.max()) < 4
    assert torch.equal(targets[:, 0], tokens[:, -1]) and torch.equal(targets.flip(1), tokens)


def test_padding_demo_claims():
    r = exp_tr.padding_demo()
    d = r.data
    assert r.name == "bn-padding" and np.all(np.diff(d["pad_fraction"]) > 0)
    for method in ("layer", "rms"):
        assert np.all(d[f"change_{method}"] == 0) and d[f"extra_pad_{method}"] == 0
        assert d[f"other_content_{method}"] == 0
    assert d["change_bn"][0] == 0 and np.all(np.diff(d["change_bn"]) > 0)
    assert d["extra_pad_bn"] > 0.1 and d["extra_pad_masked"] < 1e-12 and d["other_content_masked"] > 0.1
    with pytest.raises(ValueError, match="sentence lengths"):
        exp_tr.padding_demo(other_lens=(17,))


def test_padding_demo_mean_is_scaled_by_the_real_fraction():
    d = exp_tr.padding_demo(other_lens=(16, 8, 2)).data
    # per feature, the mean over all positions is (real fraction) * (mean over the real tokens); averaged too
    assert np.allclose(d["mean_all"], (1 - d["pad_fraction"]) * d["mean_valid"], atol=1e-12)
    assert not np.allclose(d["mean_all"], d["mean_valid"], atol=1e-2)  # known-wrong: padding changes nothing


def test_init_grad_norms_shapes_and_determinism():
    a = exp_tr.init_grad_norms(n_layers=3, d_model=16, seeds=2, batch_size=8)
    b = exp_tr.init_grad_norms(n_layers=3, d_model=16, seeds=2, batch_size=8)
    assert a.data["pre"].shape == (2, 3) and a.data["post"].shape == (2, 3)
    assert np.array_equal(a.data["pre"], b.data["pre"]) and np.all(a.data["post"] > 0)
    assert not np.allclose(a.data["pre"], a.data["post"])  # the placements differ
    with pytest.raises(ValueError, match="at least 1"):
        exp_tr.init_grad_norms(seeds=0)


def test_lr_sweep_small():
    r = exp_tr.lr_sweep(lrs=(1e-3, 1e-2), n_layers=1, d_model=16, steps=12, batch_size=8)
    d = r.data
    assert d["loss_pre"].shape == (2, 12) and d["final_post"].shape == (2,)
    assert np.allclose(d["final_pre"], d["loss_pre"][:, -10:].mean(1))
    assert np.isclose(float(d["chance"]), math.log(10))
    assert 1.5 < d["loss_pre"][0, 0] < 4.0  # starts near chance
    with pytest.raises(ValueError, match="positive learning rates"):
        exp_tr.lr_sweep(lrs=(0.0,))


def test_plots_draw_their_results_and_refuse_others():
    pad = exp_tr.padding_demo(other_lens=(16, 4))
    grads = exp_tr.init_grad_norms(n_layers=2, d_model=16, seeds=2, batch_size=8)
    sweep = exp_tr.lr_sweep(lrs=(1e-3, 1e-2), n_layers=1, d_model=16, steps=10, batch_size=8)
    for draw, result in ((plot_tr.plot_padding, pad), (plot_tr.plot_grad_norms, grads), (plot_tr.plot_lr_sweep, sweep)):
        fig = draw(result)
        assert isinstance(fig, Figure)
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    with pytest.raises(ValueError, match="draws a 'lr-sweep'"):
        plot_tr.plot_lr_sweep(Result("bn-padding", {}, {}))


def test_lr_sweep_warmup_and_placements():
    kw = {"lrs": (3e-2,), "n_layers": 1, "d_model": 16, "steps": 12, "batch_size": 8}
    plain = exp_tr.lr_sweep(**kw, placements=("post",))
    warm = exp_tr.lr_sweep(**kw, placements=("post",), warmup=12)
    assert set(plain.data) == {"lrs", "chance", "loss_post", "final_post"} and warm.config["warmup"] == 12
    # the first step is the same (the loss before any update); the updates differ with the warm-up
    assert plain.data["loss_post"][0, 0] == warm.data["loss_post"][0, 0]
    assert not np.allclose(plain.data["loss_post"][0, 1:], warm.data["loss_post"][0, 1:])
    # a warm-up of one step is no warm-up
    one = exp_tr.lr_sweep(**kw, placements=("post",), warmup=1)
    assert np.array_equal(one.data["loss_post"], plain.data["loss_post"])
    assert "warm-up steps" in plot_tr.plot_lr_sweep(warm).axes[0].get_xlabel()
    with pytest.raises(ValueError, match="warmup >= 0"):
        exp_tr.lr_sweep(warmup=-1)
    with pytest.raises(ValueError, match="placements"):
        exp_tr.lr_sweep(placements=("sandwich",))


def test_depth_grad_norms_is_the_last_block_of_init_grad_norms():
    kw = {"d_model": 16, "batch_size": 8}
    r = exp_tr.depth_grad_norms(depths=(1, 3), seeds=2, **kw)
    one = exp_tr.init_grad_norms(n_layers=3, seeds=2, **kw)
    assert r.data["pre"].shape == (2,) and np.isclose(r.data["post"][1], one.data["post"][:, -1].mean())
    assert not np.isclose(r.data["post"][1], one.data["post"][:, 0].mean())  # known-wrong: the first block
    with pytest.raises(ValueError, match="depths"):
        exp_tr.depth_grad_norms(depths=(0,))


def test_zero_padding_moves_the_statistics_as_the_formulas_say():
    x, mask = _padded()
    p = 1 - mask.double().mean()
    mean_r, var_r = masked_batch_stats(x, mask)
    mean_b, var_b = masked_batch_stats(x)
    assert torch.allclose(mean_b, (1 - p) * mean_r, atol=1e-12)
    assert torch.allclose(var_b, (1 - p) * (var_r + mean_r**2) - mean_b**2, atol=1e-12)
    assert not torch.allclose(var_b, (1 - p) * var_r, atol=1e-3)  # known-wrong: the variance just scaled
