"""Device choice, device names and the chapters' scale (bncourse.runtime)."""

import pytest
import torch

from bncourse import runtime


def test_pick_device_and_name():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.pick_device().type == want
    assert runtime.pick_device("cpu") == torch.device("cpu")
    assert runtime.device_name("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            runtime.pick_device("cuda")


def test_chapter_scale(monkeypatch):
    monkeypatch.delenv("BNCOURSE_SCALE", raising=False)
    assert runtime.chapter_scale() == "reduced"
    assert runtime.chapter_scale("full") == "full"
    monkeypatch.setenv("BNCOURSE_SCALE", "full")
    assert runtime.chapter_scale() == "full" and "scale: full" in runtime.describe()
    monkeypatch.setenv("BNCOURSE_SCALE", "huge")
    with pytest.raises(ValueError, match="'huge'"):
        runtime.chapter_scale()


def test_describe_names_device_and_scale(monkeypatch):
    monkeypatch.delenv("BNCOURSE_SCALE", raising=False)
    line = runtime.describe()
    assert line.startswith(f"device: {runtime.device_name()}") and "scale: reduced" in line
    assert ('SCALE = "full"' in line) == torch.cuda.is_available()
