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
        with pytest.raises(ValueError, match="CUDA is not available here"):
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


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("tpu:0", "'tpu:0' is not a device"),
        ("meta", "'meta': only cpu and cuda are supported"),
        (torch.device("meta"), "'meta': only cpu and cuda are supported"),
    ],
)
def test_pick_device_refuses_what_torch_or_the_course_cannot_use(device, message):
    with pytest.raises(ValueError, match=message):
        runtime.pick_device(device)


def test_pick_device_refuses_cuda_or_a_gpu_index_that_is_not_here(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"'cuda': CUDA is not available here \(.+\); use cpu"):
        runtime.pick_device("cuda")
    assert runtime.pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert runtime.pick_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"'cuda:2': this machine has 2 CUDA device\(s\), cuda:0 to cuda:1"):
        runtime.pick_device("cuda:2")


def test_device_name_with_threads_counts_them():
    with runtime.cpu_threads(1):
        assert runtime.device_name("cpu", threads=True) == "cpu, 1 thread"
        assert runtime.device_name("cpu") == "cpu"
    with runtime.cpu_threads(2):
        assert runtime.device_name("cpu", threads=True) == "cpu, 2 threads"


def test_cpu_threads_sets_and_restores_the_count_even_after_an_error():
    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    with runtime.cpu_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="inside"), runtime.cpu_threads(other):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with runtime.cpu_threads(None):  # None: leave the count alone
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="got -1"), runtime.cpu_threads(-1):
        pass


def test_synchronize_waits_only_on_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    runtime.synchronize("cpu")
    assert calls == []
    runtime.synchronize(torch.device("cuda:0"))
    assert calls == [torch.device("cuda:0")]


class _FakeWork:
    """A function whose calls cost given seconds on a fake clock, so best_time's arithmetic can be checked."""

    def __init__(self, costs):
        self.costs, self.now, self.calls = list(costs), 0.0, 0

    def __call__(self):
        self.now += self.costs[self.calls]
        self.calls += 1

    def clock(self):
        return self.now


def test_best_time_single_calls_with_and_without_warmup():
    work = _FakeWork([3.0, 1.0, 2.0])
    assert runtime.best_time(work, 3, warmup=0, clock=work.clock) == 1.0 and work.calls == 3
    work = _FakeWork([100.0, 5.0, 4.0])  # the slow first call is the warm-up, not timed
    assert runtime.best_time(work, 2, clock=work.clock) == 4.0 and work.calls == 3


def test_best_time_with_min_time_times_loops_and_divides_by_their_length():
    # warm-up (50 s), then 10 calls of 1 s fill min_time=10, then two timed loops of 10 calls: 2 s and 0.5 s each
    work = _FakeWork([50.0] + [1.0] * 10 + [2.0] * 10 + [0.5] * 10)
    assert runtime.best_time(work, 2, min_time=10.0, clock=work.clock) == 0.5
    assert work.calls == 1 + 10 + 20


def test_best_time_needs_a_repeat():
    with pytest.raises(ValueError, match="repeats must be at least 1; got 0"):
        runtime.best_time(lambda: None, 0)


def test_full_scale_note_uses_the_stored_wall_time(tmp_path, monkeypatch):
    from bncourse.result import Result, full_scale_note

    monkeypatch.setenv("BNCOURSE_RESULTS", str(tmp_path))
    Result("x", {}, {}, {"wall_time_s": 10.0, "device": "GPU X"}).save(tmp_path / "a-full.json")
    line = full_scale_note("a-full")
    assert "10 s on GPU X" in line and "20-40 s" in line and "estimate" in line
    assert "no stored run of b-full" in full_scale_note("a-full", "b-full")
    shipped = full_scale_note("figure1-full")  # the shipped result is found when BNCOURSE_RESULTS lacks it
    assert "NVIDIA H200" in shipped
