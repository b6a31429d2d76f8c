"""bncourse.gradcheck: numeric gradients against known derivatives, and rel_error."""

import numpy as np
import pytest

from bncourse.gradcheck import eval_numerical_gradient, eval_numerical_gradient_array, rel_error


def test_rel_error():
    assert rel_error(np.ones(3), np.ones(3)) == 0.0
    assert rel_error(np.array([1.0]), np.array([-1.0])) == 1.0
    assert abs(rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.2])) - 0.2 / 4.2) < 1e-12
    assert rel_error(np.zeros(2), np.zeros(2)) == 0.0
    with pytest.raises(ValueError):
        rel_error(np.ones(2), np.ones(3))


def test_scalar_numeric_gradient():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4))
    grad = eval_numerical_gradient(lambda v: np.sum(np.sin(v) * v), x.copy())
    assert rel_error(grad, np.cos(x) * x + np.sin(x)) < 1e-8


def test_array_numeric_gradient_and_restores_input():
    rng = np.random.default_rng(1)
    x, w, df = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=(4, 2))
    x0 = x.copy()
    grad = eval_numerical_gradient_array(lambda v: np.tanh(v @ w), x, df)
    exact = (df * (1 - np.tanh(x0 @ w) ** 2)) @ w.T
    assert rel_error(grad, exact) < 1e-7
    assert np.array_equal(x, x0)
    wrong = (df * (1 - np.tanh(x0 @ w))) @ w.T
    assert rel_error(grad, wrong) > 1e-2


def test_needs_float_array():
    with pytest.raises(TypeError):
        eval_numerical_gradient(np.sum, np.arange(3))
