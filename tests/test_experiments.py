"""bncourse.experiments, plots, widgets and glue: results, their invariants, figures and panels."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib import pyplot as plt

from bncourse import experiments, panels, plots
from bncourse.glue import glue
from bncourse.result import Result


@pytest.mark.parametrize("dist", experiments.DISTRIBUTIONS)
def test_sample_inputs_moments(dist):
    x = experiments.sample_inputs(dist, 20000, 2, loc=3.0, scale=2.0, seed=1)
    assert x.shape == (20000, 2)
    np.testing.assert_allclose(x.mean(axis=0), 3.0, atol=0.06)
    np.testing.assert_allclose(x.std(axis=0), 2.0, rtol=0.03)


def test_sample_inputs_errors_and_seed():
    with pytest.raises(ValueError, match="dist"):
        experiments.sample_inputs("cauchy", 4, 1)
    with pytest.raises(ValueError):
        experiments.sample_inputs("normal", 0, 1)
    a = experiments.sample_inputs("normal", 5, 2, seed=3)
    assert np.array_equal(a, experiments.sample_inputs("normal", 5, 2, seed=3))
    assert not np.array_equal(a, experiments.sample_inputs("normal", 5, 2, seed=4))


def test_bn_activations_normalises_and_stats_shrink_with_batch():
    small = experiments.bn_activations(batch_size=8, num_batches=400, seed=0)
    large = experiments.bn_activations(batch_size=128, num_batches=400, seed=0)
    np.testing.assert_allclose(small.data["y_mean"], 0.0, atol=1e-12)
    np.testing.assert_allclose(small.data["y_std"], 1.0, atol=1e-4)
    ratio = small.data["mu_B"].std() / large.data["mu_B"].std()
    assert 3.0 < ratio < 5.3  # sqrt(128 / 8) = 4
    assert small.meta["data"].startswith("synthetic") and "torch" in small.meta


def test_fit_identity_learns_population_statistics():
    r = experiments.fit_identity(loc=-1.0, scale=0.5, num_steps=300, seed=0)
    assert len(r.data["gamma"]) == 301
    assert abs(r.data["beta"][-50:].mean() + 1.0) < 0.05
    assert abs(r.data["gamma"][-50:].mean() - 0.5) < 0.05
    assert r.data["loss"][-50:].mean() < 0.1 * r.data["loss"][0]


def test_backward_timing_shapes():
    r = experiments.backward_timing(batch_sizes=(8, 32), num_features=16, repeats=2)
    assert r.data["staged_s"].shape == (2,) and np.all(r.data["compact_s"] > 0)
    np.testing.assert_allclose(r.data["speedup"], r.data["staged_s"] / r.data["compact_s"])


def test_result_roundtrip(tmp_path):
    r = experiments.bn_activations(batch_size=4, num_batches=3)
    back = Result.load(r.save(tmp_path / "r.json"))
    assert back.name == r.name and back.config == r.config and back.meta == r.meta
    for k, v in r.data.items():
        np.testing.assert_array_equal(back.data[k], v)


def test_plots_draw_and_reject_wrong_result():
    figs = [
        plots.plot_bn_activations(experiments.bn_activations(batch_size=16, num_batches=10)),
        plots.plot_identity_fit(experiments.fit_identity(num_steps=10)),
        plots.plot_backward_timing(experiments.backward_timing(batch_sizes=(8, 16), num_features=4, repeats=1)),
    ]
    for fig in figs:
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel(), "every axis is labelled"
        plt.close(fig)
    with pytest.raises(ValueError, match="bn_activations"):
        plots.plot_bn_activations(experiments.fit_identity(num_steps=2))


def test_widget_reruns_on_change():
    panel = panels.live(panels.bn_panel(batch_size=16), draw=False)
    controls = panel.children[0].children
    stats = panel.children[1]
    before = stats.value
    controls[0].value = 64  # batch size
    assert stats.value != before and "after BN" in stats.value
    controls[1].value = "bimodal"
    assert "after BN" in stats.value
    assert "std of mu_B" in panels.format_bn_stats(experiments.bn_activations(batch_size=4, num_batches=2))


def test_show_figure_replaces_the_output_and_closes_the_figure():
    import ipywidgets

    out = ipywidgets.Output()
    for value in (1, 2):
        fig, ax = plt.subplots()
        ax.plot([0, value])
        panels.show_figure(out, fig)
        assert not plt.fignum_exists(fig.number), "the figure is closed once shown"
    assert len(out.outputs) <= 1, "each figure replaces the previous one"


def test_glue_prints_outside_the_book_build_without_myst_nb(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "myst_nb" else real(name, *a))
    monkeypatch.delenv("BNCOURSE_BOOK_BUILD", raising=False)
    glue("answer", 42)
    assert "answer = 42" in capsys.readouterr().out


@pytest.mark.parametrize("display", [False, True])
def test_glue_writes_the_record_myst_nb_reads(monkeypatch, display):
    """In the book build, bncourse's glue displays exactly what ``myst_nb.glue`` displays, and MyST-NB finds it."""
    import nbformat
    from myst_nb.ext import glue as myst_glue

    import bncourse.glue

    shown = {}
    for module, key in ((bncourse.glue, "ours"), (myst_glue, "myst")):
        monkeypatch.setattr(module, "ipy_display", lambda data, key=key, **kw: shown.update({key: (data, kw)}))
    monkeypatch.setenv("BNCOURSE_BOOK_BUILD", "1")
    glue("acc", 0.9125, display=display)
    myst_glue.glue("acc", 0.9125, display=display)
    assert shown["ours"] == shown["myst"]
    data, kw = shown["ours"]
    out = nbformat.v4.new_output("display_data", data=data, metadata=kw["metadata"])
    cell = nbformat.v4.new_code_cell("glue('acc', 0.9125)", outputs=[out])
    found = dict(myst_glue.extract_glue_data_cell(cell))
    assert found["acc"]["data"]["text/plain"] == "0.9125"
    monkeypatch.setenv("BNCOURSE_BOOK_BUILD", "0")  # outside the build, MyST-NB installed: still its record
    shown.clear()
    glue("acc", 0.9125, display=display)
    assert shown.get("ours") == (data, kw)
