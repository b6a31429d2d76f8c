"""bncourse.training.mlp and bncourse.models: the batched trainer equals a plain PyTorch loop, seed for seed."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bncourse.models import MLP, LeNet, SmallVGG, make_norm, paper_mlp
from bncourse.norms import BatchNorm
from bncourse.training.mlp import RunConfig, batch_indices, stack_mlps, train_mlps

SIZES = (16, 8, 8, 3)


def _toy(seed=0, n_train=300, n_test=60):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n_train + n_test, 4, 4), dtype=np.uint8)
    y = (x.reshape(len(x), -1)[:, :8].mean(1) > 127).astype(int) + (x[:, 0, 0] > 200)  # learnable labels
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def _plain_loop(cfg, x_train, y_train, num_steps, batch_size):
    """A reader's loop: one nn.Module, torch.optim.SGD, the engine's batch order."""
    torch.manual_seed(0)
    model = MLP(SIZES, norm=cfg.norm, init=cfg.init, init_std=cfg.init_std, seed=cfg.seed).double()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    x = torch.tensor(x_train.reshape(len(x_train), -1), dtype=torch.float64) / 255
    y = torch.tensor(y_train)
    idx = batch_indices(len(x), batch_size, num_steps, cfg.data_seed)
    losses = []
    for t in range(num_steps):
        loss = F.cross_entropy(model(x[idx[t]]), y[idx[t]])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, np.array(losses)


def test_engine_equals_plain_loop():
    x_train, y_train, x_test, y_test = _toy()
    configs = [
        RunConfig(lr=0.5, norm=None, seed=1),
        RunConfig(lr=0.2, norm="bn", seed=1),
        RunConfig(lr=0.3, norm="bn", init="xavier", seed=2, data_seed=5),
    ]
    steps, bs = 30, 10
    res = train_mlps(
        configs,
        x_train,
        y_train,
        x_test,
        y_test,
        num_steps=steps,
        batch_size=bs,
        eval_every=10,
        sizes=SIZES,
        probe_size=40,
        dtype=torch.float64,
        progress=False,
    )
    assert list(res["steps"]) == [0, 10, 20, 30]
    x_te = torch.tensor(x_test.reshape(len(x_test), -1), dtype=torch.float64) / 255
    for k, cfg in enumerate(configs):
        model, losses = _plain_loop(cfg, x_train, y_train, steps, bs)
        np.testing.assert_allclose(res["train_loss"][k, 1:], losses.reshape(3, 10).mean(1), rtol=1e-10)
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        for i, lin in enumerate(linears):
            np.testing.assert_allclose(res["weights"][i][k], lin.weight.detach().numpy().T, atol=1e-12)
        model.eval()
        with torch.no_grad():
            logits, pre = model(x_te, return_preact=True)
        acc = (logits.argmax(1).numpy() == y_test).mean()
        assert res["test_acc"][k, -1] == pytest.approx(acc)
        pct = np.quantile(pre[:40, 0].numpy(), [0.15, 0.5, 0.85])
        np.testing.assert_allclose(res["percentiles"][k, -1], pct, rtol=1e-8)
        if cfg.norm == "bn":
            bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)][0]
            np.testing.assert_allclose(res["running_mean"][0][k], bn.running_mean.numpy(), atol=1e-12)


def test_engine_learns_and_rejects_bad_input():
    x_train, y_train, x_test, y_test = _toy(n_train=1000, n_test=200)
    res = train_mlps(
        [RunConfig(lr=0.5, norm="bn")],
        x_train,
        y_train,
        x_test,
        y_test,
        num_steps=300,
        batch_size=32,
        eval_every=300,
        sizes=SIZES,
        progress=False,
    )
    assert res["test_acc"][0, -1] > res["test_acc"][0, 0] + 0.1
    with pytest.raises(ValueError, match="configs"):
        train_mlps([], x_train, y_train, x_test, y_test, num_steps=1, sizes=SIZES)
    with pytest.raises(ValueError, match="batch_size"):
        train_mlps([RunConfig()], x_train, y_train, x_test, y_test, num_steps=1, batch_size=1, sizes=SIZES)
    with pytest.raises(ValueError, match="activation"):
        train_mlps(
            [RunConfig(), RunConfig(activation="relu")], x_train, y_train, x_test, y_test, num_steps=1, sizes=SIZES
        )
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            train_mlps([RunConfig()], x_train, y_train, x_test, y_test, num_steps=1, sizes=SIZES, cuda_graph=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("steps_per_graph", [1, 10])
def test_engine_cuda_graph_equals_eager_and_cpu(steps_per_graph):
    """On CUDA the captured steps (one or ten per graph) give the eager run's and the CPU's numbers (float64)."""
    x_train, y_train, x_test, y_test = _toy()
    cfgs = [RunConfig(lr=0.3, norm=None, seed=0), RunConfig(lr=0.5, norm="bn", seed=1, data_seed=2),
            RunConfig(lr=0.5, norm="bn", init="xavier", seed=2)]  # fmt: skip
    kw = {
        "num_steps": 25,
        "batch_size": 16,
        "eval_every": 12,
        "sizes": SIZES,
        "dtype": torch.float64,
        "progress": False,
    }
    graph = train_mlps(cfgs, x_train, y_train, x_test, y_test, device="cuda", cuda_graph=True,
                       steps_per_graph=steps_per_graph, **kw)  # fmt: skip
    eager = train_mlps(cfgs, x_train, y_train, x_test, y_test, device="cuda", cuda_graph=False, **kw)
    cpu = train_mlps(cfgs, x_train, y_train, x_test, y_test, device="cpu", **kw)
    assert graph["cuda_graph"] and graph["steps_per_graph"] == steps_per_graph
    for other in (eager, cpu):
        np.testing.assert_allclose(graph["train_loss"][:, 1:], other["train_loss"][:, 1:], rtol=1e-9)
        np.testing.assert_allclose(graph["test_acc"], other["test_acc"], rtol=1e-6)  # float32 counts / n
        for a, b in zip(
            graph["weights"] + graph["running_mean"], other["weights"] + other["running_mean"], strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_batch_indices_seeded():
    a = batch_indices(100, 5, 7, 3)
    assert a.shape == (7, 5) and int(a.max()) < 100
    assert torch.equal(a, batch_indices(100, 5, 7, 3)) and not torch.equal(a, batch_indices(100, 5, 7, 4))


def test_stack_mlps_matches_single_models():
    cfgs = [RunConfig(seed=0), RunConfig(seed=1, init="xavier")]
    weights, biases, gammas, betas = stack_mlps(cfgs, SIZES)
    assert [tuple(w.shape) for w in weights] == [(2, 16, 8), (2, 8, 8), (2, 8, 3)]
    assert len(gammas) == 2 and tuple(betas[0].shape) == (2, 1, 8)
    single = MLP(SIZES, init="xavier", seed=1)
    torch.testing.assert_close(weights[0][1], single.net[0].weight.T)


@pytest.mark.parametrize("norm", [None, "bn", "bn-ours"])
def test_models_differ_only_in_norm(norm):
    base, other = paper_mlp(norm=None, seed=3), paper_mlp(norm=norm, seed=3)
    lin = lambda m: [p for n, p in m.named_parameters() if n.endswith("weight") and p.dim() == 2]  # noqa: E731
    for a, b in zip(lin(base), lin(other), strict=True):
        torch.testing.assert_close(a, b)
    out, pre = other(torch.rand(5, 1, 28, 28), return_preact=True)
    assert out.shape == (5, 10) and pre.shape == (5, 100)
    for cls, shape in ((LeNet, (4, 1, 28, 28)), (SmallVGG, (4, 3, 32, 32))):
        a, b = cls(in_channels=shape[1], norm=None, seed=1), cls(in_channels=shape[1], norm=norm, seed=1)
        convs = lambda m: [x.weight for x in m.modules() if isinstance(x, torch.nn.Conv2d)]  # noqa: E731
        assert all(torch.equal(p, q) for p, q in zip(convs(a), convs(b), strict=True))
        assert b(torch.rand(shape)).shape == (4, 10)
        pools = lambda m: [type(x) for x in m.modules() if "Pool" in type(x).__name__]  # noqa: E731
        assert pools(a) == pools(b)


def test_make_norm_and_init_errors():
    assert isinstance(make_norm("bn-ours", 4), BatchNorm)
    assert isinstance(make_norm(None, 4), torch.nn.Identity)
    with pytest.raises(ValueError, match="norm"):
        make_norm("batch-norm", 4)
    with pytest.raises(ValueError, match="init"):
        MLP(SIZES, init="orthogonal")
    with pytest.raises(ValueError, match="activation"):
        MLP(SIZES, activation="gelu")
    gaussian = MLP((784, 100, 10), init="gaussian", init_std=0.05, seed=0)
    assert abs(gaussian.net[0].weight.std().item() - 0.05) < 0.002


def test_figure1_reduced_runs_and_plots(monkeypatch, capsys):
    import matplotlib

    matplotlib.use("Agg")
    from bncourse import data, experiments, plots

    x_train, y_train, x_test, y_test = _toy(n_train=400, n_test=100)

    def load(name, **kwargs):
        if name == "mnist":
            raise data.DataError("mnist needs a download")
        grow = lambda x: np.tile(x, (1, 7, 7))  # noqa: E731  (4x4 toy images -> 28x28)
        return data.Dataset(
            name="mnist5k",
            title="toy",
            variant="test",
            source="generated",
            x_train=grow(x_train),
            y_train=y_train,
            x_test=grow(x_test),
            y_test=y_test,
            num_classes=3,
            class_names=["0", "1", "2"],
            license="none",
        )

    monkeypatch.setattr(data, "load_dataset", load)
    res = experiments.figure1(num_steps=40, eval_every=20, progress=False)
    out = capsys.readouterr().out
    assert "using the 5,000-image subset" in out and "data =" in out, "the substituted dataset is announced"
    assert res.data["test_acc"].shape == (3, 3) and res.data["percentiles"].shape == (3, 3, 3)
    assert res.config["networks"] == ["baseline", "bn", "baseline-xavier"]
    assert res.meta["dataset"] == "mnist5k"
    fig = plots.plot_figure1(res)
    assert len(fig.axes) == 3 and all(ax.get_xlabel() for ax in fig.axes)
    with pytest.raises(ValueError, match="scale"):
        experiments.figure1(scale="huge")
    nets = experiments.figure1_networks()
    assert nets["bn"].init == nets["baseline"].init and nets["bn"].norm == "bn" and nets["baseline"].norm is None


def test_bench_prints_ratios_last(capsys):
    from bncourse import bench

    ratios = bench.main(["--steps", "5", "--sweep", "2", "--repeats", "1", "--device", "cpu"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("speedup_single=") and "speedup_sweep=" in last
    assert set(ratios) == {"speedup_single", "speedup_sweep"} and all(v > 0 for v in ratios.values())


def test_train_models_equals_plain_loop_for_a_convnet():
    from bncourse.data import images_to_tensor
    from bncourse.training.loop import train_models

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (80, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 80)
    cfg = {"lr": 0.05, "norm": "bn", "seed": 2, "data_seed": 4}
    make = lambda c: LeNet(norm=c["norm"], seed=c["seed"]).double()  # noqa: E731
    torch.set_default_dtype(torch.float64)
    try:
        res = train_models(make, [cfg], x, y, x[:20], y[:20], num_steps=6, batch_size=8, eval_every=3, progress=False)
        model = make(cfg)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        xt, yt = images_to_tensor(x, "cpu", torch.float64), torch.tensor(y)
        idx = batch_indices(80, 8, 6, 4)
        losses = []
        for t in range(6):
            loss = F.cross_entropy(model(xt[idx[t]]), yt[idx[t]])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        torch.set_default_dtype(torch.float32)
    np.testing.assert_allclose(res["train_loss"][0, 1:], [np.mean(losses[:3]), np.mean(losses[3:])], rtol=1e-10)
    for p, q in zip(res["models"][0].parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert res["test_acc"].shape == (1, 3) and list(res["steps"]) == [0, 3, 6]
    with pytest.raises(ValueError):
        train_models(make, [], x, y, x, y, num_steps=1)


def test_train_models_evaluates_in_eval_mode_over_chunks():
    from bncourse.data import images_to_tensor
    from bncourse.metrics import accuracy
    from bncourse.training import loop as train

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (3 * train.EVAL_CHUNK // 2, 28, 28), dtype=np.uint8)  # more than one chunk
    y = rng.integers(0, 10, len(x))
    make = lambda c: LeNet(norm="bn", seed=0)  # noqa: E731
    res = train.train_models(make, [{"lr": 0.5}], x, y, x, y, num_steps=4, batch_size=16, eval_every=4, progress=False)
    model, xt = res["models"][0], images_to_tensor(x, "cpu")
    whole = accuracy(model, xt, torch.tensor(y), batch_size=None)  # eval mode, one pass
    chunked_in_train_mode = accuracy(model, xt, torch.tensor(y), batch_size=train.EVAL_CHUNK, train=True)
    assert res["test_acc"][0, -1] == whole != chunked_in_train_mode  # a train-mode evaluation would be caught


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_train_models_cuda_graph_equals_eager(momentum):
    """The captured step replays exactly the eager steps: losses, weights and BN running statistics."""
    from bncourse.training.loop import train_models

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 300)
    cfgs = [{"lr": 0.05, "norm": n, "seed": 1, "data_seed": 3, "momentum": momentum} for n in (None, "bn")]
    make = lambda c: LeNet(norm=c["norm"], seed=c["seed"]).double()  # noqa: E731
    torch.set_default_dtype(torch.float64)
    try:
        kw = {"num_steps": 40, "batch_size": 16, "eval_every": 10, "progress": False, "device": "cuda"}
        graph = train_models(make, cfgs, x, y, x[:100], y[:100], cuda_graph=True, **kw)
        eager = train_models(make, cfgs, x, y, x[:100], y[:100], cuda_graph=False, **kw)
    finally:
        torch.set_default_dtype(torch.float32)
    assert graph["graph_used"].all() and not eager["graph_used"].any()
    np.testing.assert_allclose(graph["train_loss"][:, 1:], eager["train_loss"][:, 1:], rtol=1e-9)
    for mg, me in zip(graph["models"], eager["models"], strict=True):
        for p, q in zip(mg.state_dict().values(), me.state_dict().values(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-11)


def test_train_models_refuses_a_graph_on_cpu():
    from bncourse.training.loop import train_models

    x = np.zeros((10, 28, 28), dtype=np.uint8)
    with pytest.raises(ValueError, match="CUDA"):
        train_models(lambda c: LeNet(), [{"lr": 0.1}], x, np.zeros(10), x, np.zeros(10), 2, batch_size=2,
                     device="cpu", cuda_graph=True)  # fmt: skip


def test_images_to_tensor_layouts():
    from bncourse.data import images_to_tensor

    gray = images_to_tensor(np.full((2, 5, 5), 255, dtype=np.uint8), "cpu")
    assert gray.shape == (2, 1, 5, 5) and float(gray.max()) == 1.0
    rgb = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    rgb[..., 2] = 255
    t = images_to_tensor(rgb, "cpu")
    assert t.shape == (2, 3, 4, 4) and float(t[:, 2].min()) == 1.0 and float(t[:, 0].max()) == 0.0


def test_reproduce_registry_points_at_functions():
    import importlib.util

    from bncourse import reproduce

    for name, (module, function) in reproduce.RESULTS.items():
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"{name}: module {module} is missing")
        assert callable(getattr(importlib.import_module(module), function)), name
    with pytest.raises(SystemExit):
        reproduce.main(["no-such-result"])


def test_common_run_checks_device_and_eval_schedule():
    from bncourse.training.common import check_run, eval_steps, run_device

    assert eval_steps(10, 4) == [0, 4, 8, 10] and eval_steps(8, 4) == [0, 4, 8] and eval_steps(0, 5) == [0]
    with pytest.raises(ValueError, match="eval_every >= 1"):
        eval_steps(10, 0)
    check_run([RunConfig()], num_steps=1, batch_size=2, eval_every=1)  # the smallest valid run
    with pytest.raises(ValueError, match="configs is empty"):
        check_run([], 10, 8, 5)
    with pytest.raises(ValueError, match="batch_size >= 2 .*got num_steps=10, eval_every=5, batch_size=1"):
        check_run([RunConfig()], 10, 1, 5)
    with pytest.raises(ValueError, match="num_steps and eval_every must be >= 1"):
        check_run([RunConfig()], 0, 8, 5)
    assert run_device("cpu", None) == (torch.device("cpu"), False)
    assert run_device("cpu", False) == (torch.device("cpu"), False)
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device"):
        run_device("cpu", True)
