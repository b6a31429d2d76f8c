"""Bad inputs to the norm layers: each fails as ``torch.nn`` fails, or works as ``torch.nn`` works."""

import numpy as np
import pytest
import torch
from torch import nn

from bncourse import norms as N
from bncourse.norms.group import instancenorm_forward


@pytest.mark.parametrize("cls", [N.GhostBatchNorm, N.BatchRenorm])
def test_momentum_none_is_the_cumulative_average_as_in_nn_batchnorm(cls):
    torch.manual_seed(0)
    ours = cls(3, momentum=None)
    ref = nn.BatchNorm1d(3, momentum=None)
    batches = [torch.randn(16, 3) * (i + 1) + i for i in range(4)]
    for x in batches:
        ours(x)
        ref(x)
    assert int(ours.num_batches_tracked) == 4
    # the cumulative average of the batch means, the same as nn.BatchNorm's with momentum=None
    expected_mean = torch.stack([x.mean(0) for x in batches]).mean(0)
    torch.testing.assert_close(ours.running_mean, expected_mean)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)


@pytest.mark.parametrize("cls", [N.BatchNorm, N.GhostBatchNorm, N.BatchRenorm, N.SyncBatchNorm])
@pytest.mark.parametrize("eps", [0.0, -1e-5])
def test_nonpositive_eps_is_refused_in_training_as_batchnorm(cls, eps):
    with pytest.raises(ValueError, match=f"eps must be positive during training, but got {eps}"):
        nn.BatchNorm1d(3, eps=eps)(torch.zeros(8, 3))  # what torch does
    with pytest.raises(ValueError, match=f"eps must be positive during training, but got {eps}"):
        cls(3, eps=eps)(torch.zeros(8, 3))


@pytest.mark.parametrize("shape", [(1, 4), (1, 4, 1), (1, 4, 1, 1)])
def test_numpy_batchnorm_forward_refuses_one_value_per_channel(shape):
    x = np.random.default_rng(0).normal(size=shape)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(4)(torch.as_tensor(x).float().reshape(shape[0], 4, -1))
    expected = r"Expected more than 1 value per channel when training, got input size \[1, 4"
    with pytest.raises(ValueError, match=expected):
        N.batchnorm_forward(x, np.ones(4), np.zeros(4))


def test_numpy_batchnorm_forward_takes_one_example_with_spatial_positions():
    out, _ = N.batchnorm_forward(np.arange(8.0).reshape(1, 2, 2, 2), np.ones(2), np.zeros(2))
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 4, 1, 1), (2, 4, 1), (2, 4)])
def test_instancenorm_refuses_one_spatial_position(shape):
    with pytest.raises(ValueError, match="Expected more than 1 spatial element"):
        nn.InstanceNorm2d(4)(torch.randn(2, 4, 1, 1))
    with pytest.raises(ValueError, match=r"Expected more than 1 spatial element when training, got input size \[2, 4"):
        N.InstanceNorm(4)(torch.randn(shape))
    with pytest.raises(ValueError, match="Expected more than 1 spatial element"):
        instancenorm_forward(np.ones(shape), np.ones(4), np.zeros(4))


def test_instancenorm_still_normalises_maps():
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(N.InstanceNorm(4)(x), nn.InstanceNorm2d(4)(x))


def _modules():
    return {
        "BatchNorm": (N.BatchNorm(4), nn.BatchNorm1d(4)),
        "GhostBatchNorm": (N.GhostBatchNorm(4, virtual_batch_size=8), nn.BatchNorm1d(4)),
        "BatchRenorm": (N.BatchRenorm(4), nn.BatchNorm1d(4)),
        "LayerNorm": (N.LayerNorm(4), nn.LayerNorm(4)),
        "GroupNorm": (N.GroupNorm(2, 4), nn.GroupNorm(2, 4)),
        "RMSNorm": (N.RMSNorm(4), nn.RMSNorm(4, eps=1e-6)),
    }


@pytest.mark.parametrize("name", list(_modules()))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_input_to_a_float32_module_keeps_its_dtype(name, dtype):
    ours, ref = _modules()[name]
    x = torch.randn(8, 4).to(dtype)
    out = ours(x)
    assert out.dtype == ref(x).dtype == dtype
    torch.testing.assert_close(out.float(), ref(x).float(), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("name", ["BatchNorm", "GhostBatchNorm", "BatchRenorm", "LayerNorm", "GroupNorm"])
def test_float64_input_to_a_float32_module_is_refused_as_torch_does(name):
    ours, ref = _modules()[name]
    x = torch.randn(8, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="mixed dtype"):
        ref(x)
    expected = rf"mixed dtype: {name}\S* has torch.float32 parameters but got a torch.float64"
    with pytest.raises(RuntimeError, match=expected):
        ours(x)


@pytest.mark.parametrize("name", ["BatchNorm", "LayerNorm", "GroupNorm"])
def test_float32_input_to_a_bfloat16_module_is_refused_as_torch_does(name):
    ours, ref = _modules()[name]
    x = torch.randn(8, 4)
    with pytest.raises(RuntimeError, match="mixed dtype"):
        ref.bfloat16()(x)
    with pytest.raises(RuntimeError, match="has torch.bfloat16 parameters but got a torch.float32 input"):
        ours.bfloat16()(x)


def test_same_dtype_float64_modules_still_work():
    x = torch.randn(8, 4, dtype=torch.float64)
    for name, (ours, ref) in _modules().items():
        torch.testing.assert_close(ours.double()(x), ref.double()(x), msg=name)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: (N.LayerNorm((64, 16, 16)), nn.LayerNorm((64, 16, 16))), id="LayerNorm"),
        pytest.param(lambda: (N.GroupNorm(4, 64), nn.GroupNorm(4, 64)), id="GroupNorm"),
    ],
)
def test_bfloat16_accumulates_in_float32_as_accurately_as_torch(make):
    torch.manual_seed(0)
    x = (torch.randn(16, 64, 16, 16) + 20).bfloat16()  # an offset that a bfloat16 mean gets badly wrong
    ours, ref = make()
    exact = ref.double()(x.double())
    err_torch = (ref.bfloat16()(x).double() - exact).abs().mean()
    err_ours = (ours.bfloat16()(x).double() - exact).abs().mean()
    # computing in bfloat16 was 6x (LayerNorm) and 11x (GroupNorm) less accurate here
    assert err_ours <= 1.1 * err_torch, (float(err_ours), float(err_torch))
