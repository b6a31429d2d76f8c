"""Chapter 7's checks of the course's normalisation layers against PyTorch's and against numeric gradients.

- :func:`match_torch_module` - one of our torch modules against PyTorch's layer: the same random parameters,
  the largest difference over the output and every gradient, and ``torch.autograd.gradcheck`` on ours;
- :func:`backward_errors` - a numpy forward/backward pair against centred differences and against PyTorch's
  autograd of the matching functional.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from bncourse.gradcheck import eval_numerical_gradient_array, rel_error

__all__ = ["backward_errors", "match_torch_module"]


def match_torch_module(
    ours: nn.Module, theirs: nn.Module, x: torch.Tensor, names: dict[str, str] | None = None, seed: int = 0
) -> dict[str, float | bool]:
    """Compare two modules that should compute the same function, in float64.

    Every parameter of ``ours`` is set to random values (uniform in [0.5, 1.5), a ``bias`` standard normal) and
    copied into the parameter of ``theirs`` of the same name (or ``names[name]``). Both run forward on ``x``
    and backward with one random upstream gradient.

    Args:
        ours, theirs: the two modules; both are converted to float64 in place.
        x: the input, converted to float64.
        names: our parameter name -> theirs, where they differ (e.g. weight norm's ``weight_g``).
        seed: of the random parameters and the upstream gradient.

    Returns:
        ``max_diff``: the largest absolute difference over the output, the input gradient and every parameter
        gradient; ``gradcheck``: ``torch.autograd.gradcheck`` of ``ours`` on the first two examples of ``x``.

    Raises:
        ValueError: a parameter of ``ours`` has no counterpart in ``theirs``, or the shapes differ.
    """
    names = names or {}
    gen = torch.Generator().manual_seed(seed)
    ours, theirs, x = ours.double(), theirs.double(), x.double()
    their_params = dict(theirs.named_parameters())
    with torch.no_grad():
        for name, p in ours.named_parameters():
            other = their_params.get(names.get(name, name))
            if other is None or other.shape != p.shape:
                raise ValueError(f"parameter {name!r} of ours has no counterpart of shape {tuple(p.shape)} in theirs")
            if name == "bias":
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
            else:
                p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) + 0.5)
            other.copy_(p)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), theirs(xb)
    dout = torch.randn(ya.shape, generator=gen, dtype=ya.dtype)
    ya.backward(dout)
    yb.backward(dout)
    diffs = [(ya - yb).abs().max().item(), (xa.grad - xb.grad).abs().max().item()]
    for name, p in ours.named_parameters():
        diffs.append((p.grad - their_params[names.get(name, name)].grad).abs().max().item())
    ok = torch.autograd.gradcheck(ours, (x[:2].clone().requires_grad_(),))
    return {"max_diff": max(diffs), "gradcheck": bool(ok)}


def backward_errors(
    forward: Callable[..., tuple[np.ndarray, tuple]],
    backward: Callable[[np.ndarray, tuple], Sequence[np.ndarray]],
    functional: Callable[..., torch.Tensor],
    arrays: Sequence[np.ndarray],
    seed: int = 0,
) -> tuple[float, float]:
    """Check a numpy backward pass two ways, with one random upstream gradient.

    Args:
        forward: ``forward(*arrays) -> (out, cache)``.
        backward: ``backward(dout, cache)`` -> one gradient per array, in the order of ``arrays``.
        functional: the same function in torch, ``functional(*tensors) -> out``, differentiated by autograd.
        arrays: the float64 inputs (input first, then the parameters); not modified.
        seed: of the upstream gradient.

    Returns:
        ``(numeric, autograd)``: the largest ``rel_error`` against centred-difference gradients, and the largest
        absolute difference from autograd's gradients, over all arrays.
    """
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    out, cache = forward(*arrays)
    dout = np.random.default_rng(seed).normal(size=out.shape)
    grads = list(backward(dout, cache))
    if len(grads) != len(arrays):
        raise ValueError(f"backward returned {len(grads)} gradients for {len(arrays)} arrays")
    numeric = []
    for j in range(len(arrays)):

        def f(a, j=j):
            return forward(*arrays[:j], a, *arrays[j + 1 :])[0]

        numeric.append(eval_numerical_gradient_array(f, arrays[j].copy(), dout))
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    functional(*tensors).backward(torch.tensor(dout))
    err_num = max(rel_error(a, n) for a, n in zip(grads, numeric, strict=True))
    err_torch = max(float(np.abs(a - t.grad.numpy()).max()) for a, t in zip(grads, tensors, strict=True))
    return err_num, err_torch
