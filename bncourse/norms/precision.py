"""Input dtypes of the norm modules, as ``torch.nn`` handles them.

- A bfloat16 or float16 input is normalised in float32 (statistics accumulated in float32, as PyTorch's own
  kernels do) and the output is cast back to the input's dtype; its parameters may be float32 or its own dtype.
- Any other input whose dtype differs from the parameters' is refused (PyTorch: "mixed dtype"), instead of
  silently returning a result in the promoted dtype.
"""

from __future__ import annotations

import torch

__all__ = ["REDUCED", "compute_input"]

REDUCED = (torch.bfloat16, torch.float16)


def compute_input(
    x: torch.Tensor, param_dtype: torch.dtype | None, layer: str, *, strict: bool = True
) -> tuple[torch.Tensor, torch.dtype | None]:
    """The tensor to normalise and the dtype to cast the result back to (``None``: keep it as computed).

    Args:
        x: the module's input.
        param_dtype: dtype of the module's parameters or buffers, ``None`` if it has none.
        layer: the module's name for the error message, e.g. ``"BatchNorm(4)"``.
        strict: refuse a full-precision input whose dtype differs from ``param_dtype`` (``False`` for
            RMSNorm, which PyTorch lets promote).

    Raises:
        RuntimeError: mixed dtypes that PyTorch refuses too.
    """
    if x.dtype in REDUCED:
        if param_dtype is not None and param_dtype not in (x.dtype, torch.float32):
            raise RuntimeError(_mixed(x, param_dtype, layer))
        return x.float(), x.dtype
    if strict and param_dtype is not None and x.dtype != param_dtype:
        raise RuntimeError(_mixed(x, param_dtype, layer))
    return x, None


def _mixed(x: torch.Tensor, param_dtype: torch.dtype, layer: str) -> str:
    return (
        f"mixed dtype: {layer} has {param_dtype} parameters but got a {x.dtype} input; convert one of them "
        f"(x.to({param_dtype}) or module.to({x.dtype}))"
    )
