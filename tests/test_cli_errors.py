"""Wrong options of ``python -m bncourse.reproduce`` and ``python -m bncourse.bench``: exit status 2, one line
on stderr naming what is wrong, no traceback, and nothing run before the check."""

import argparse
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bncourse import argparsing, bench, reproduce

ROOT = Path(__file__).resolve().parents[1]


def _fails(main, argv, capsys) -> str:
    """Run ``main(argv)``; assert exit status 2 and one line on stderr; return that line."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.fixture
def no_runs(monkeypatch):
    """Fail the test if an experiment or a benchmark would start."""

    def boom(*args, **kwargs):
        raise AssertionError("ran before the options were checked")

    monkeypatch.setattr(reproduce, "run", boom)
    monkeypatch.setattr(bench, "plain_loop_seconds", boom)
    monkeypatch.setattr(bench, "engine_seconds", boom)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["figure1-full", "--device", "cpu"], "--device is not an option of figure1-full (only of batchsize-full"),
        (["figure1-full", "batchsize-full", "--workers", "2"], "--workers is not an option of figure1-full (only"),
        (["figure1-full", "--workers", "0"], "argument --workers: must be at least 1, got 0"),
        (["batchsize-full", "--workers", "two"], "argument --workers: expected a positive integer, got 'two'"),
        (["batchsize-full", "--device", "cuda"], "argument --device: 'cuda': CUDA is not available here"),
        (["batchsize-full", "--device", "tpu:0"], "argument --device: 'tpu:0' is not a device"),
        (["batchsize-full", "--device", "meta"], "argument --device: 'meta': only cpu and cuda are supported"),
        (["figure-1"], "unknown experiment 'figure-1'; choose from batchsize-full, figure1-full"),
        ([], "name one or more experiments"),
    ],
)
def test_reproduce_refuses_wrong_options_before_running(argv, expected, capsys, tmp_path, no_runs, no_cuda):
    line = _fails(reproduce.main, [*argv, "--out", str(tmp_path)], capsys)
    assert line.startswith("python -m bncourse.reproduce: error: ")
    assert expected in line


def test_reproduce_refuses_an_out_that_is_a_file(capsys, tmp_path, no_runs):
    target = tmp_path / "results.json"
    target.write_text("{}")
    line = _fails(reproduce.main, ["figure1-full", "--out", str(target)], capsys)
    assert f"--out {target} is a file, not a folder" in line
    assert target.read_text() == "{}"
    line = _fails(reproduce.main, ["figure1-full", "--out", str(target / "sub")], capsys)
    assert f"--out {target / 'sub'}: cannot create the folder" in line


class _FakeResult:
    def __init__(self):
        self.meta = {"data": "none", "device": "cpu"}

    def save(self, path):
        Path(path).write_text("new")
        return Path(path)


def test_reproduce_replaces_an_existing_result_only_with_force(capsys, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(reproduce, "run", lambda name, **options: calls.append((name, options)) or _FakeResult())
    (tmp_path / "figure1-full.json").write_text("old")
    line = _fails(reproduce.main, ["figure1-full", "santurkar-dln-full", "--out", str(tmp_path)], capsys)
    assert f"{tmp_path / 'figure1-full.json'} already exists; add --force to replace" in line
    assert calls == [] and (tmp_path / "figure1-full.json").read_text() == "old"  # nothing ran, nothing written
    written = reproduce.main(["figure1-full", "--out", str(tmp_path), "--force"])
    assert written == [tmp_path / "figure1-full.json"] and written[0].read_text() == "new"
    assert calls == [("figure1-full", {"device": None, "workers": None})]


def test_reproduce_all_passes_device_and_workers_to_the_experiments_that_take_them(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(reproduce, "run", lambda name, **options: calls.append((name, options)) or _FakeResult())
    reproduce.main(["--all", "--device", "cpu", "--workers", "3", "--out", str(tmp_path)])
    assert [name for name, _ in calls] == sorted(reproduce.RESULTS)
    assert all(options == {"device": "cpu", "workers": 3} for _, options in calls)


def test_reproduce_options_table_matches_the_functions():
    import importlib

    for name, (module, function) in reproduce.RESULTS.items():
        params = inspect.signature(getattr(importlib.import_module(module), function)).parameters
        assert set(reproduce.OPTIONS.get(name, ())) == set(params) & {"device", "workers"}, name
        assert set(params) <= {"device", "workers"}, name


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
        (["--steps", "0"], "argument --steps: must be at least 1, got 0"),
        (["--sweep", "0"], "argument --sweep: must be at least 1, got 0"),
        (["--steps", "-5"], "argument --steps: must be at least 1, got -5"),
        (["--device", "cuda"], "argument --device: 'cuda': CUDA is not available here"),
        (["--device", "cuda:x"], "argument --device: 'cuda:x' is not a device"),
    ],
)
def test_bench_refuses_wrong_options_before_running(argv, expected, capsys, no_runs, no_cuda):
    line = _fails(bench.main, argv, capsys)
    assert line.startswith("python -m bncourse.bench: error: ")
    assert expected in line


def test_positive_float():
    assert argparsing.positive_float("2.5") == 2.5
    for text in ("0", "-1", "abc", "nan", "inf", "1e309"):
        with pytest.raises(argparse.ArgumentTypeError):
            argparsing.positive_float(text)


def test_positive_int_and_check_device():
    assert argparsing.positive_int("7") == 7
    for text in ("0", "-1", "1.5", ""):
        with pytest.raises(Exception, match="positive integer|at least 1"):
            argparsing.positive_int(text)
    assert argparsing.check_device("cpu") == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_check_device_refuses_a_gpu_index_past_the_last():
    n = torch.cuda.device_count()
    assert argparsing.check_device("cuda:0") == "cuda:0"
    with pytest.raises(ValueError, match=f"this machine has {n} CUDA device"):
        argparsing.check_device(f"cuda:{n}")


@pytest.mark.parametrize(
    ("module", "argv", "expected"),
    [
        ("bncourse.reproduce", ["figure1-full", "--device", "cuda", "--workers", "1"], "--device is not an option"),
        ("bncourse.bench", ["--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
        ("bncourse.reproduce", ["figure1-full", "--out", ""], "--out is empty"),
        ("bncourse.instructor", ["grade", ""], "an empty submission path"),
    ],
)
def test_the_commands_print_one_line_and_exit_2(module, argv, expected, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", module, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert expected in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--all", "nosuch"], "give --all or names, not both (got --all and nosuch)"),
        (["--all", "figure1-full"], "give --all or names, not both"),
        (["batchsize-full", "--workers", "99999999999999999999"], "argument --workers: must be from 1 to 1024, got"),
    ],
)
def test_reproduce_refuses_all_with_names_and_huge_workers(argv, expected, capsys, tmp_path, no_runs):
    line = _fails(reproduce.main, [*argv, "--out", str(tmp_path / "new")], capsys)
    assert expected in line, line
    assert not (tmp_path / "new").exists()


def test_reproduce_refuses_an_empty_or_unwritable_out(capsys, tmp_path, no_runs, monkeypatch):
    monkeypatch.setattr(reproduce, "_default_out", lambda: pytest.fail("fell back to the default folder"))
    assert "--out is empty" in _fails(reproduce.main, ["figure1-full", "--out", ""], capsys)
    if Path("/proc/self").is_dir():  # Linux: a folder that exists and that not even root can write into
        line = _fails(reproduce.main, ["figure1-full", "--out", "/proc"], capsys)
        assert "--out /proc: cannot write there" in line
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores the mode
            return
        line = _fails(reproduce.main, ["figure1-full", "--out", str(locked)], capsys)
        assert f"--out {locked}: cannot write there" in line
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("value", ["abc", "0", "2.5", "99999"])
def test_reproduce_checks_bncourse_workers_before_running(value, capsys, tmp_path, no_runs, monkeypatch):
    monkeypatch.setenv("BNCOURSE_WORKERS", value)
    line = _fails(reproduce.main, ["batchsize-full", "--out", str(tmp_path)], capsys)
    assert f"BNCOURSE_WORKERS={value!r}: " in line, line


def test_default_workers_names_a_wrong_variable(monkeypatch):
    from bncourse.training.pool import default_workers

    monkeypatch.setenv("BNCOURSE_WORKERS", "abc")
    with pytest.raises(ValueError, match="BNCOURSE_WORKERS='abc' is not a whole number"):
        default_workers()
    monkeypatch.setenv("BNCOURSE_WORKERS", " 3 ")
    assert default_workers() == 3


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--sweep", "1000000000"], "argument --sweep: must be from 1 to 4096, got 1000000000"),
        (["--steps", "1000001"], "argument --steps: must be from 1 to 1000000, got 1000001"),
        (["--repeats", "1001"], "argument --repeats: must be from 1 to 1000, got 1001"),
    ],
)
def test_bench_refuses_counts_past_the_maximum(argv, expected, capsys, no_runs):
    assert expected in _fails(bench.main, [*argv, "--device", "cpu"], capsys)


def test_bounded_int_and_float():
    three_to_five = argparsing.bounded_int(3, 5)
    assert three_to_five("3") == 3 and three_to_five("5") == 5
    for text in ("2", "6", "x", "4.0"):
        with pytest.raises(argparse.ArgumentTypeError):
            three_to_five(text)
    assert argparsing.bounded_int(0, 2)("0") == 0
    seconds = argparsing.bounded_float(1, 10)
    assert seconds("1") == 1.0 and seconds("10") == 10.0
    for text in ("0.5", "10.5", "inf", "-inf", "nan", "1e309", "abc"):
        with pytest.raises(argparse.ArgumentTypeError):
            seconds(text)
