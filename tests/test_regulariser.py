"""Chapter 2's "BN as a regulariser": the batch noise on one example, and the dropout grid."""

import numpy as np
import pytest
import torch
from torch import nn

from bncourse.experiments import regulariser
from bncourse.models import regulariser_mlp


def test_regulariser_mlp_layers_and_shared_weights():
    plain = regulariser_mlp((20, 8, 8, 3), bn=False, dropout=0.0, seed=4)
    full = regulariser_mlp((20, 8, 8, 3), bn=True, dropout=0.3, seed=4)
    kinds = [type(m) for m in full]
    assert kinds.count(nn.BatchNorm1d) == 2 and kinds.count(nn.Dropout) == 2
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.Dropout)) for m in plain)
    torch.testing.assert_close(plain[0].weight, full[0].weight)
    assert full(torch.zeros(5, 20)).shape == (5, 3)
    with pytest.raises(ValueError):
        regulariser_mlp(dropout=1.0)
    with pytest.raises(ValueError):
        regulariser_mlp((20, 3))


def test_batch_noise_shrinks_with_the_batch_and_vanishes_in_eval_mode():
    r = regulariser.batch_noise("mnist5k", batch_sizes=(2, 8, 32, 128), num_draws=40, seed=1)
    s = r.data["spread_train"]
    assert np.all(s > 0.01) and np.all(np.diff(s) < 0)
    assert s[0] / s[-1] > 4  # roughly 1/sqrt(m): 8 times from m = 2 to m = 128
    np.testing.assert_array_equal(r.data["spread_eval"], 0.0)
    with pytest.raises(ValueError):
        regulariser.batch_noise(batch_sizes=(1, 4))


def test_dropout_grid_reports_four_networks():
    r = regulariser.dropout_grid("mnist5k", num_steps=150, hidden=(32,), seed=0)
    d = r.data
    assert list(d["networks"]) == ["plain", "plain+dropout", "bn", "bn+dropout"]
    np.testing.assert_allclose(d["gap"], d["train_acc"] - d["test_acc"])
    assert np.all(d["test_acc"] > 0.6) and np.all(d["train_acc"] <= 1.0)
    with pytest.raises(ValueError):
        regulariser.dropout_grid(num_steps=0)
