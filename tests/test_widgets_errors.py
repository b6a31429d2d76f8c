"""An initial value that a panel's control does not offer is refused with a message naming the control,
before any data is loaded or model trained (not ipywidgets' bare "Invalid selection", not a silent clamp)."""

from types import SimpleNamespace

import pytest

from bncourse import widgets

NORMS_RESULT = SimpleNamespace(data={"batch_size": [32, 8, 2, 32]})
SWEEP = SimpleNamespace(data={"batch_sizes": [32, 16, 4]}, config={"norms": ["none", "bn", "ln"]})
NO_DATA = {"dataset": "no-such-data"}  # the check comes before the dataset is loaded
BUILD = {
    "bn_explorer": lambda **kw: widgets.bn_explorer(**kw, draw=False),
    "lenet_explorer": lambda **kw: widgets.lenet_explorer(**kw, **NO_DATA, draw=False),
    "norms_explorer": lambda **kw: widgets.norms_explorer(NORMS_RESULT, **kw, draw=False),
    "sgd_explorer": lambda **kw: widgets.sgd_explorer(**kw, **NO_DATA, draw=False),
    "batchsize_explorer": lambda **kw: widgets.batchsize_explorer(SWEEP, **kw, draw=False),
    "critique_explorer": lambda **kw: widgets.critique_explorer(**kw, draw=False),
}
OPTION = "is not an option of the"
RANGE = "is outside the"


@pytest.mark.parametrize(
    ("panel", "kwargs", "expected"),
    [
        ("bn_explorer", {"dist": "normall"}, f"dist='normall' {OPTION} 'input' control; choose one of 'normal'"),
        ("bn_explorer", {"batch_size": 1000}, f"batch_size=1000 {RANGE} 'batch size m' slider's range 2 to 256"),
        ("bn_explorer", {"scale": 0.0}, f"scale=0.0 {RANGE} 'input std' slider's range 0.1 to 10.0"),
        ("bn_explorer", {"loc": -11}, f"loc=-11 {RANGE} 'input mean' slider's range -10.0 to 10.0"),
        ("lenet_explorer", {"batch_size": 100}, f"batch_size=100 {OPTION} 'batch size' control; choose one of 16, 32"),
        ("lenet_explorer", {"seed": 7}, f"seed=7 {OPTION} 'seed' control; choose one of 0, 1, 2"),
        ("lenet_explorer", {"bn": "yes"}, f"bn='yes' {OPTION} 'with BN / without BN' control"),
        ("norms_explorer", {"norm": "bnn"}, f"norm='bnn' {OPTION} 'norm' control; choose one of 'bn', 'ln', 'in'"),
        ("norms_explorer", {"batch_size": 4}, f"batch_size=4 {OPTION} 'batch size' control; choose one of 32, 8, 2"),
        ("sgd_explorer", {"batch_size": 64}, f"batch_size=64 {OPTION} 'batch size' control; choose one of 15, 30"),
        ("sgd_explorer", {"init_std": 0.3}, f"init_std=0.3 {OPTION} 'init std' control"),
        ("sgd_explorer", {"lr": 30.0}, f"lr=30.0 {RANGE} 'learning rate' slider's range 0.01 to 10.0"),
        ("batchsize_explorer", {"batch_size": 8}, f"batch_size=8 {OPTION} 'examples per statistic b' control; choose"),
        ("batchsize_explorer", {"norm": "gn"}, f"norm='gn' {OPTION} 'norm' control; choose one of 'none', 'bn', 'ln'"),
        ("critique_explorer", {"noise": None}, f"noise=None {OPTION} 'noise off / noise on' control"),
    ],
)
def test_a_value_outside_a_controls_options_names_the_control(panel, kwargs, expected):
    with pytest.raises(ValueError) as info:
        BUILD[panel](**kwargs)
    assert str(info.value).startswith(f"{panel}: {expected}"), str(info.value)
    assert "\n" not in str(info.value)


def test_values_inside_the_options_build_the_panel():
    panel = widgets.bn_explorer(batch_size=2, dist="uniform", loc=-10.0, scale=10.0, draw=False)
    size, kind = panel.children[0].children
    assert (size.value, kind.value) == (2, "uniform")
    panel = widgets.norms_explorer(NORMS_RESULT, norm="in", batch_size=8, draw=False)
    assert [c.value for c in panel.children[0].children] == ["in", 8]
