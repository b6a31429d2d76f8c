"""Chapter 3's "where BN goes": the moments of u and Wu, and the bias that batch statistics cancel."""

import numpy as np
import pytest
import torch

from bncourse.experiments import placement


def test_moments_match_known_distributions():
    rng = np.random.default_rng(0)
    gauss = rng.standard_normal((200_000, 2))
    skew, kurt = placement.moments(gauss)
    assert np.all(np.abs(skew) < 0.02) and np.all(np.abs(kurt) < 0.05)
    expo = rng.exponential(1.0, (200_000, 1))  # skewness 2, excess kurtosis 6
    skew, kurt = placement.moments(torch.as_tensor(expo))
    assert skew[0] == pytest.approx(2.0, abs=0.1) and kurt[0] == pytest.approx(6.0, abs=0.6)
    # a known-wrong formula (no standardisation) does not give the exponential's skewness
    assert abs(((expo - expo.mean()) ** 3).mean() * 8 - 2.0) > 0.5
    dead = np.c_[gauss[:, :1], np.zeros(len(gauss))]  # a dead unit is left out
    assert len(placement.moments(dead)[0]) == 1
    with pytest.raises(ValueError):
        placement.moments(np.zeros(5))


def test_relu_input_is_skewed_and_wu_is_not():
    r = placement.activation_shapes(dataset="mnist5k", activation="relu", width=32, num_examples=500, seed=1)
    d = r.data
    assert d["mean_abs_skew_u"] > 3 * d["mean_abs_skew_wu"]
    assert d["mean_kurt_u"] > 3 * abs(d["mean_kurt_wu"])
    assert r.config["activation"] == "relu" and len(d["skew_u"]) + d["dead_u"] == 32
    with pytest.raises(ValueError):
        placement.activation_shapes(activation="tanh")


def test_bias_cancels_with_batch_statistics_only():
    train = placement.bias_cancellation(mode="train", bias_scale=100.0, seed=3).data
    assert train["max_diff"] < 1e-12 and train["grad_b_max"] < 1e-12 < train["grad_x_max"]
    wrong = placement.bias_cancellation(mode="eval", bias_scale=100.0, seed=3).data  # fixed statistics
    assert wrong["max_diff"] > 1.0 and wrong["grad_b_max"] > 1e-2
    with pytest.raises(ValueError):
        placement.bias_cancellation(mode="test")
    with pytest.raises(ValueError):
        placement.bias_cancellation(batch_size=1)


def test_activation_shapes_ignore_the_default_dtype():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # as chapter 3 sets it
    try:
        r = placement.activation_shapes(dataset="mnist5k", width=8, num_examples=50, num_steps=2, seed=0)
    finally:
        torch.set_default_dtype(old)
    assert np.isfinite(r.data["mean_kurt_wu"])
