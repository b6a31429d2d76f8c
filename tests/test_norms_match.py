"""Chapter 7's checks against PyTorch (bncourse.experiments.norms_match): they pass for matching layers and
catch a mismatch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bncourse.experiments.norms_match import backward_errors, match_torch_module
from bncourse.norms.group import GroupNorm, LayerNorm, layernorm_backward, layernorm_forward


def test_match_torch_module_agrees_for_the_same_function():
    x = torch.randn(4, 6, 3, 3, dtype=torch.float64)
    res = match_torch_module(GroupNorm(3, 6), nn.GroupNorm(3, 6), x)
    assert res["max_diff"] < 1e-12 and res["gradcheck"] is True


def test_match_torch_module_catches_a_different_function():
    x = torch.randn(4, 7, 8, dtype=torch.float64) * 0.05  # small variance, so that eps matters
    res = match_torch_module(LayerNorm(8), nn.LayerNorm(8, eps=1e-2), x)
    assert res["max_diff"] > 1e-3


def test_match_torch_module_rejects_a_missing_parameter():
    with pytest.raises(ValueError, match="no counterpart"):
        match_torch_module(LayerNorm(8), nn.LayerNorm(8, elementwise_affine=False), torch.randn(2, 8))


def _ln_functional(a, g, b):
    return F.layer_norm(a, (5,), g, b, 1e-5)


def test_backward_errors_small_for_the_right_backward():
    rng = np.random.default_rng(0)
    arrays = (rng.normal(size=(3, 5)), rng.uniform(0.5, 2, 5), rng.normal(size=5))
    err_num, err_torch = backward_errors(layernorm_forward, layernorm_backward, _ln_functional, arrays)
    assert err_num < 1e-6 and err_torch < 1e-10
    assert np.array_equal(arrays[0], np.random.default_rng(0).normal(size=(3, 5)))  # inputs not modified


def test_backward_errors_catch_a_wrong_backward():
    rng = np.random.default_rng(0)
    arrays = (rng.normal(size=(3, 5)), rng.uniform(0.5, 2, 5), rng.normal(size=5))

    def wrong(dout, cache):  # flips the sign of dgamma
        dx, dgamma, dbeta = layernorm_backward(dout, cache)
        return dx, -dgamma, dbeta

    err_num, err_torch = backward_errors(layernorm_forward, wrong, _ln_functional, arrays)
    assert err_num > 0.1 and err_torch > 1e-3
    with pytest.raises(ValueError, match="gradients"):
        backward_errors(layernorm_forward, lambda d, c: layernorm_backward(d, c)[:2], _ln_functional, arrays)
