"""One panel spec feeds the live widget and the static grid: the same compute and draw, the same controls."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import ipywidgets
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from bncourse import panels
from bncourse.panels import Control, Panel

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _fig(*_args, **_kwargs):
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    return fig


def _spec(calls: list, slow: bool = False, describe=True) -> Panel:
    """A panel whose compute records its arguments: a, a slider shown at 1 and 3; b, toggles; c, fixed."""
    return Panel(
        "toy_panel",
        (
            Control("a", "size a", "int", 1, low=0, high=5, grid=(1, 3)),
            Control("b", "b on / off", "toggle", True, (("on", True), ("off", False)), grid=(True, False)),
            Control("c", "mode", "choice", "x", ("x", "y")),
        ),
        lambda **values: calls.append(values) or values,
        _fig,
        (lambda r: f"a={r['a']} b={r['b']} c={r['c']}") if describe else None,
        alt="toy",
        slow=slow,
    )


def _frames(html: str) -> dict:
    return dict(re.findall(r'"(\d+,\d+)": "([A-Za-z0-9+/=]+)"', html))


def test_control_values_labels_and_widgets_of_every_kind():
    toggle = Control("b", "b on / off", "toggle", False, (("on", True), ("off", False)))
    assert toggle.values() == [True, False] and toggle.shown(True) == "on" and toggle.shown(False) == "off"
    assert Control("n", "n", "choice", 2, (1, 2)).shown(2) == 2
    kinds = {
        "int": (ipywidgets.IntSlider, {"low": 0, "high": 9}),
        "float": (ipywidgets.FloatSlider, {"low": -1.0, "high": 1.0, "step": 0.5}),
        "log": (ipywidgets.FloatLogSlider, {"low": 0.01, "high": 10.0, "step": 0.25}),
        "choice": (ipywidgets.Dropdown, {"options": (1, 2)}),
        "toggle": (ipywidgets.ToggleButtons, {"options": (("on", True), ("off", False))}),
        "steps": (ipywidgets.SelectionSlider, {"options": (0.1, 1.0)}),
    }
    values = {"int": 3, "float": 0.5, "log": 0.1, "choice": 2, "toggle": True, "steps": 1.0}
    for kind, (cls, fields) in kinds.items():
        w = Control("v", "the v", kind, values[kind], **fields).widget(continuous=False)
        assert isinstance(w, cls) and w.value == pytest.approx(values[kind]), kind
    log = Control("v", "the v", "log", 0.1, low=0.01, high=10.0, step=0.25).widget()
    assert (log.min, log.max, log.base) == (-2.0, 1.0, 10) and log.description == "the v"
    assert Control("v", "the v", "float", 0.0, low=-1.0, high=1.0).widget(continuous=False).continuous_update is False
    with pytest.raises(ValueError, match="^p: v=7 is outside the 'the v' slider's range 0 to 5$"):
        Control("v", "the v", "int", 1, low=0, high=5).check("p", "v", 7)


def test_panel_checks_values_and_grid_naming_the_control():
    calls: list = []
    spec = _spec(calls)
    assert spec.values() == {"a": 1, "b": True, "c": "x"}
    assert spec.figure(a=2, b=False, c="y").axes and calls == [{"a": 2, "b": False, "c": "y"}]
    plt.close("all")
    a = Control("a", "size a", "int", 2, low=0, high=5, grid=(1, 3))
    with pytest.raises(ValueError, match="^p: the static grid of the 'size a' control must show its value 2; it shows"):
        Panel("p", (a,), dict, _fig)
    with pytest.raises(ValueError, match="^p: grid value of a=9 is outside the 'size a' slider's range 0 to 5$"):
        Panel("p", (Control("a", "size a", "int", 1, low=0, high=5, grid=(1, 9)),), dict, _fig)
    with pytest.raises(ValueError, match="^p: c='z' is not an option of the 'mode' control"):
        Panel("p", (Control("c", "mode", "choice", "z", ("x", "y")),), dict, _fig)


def test_live_recomputes_describes_and_redraws_on_change(monkeypatch):
    shown = []
    monkeypatch.setattr(panels, "show_figure", lambda out, fig: shown.append((out, fig)) or plt.close(fig))
    calls: list = []
    panel = panels.live(_spec(calls), draw=True)
    row, label, out = panel.children
    a, b, c = row.children
    assert calls == [{"a": 1, "b": True, "c": "x"}] and label.value == "<small>a=1 b=True c=x</small>"
    assert len(shown) == 1 and shown[0][0] is out
    b.value = False
    c.value = "y"
    assert calls[-1] == {"a": 1, "b": False, "c": "y"} and "c=y" in label.value and len(shown) == 3
    assert isinstance(a, ipywidgets.IntSlider) and a.description == "size a" and b.description == ""


def test_live_without_draw_fast_describes_slow_waits_and_no_describe_has_no_label(monkeypatch):
    shown = []
    monkeypatch.setattr(panels, "show_figure", lambda out, fig: shown.append(out) or plt.close(fig))
    calls: list = []
    row, label, out = panels.live(_spec(calls), draw=False).children
    assert len(calls) == 1 and "a=1" in label.value and not shown  # fast: the line at once, no figure
    slow: list = []
    row, label, out = panels.live(_spec(slow, slow=True), draw=False).children
    assert not slow and label.value == "" and row.children[0].continuous_update is False
    row.children[0].value = 4  # now it computes
    assert slow == [{"a": 4, "b": True, "c": "x"}] and "a=4" in label.value and shown == [out]
    assert len(panels.live(_spec([], describe=False)).children) == 2
    plt.close("all")


def test_static_grid_draws_every_grid_point_with_the_fixed_values():
    calls: list = []
    html = panels.static_grid(_spec(calls), dpi=20, title="Toy")
    assert sorted((c["a"], c["b"], c["c"]) for c in calls) == sorted((a, b, "x") for a in (1, 3) for b in (True, False))
    assert set(_frames(html)) == {"0,0", "0,1", "1,0", "1,1"}
    assert 'data-control="size a"' in html and 'data-control="b on / off"' in html and 'data-control="mode"' not in html
    assert ">on</option>" in html and ">off</option>" in html and 'alt="toy"' in html and "Toy" in html
    captions = json.loads(html.split("data-captions>")[1].split("</script>")[0])
    assert captions == {
        f"{i},{j}": f"a={a} b={b} c=x" for i, a in enumerate((1, 3)) for j, b in enumerate((True, False))
    }
    assert "data-captions>" not in panels.static_grid(_spec([], describe=False), dpi=20)
    assert 'alt="other"' in panels.static_grid(_spec([]), alt="other", dpi=20)
    plt.close("all")


def test_show_has_the_grid_only_in_the_book_build(monkeypatch):
    monkeypatch.delenv("BNCOURSE_BOOK_BUILD", raising=False)
    calls: list = []
    bundle = panels.show(_spec(calls), draw=False)._repr_mimebundle_()
    assert WIDGET_VIEW in bundle and "bncourse-static-view" not in bundle.get("text/html", "") and len(calls) == 1
    monkeypatch.setenv("BNCOURSE_BOOK_BUILD", "1")
    built = panels.show(_spec(calls), dpi=20)._repr_mimebundle_()
    assert WIDGET_VIEW in built and "bncourse-static-view" in built["text/html"] and len(calls) == 1 + 1 + 4
    assert "bncourse-static-view" not in panels.show(_spec([]), static=False)._repr_mimebundle_().get("text/html", "")
    plt.close("all")


def test_show_figure_replaces_the_output_and_closes_the_figure():
    out = ipywidgets.Output()
    for _ in (1, 2):
        fig = _fig()
        panels.show_figure(out, fig)
        assert not plt.fignum_exists(fig.number)
    assert len(out.outputs) <= 1


def test_sgd_panel_looks_the_sweep_up_and_trains_only_outside_it(monkeypatch):
    from bncourse.experiments import sgd_sensitivity as exp_sens
    from bncourse.plots import sgd as plot_sgd

    sweep = SimpleNamespace(data={"lrs": [0.1, 0.3], "init_stds": [0.5, 1.0]}, config={"num_examples": 600})
    looked, trained = [], []
    monkeypatch.setattr(exp_sens, "select_run", lambda s, **v: looked.append(v) or ("run", v))
    monkeypatch.setattr(exp_sens, "lr_init_sweep", lambda **kw: trained.append(kw) or ("trained", kw))
    monkeypatch.setattr(plot_sgd, "plot_training_curves", lambda r, reference: _fig())
    monkeypatch.setattr(panels, "format_sgd_run", lambda r: f"{r[0]} {sorted(r[1].items())}")
    spec = panels.sgd_panel(lr=0.3, init_std=0.5, dataset=SimpleNamespace(), sweep=sweep)
    assert set(_frames(panels.static_grid(spec, dpi=20))) == {"0,0", "0,1", "1,0", "1,1"}
    assert len(looked) == 4 and not trained
    monkeypatch.setattr(exp_sens, "select_run", lambda s, **v: (_ for _ in ()).throw(ValueError("no run")))
    assert spec.compute(lr=2.0, batch_size=30, init_std=4.0)[0] == "trained"
    assert trained[0]["num_examples"] == 600 and trained[0]["batch_sizes"] == (30,)
    plt.close("all")


def test_lenet_panel_looks_the_sweep_up_at_its_batch_size(monkeypatch):
    from bncourse.experiments import conv as exp_conv

    sweep = SimpleNamespace(config={"lrs": (0.3, 0.9), "seeds": (0, 1), "batch_size": 64, "num_steps": 8})
    monkeypatch.setattr(exp_conv, "select_runs", lambda s, lr, bn, seed: ("run", lr, bn, seed))
    monkeypatch.setattr(exp_conv, "lenet_sweep", lambda **kw: ("trained", kw))
    spec = panels.lenet_panel(sweep=sweep, dataset=SimpleNamespace())
    assert spec.values() == {"lr": 0.3, "bn": True, "batch_size": 64, "seed": 0}
    assert [c.grid for c in spec.controls] == [(0.3, 0.9), (True, False), (), (0, 1)]
    assert spec.compute(lr=0.9, bn=False, batch_size=64, seed=1) == ("run", 0.9, False, 1)
    kind, kw = spec.compute(lr=0.9, bn=False, batch_size=32, seed=1)
    assert kind == "trained" and kw["num_steps"] == 8 and kw["norms"] == (None,) and kw["eval_every"] == 1


def test_critique_panel_trains_a_new_learning_rate_once(monkeypatch):
    from bncourse.experiments import critique as exp_critique

    runs = []
    monkeypatch.setattr(exp_critique, "critique_run", lambda lr, **kw: runs.append(lr) or f"result {lr}")
    results = {0.1: "result 0.1"}
    spec = panels.critique_panel(results, bn=True, noise=False, lr=0.1)
    assert spec.controls[2].grid == (0.1,)
    assert spec.compute(bn=True, noise=True, lr=0.1) == ("result 0.1", "noisy-bn")
    assert spec.compute(bn=False, noise=True, lr=0.1)[1] == "standard"
    assert spec.compute(bn=True, noise=False, lr=0.5) == ("result 0.5", "bn") and runs == [0.5]
    spec.compute(bn=True, noise=False, lr=0.5)
    assert runs == [0.5] and 0.5 in results


def test_format_lenet_run_says_whether_the_run_was_trained_alone_or_in_a_sweep():
    import numpy as np

    data = {"bn": [True], "lr": [0.3], "test_acc": np.array([[0.5, 0.8]]), "steps": np.array([0, 400])}
    meta = {"train_wall_time_s": 12.0, "device": "cpu"}
    alone = SimpleNamespace(
        data=data, meta=meta, config={"lrs": [0.3], "seeds": [0], "norms": ["bn"], "batch_size": 64}
    )
    line = panels.format_lenet_run(alone)
    assert line == "LeNet with BN, lr 0.3, batch 64: test accuracy 0.800 after 400 steps (trained in 12.0 s on cpu)"
    sweep = SimpleNamespace(data=data, meta=meta, config={**alone.config, "lrs": [0.3, 0.9], "norms": ["none", "bn"]})
    assert panels.format_lenet_run(sweep).endswith("(one of 4 runs trained in 12.0 s on cpu)")
