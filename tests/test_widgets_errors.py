"""A value that a panel's control does not offer is refused with a message naming the control, before any data
is loaded or model trained (not ipywidgets' bare "Invalid selection", not a silent clamp): an initial value, or a
value of the static grid that precomputed runs give."""

from types import SimpleNamespace

import pytest

from bncourse import panels

NORMS_RESULT = SimpleNamespace(data={"batch_size": [32, 8, 2, 32]})
SWEEP = SimpleNamespace(data={"batch_sizes": [32, 16, 4]}, config={"norms": ["none", "bn", "ln"]})
NO_DATA = {"dataset": "no-such-data"}  # the check comes before the dataset is loaded
SGD_SWEEP = SimpleNamespace(data={"lrs": [0.1, 0.3], "init_stds": [0.5, 3.0]}, config={"num_examples": 600})
LENET_SWEEP = SimpleNamespace(config={"lrs": (0.3, 0.9), "seeds": (0, 5), "batch_size": 64})
BUILD = {
    "bn_panel": panels.bn_panel,
    "lenet_panel": lambda **kw: panels.lenet_panel(**kw, **NO_DATA),
    "norms_panel": lambda **kw: panels.norms_panel(NORMS_RESULT, **kw),
    "sgd_panel": lambda **kw: panels.sgd_panel(**kw, **NO_DATA),
    "batchsize_panel": lambda **kw: panels.batchsize_panel(SWEEP, **kw),
    "critique_panel": panels.critique_panel,
    "running_stats_panel": panels.running_stats_panel,
}
OPTION = "is not an option of the"
RANGE = "is outside the"


@pytest.mark.parametrize(
    ("panel", "kwargs", "expected"),
    [
        ("bn_panel", {"dist": "normall"}, f"dist='normall' {OPTION} 'input' control; choose one of 'normal'"),
        ("bn_panel", {"batch_size": 1000}, f"batch_size=1000 {RANGE} 'batch size m' slider's range 2 to 256"),
        ("bn_panel", {"scale": 0.0}, f"scale=0.0 {RANGE} 'input std' slider's range 0.1 to 10.0"),
        ("bn_panel", {"loc": -11}, f"loc=-11 {RANGE} 'input mean' slider's range -10.0 to 10.0"),
        ("lenet_panel", {"batch_size": 100}, f"batch_size=100 {OPTION} 'batch size' control; choose one of 16, 32"),
        ("lenet_panel", {"seed": 7}, f"seed=7 {OPTION} 'seed' control; choose one of 0, 1, 2"),
        ("lenet_panel", {"bn": "yes"}, f"bn='yes' {OPTION} 'with BN / without BN' control"),
        ("lenet_panel", {"sweep": LENET_SWEEP}, f"grid value of seed=5 {OPTION} 'seed' control"),
        ("norms_panel", {"norm": "bnn"}, f"norm='bnn' {OPTION} 'norm' control; choose one of 'bn', 'ln', 'in'"),
        ("norms_panel", {"batch_size": 4}, f"batch_size=4 {OPTION} 'batch size' control; choose one of 32, 8, 2"),
        ("sgd_panel", {"batch_size": 64}, f"batch_size=64 {OPTION} 'batch size' control; choose one of 15, 30"),
        ("sgd_panel", {"init_std": 0.3}, f"init_std=0.3 {OPTION} 'init std' control"),
        ("sgd_panel", {"lr": 30.0}, f"lr=30.0 {RANGE} 'learning rate' slider's range 0.01 to 10.0"),
        ("sgd_panel", {"sweep": SGD_SWEEP}, f"grid value of init_std=3.0 {OPTION} 'init std' control"),
        ("sgd_panel", {"lr": 1.0, "sweep": SGD_SWEEP}, "the static grid of the 'learning rate' control must show"),
        ("batchsize_panel", {"batch_size": 8}, f"batch_size=8 {OPTION} 'examples per statistic b' control; choose"),
        ("batchsize_panel", {"norm": "gn"}, f"norm='gn' {OPTION} 'norm' control; choose one of 'none', 'bn', 'ln'"),
        ("critique_panel", {"noise": None}, f"noise=None {OPTION} 'noise off / noise on' control"),
        ("running_stats_panel", {"momentum": 2.0}, f"momentum=2.0 {RANGE} 'momentum (PyTorch)' slider's range"),
        ("running_stats_panel", {"num_steps": 5}, f"num_steps=5 {RANGE} 'steps' slider's range 10 to 3000"),
    ],
)
def test_a_value_outside_a_controls_options_names_the_control(panel, kwargs, expected):
    with pytest.raises(ValueError) as info:
        BUILD[panel](**kwargs)
    assert str(info.value).startswith(f"{panel}: {expected}"), str(info.value)
    assert "\n" not in str(info.value)


def test_values_inside_the_options_build_the_panel():
    panel = panels.live(panels.bn_panel(batch_size=2, dist="uniform", loc=-10.0, scale=10.0), draw=False)
    assert [c.value for c in panel.children[0].children] == [2, "uniform", -10.0, 10.0]
    panel = panels.live(panels.norms_panel(NORMS_RESULT, norm="in", batch_size=8), draw=False)
    assert [c.value for c in panel.children[0].children] == ["in", 8]


def test_check_option_and_check_range_name_the_panel_argument_and_control():
    panels.check_option("p", "a", "c", 2, [1, 2])
    panels.check_range("p", "a", "c", 1.0, 1.0, 2.0)
    with pytest.raises(ValueError, match=r"^p: a=3 is not an option of the 'c' control; choose one of 1, 2$"):
        panels.check_option("p", "a", "c", 3, [1, 2])
    with pytest.raises(ValueError, match=r"^p: a=2.5 is outside the 'c' slider's range 1.0 to 2.0$"):
        panels.check_range("p", "a", "c", 2.5, 1.0, 2.0)
