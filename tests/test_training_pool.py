"""The process pool: same results as serial runs, in order, and clear errors."""

import numpy as np
import pytest

from bncourse.training.pool import default_workers, run_jobs


def _power(a, b):
    return a**b


def test_run_jobs_keeps_order_serial_and_pooled():
    jobs = [(a, 2) for a in range(7)]
    assert run_jobs(_power, jobs, workers=1, progress=False) == [a * a for a in range(7)]
    assert run_jobs(_power, jobs, workers=2, progress=False) == [a * a for a in range(7)]
    # the costliest first into the pool, the results still in the order of the jobs
    assert run_jobs(_power, jobs, workers=2, progress=False, cost=lambda job: job[0]) == [a * a for a in range(7)]


def test_run_jobs_rejects_bad_workers_and_reads_env(monkeypatch):
    with pytest.raises(ValueError, match="workers"):
        run_jobs(_power, [(1, 1)], workers=0)
    monkeypatch.setenv("BNCOURSE_WORKERS", "3")
    assert default_workers() == 3
    assert default_workers(all_cores=True) == 3
    monkeypatch.delenv("BNCOURSE_WORKERS")
    assert default_workers() == 1
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert default_workers(all_cores=True) == 15


def test_pooled_sweeps_equal_serial_sweeps():
    """Each run seeds its own weights and batches, so two processes give the serial sweep's numbers."""
    from bncourse.experiments.batchsize import batchsize_sweep
    from bncourse.experiments.norms_compare import norms_batchsize

    kw = {"batch_sizes": (8, 4), "norms": ("bn", "ghost"), "seeds": (0,), "num_examples": 64, "device": "cpu"}
    a = batchsize_sweep("reduced", progress=False, workers=1, **kw)
    b = batchsize_sweep("reduced", progress=False, workers=2, **kw)
    for key in ("test_acc", "train_loss", "bn_batch_stats_acc"):
        np.testing.assert_array_equal(a.data[key], b.data[key])
    assert np.isfinite(a.data["test_acc"]).all()
    kw = {"norms": (None, "gn"), "batch_sizes": (8, 4), "num_examples": 32, "seeds": (0,), "eval_size": 200}
    c = norms_batchsize("reduced", progress=False, workers=1, device="cpu", **kw)
    d = norms_batchsize("reduced", progress=False, workers=2, device="cpu", **kw)
    assert list(c.data["norm"]) == ["none", "gn", "none", "gn"] and list(c.data["batch_size"]) == [8, 8, 4, 4]
    for key in ("norm", "batch_size", "test_acc", "train_loss"):
        np.testing.assert_array_equal(c.data[key], d.data[key])


def test_reproduce_passes_options_only_to_experiments_that_take_them(monkeypatch):
    import sys
    import types

    from bncourse import reproduce

    mod = types.ModuleType("fake_full")
    mod.takes = lambda device=None, workers=None: (device, workers)
    mod.plain = lambda: "plain"
    monkeypatch.setitem(sys.modules, "fake_full", mod)
    monkeypatch.setitem(reproduce.RESULTS, "takes", ("fake_full", "takes"))
    monkeypatch.setitem(reproduce.RESULTS, "plain", ("fake_full", "plain"))
    assert reproduce.run("takes", device="cpu", workers=4) == ("cpu", 4)
    assert reproduce.run("takes", device=None, workers=None) == (None, None)
    assert reproduce.run("plain", device="cuda", workers=4) == "plain"
