"""Where and at what size the experiments run: device choice, device names, and the chapters' scale.

Every chapter runs its experiments at one of two scales:

- ``"reduced"`` (the default everywhere): the size the website is built with on a 2-core CPU. The chapter's
  text quotes these runs, and its asserts check them.
- ``"full"``: the paper-scale configurations (the ``*_SCALES["full"]`` entries of the experiments), the same
  ones whose stored results the chapters show. Meant for a GPU (a Colab GPU runtime): choose it with
  ``BNCOURSE_SCALE=full`` or by setting ``SCALE = "full"`` in a chapter's setup cell. Then the live runs
  reproduce the stored results rather than the numbers in the text.
"""

from __future__ import annotations

import os

import torch

__all__ = ["SCALES", "chapter_scale", "describe", "device_name", "pick_device"]

SCALES = ("reduced", "full")


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; None means CUDA when there is a GPU, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but this machine has no CUDA GPU: use 'cpu'")
    return device


def device_name(device: str | torch.device | None = None) -> str:
    """A readable name: the GPU's model (e.g. ``NVIDIA H200``) for CUDA, ``cpu`` otherwise."""
    device = pick_device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def chapter_scale(scale: str | None = None) -> str:
    """The scale a chapter runs at: ``scale`` if given, else ``$BNCOURSE_SCALE``, else ``"reduced"``."""
    scale = scale or os.environ.get("BNCOURSE_SCALE") or "reduced"
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)} (BNCOURSE_SCALE or SCALE); got {scale!r}")
    return scale


def describe(scale: str | None = None) -> str:
    """One line for a chapter's setup cell: the device, the scale, and how to change the scale."""
    scale = chapter_scale(scale)
    where = device_name()
    hint = (
        ' (a GPU is here: SCALE = "full" runs the paper-scale experiments)'
        if scale == "reduced" and where != "cpu"
        else ""
    )
    return f"device: {where}; torch {torch.__version__}; scale: {scale}{hint}"
