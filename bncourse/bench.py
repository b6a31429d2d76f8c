"""Benchmark: a reader's plain PyTorch loop against the engine, side by side in one run.

    python -m bncourse.bench                 # CPU or GPU, default sizes
    python -m bncourse.bench --steps 200     # CI-sized

Both train the BN paper's MNIST network (784-100-100-100-10 sigmoid, batch 60, SGD) on random data of
MNIST's shape that is already on the device. The plain loop is written as a reader would: one
``nn.Module``, ``torch.optim.SGD``, ``zero_grad``/``backward``/``step``, batches sampled on the device.
The runs alternate (plain, engine, plain, engine, ...) and the best of ``--repeats`` is kept for each, so
a slow moment of the machine hits both. The last line gives the ratios. ``--steps``, ``--sweep`` and
``--repeats`` must be at least 1 (and at most 10**6, 4096 and 1000) and ``--device`` must exist here; otherwise
the command stops at once with one line and exit status 2.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from bncourse.argparsing import Parser, bounded_int, check_device
from bncourse.models import paper_mlp
from bncourse.runtime import device_name, pick_device, synchronize
from bncourse.training.mlp import RunConfig, train_mlps

__all__ = ["main", "plain_loop_seconds", "engine_seconds"]

MAX_STEPS, MAX_SWEEP, MAX_REPEATS = 10**6, 4096, 1000  # the largest --steps, --sweep and --repeats


def plain_loop_seconds(x: torch.Tensor, y: torch.Tensor, num_steps: int, norm: str | None, device) -> float:
    """Seconds for ``num_steps`` steps of the plain loop (one model), after 5 warm-up steps."""
    model = paper_mlp(norm=norm).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)

    def step():
        idx = torch.randint(0, len(x), (60,), device=device)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(num_steps):
        step()
    synchronize(device)
    return time.perf_counter() - t0


def engine_seconds(x: np.ndarray, y: np.ndarray, num_steps: int, k: int, norm: str | None, device) -> float:
    """Seconds the engine spends training ``k`` models for ``num_steps`` steps (setup and capture included,
    one evaluation at the end on 1,000 examples)."""
    configs = [RunConfig(lr=0.5, norm=norm, seed=s) for s in range(k)]
    t0 = time.perf_counter()
    train_mlps(
        configs,
        x,
        y,
        x[:1000],
        y[:1000],
        num_steps=num_steps,
        batch_size=60,
        eval_every=num_steps,
        device=device,
        progress=False,
    )
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark, print the table and, as the last line, ``speedup_single=... speedup_sweep=...``."""
    p = Parser(prog="python -m bncourse.bench", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=bounded_int(1, MAX_STEPS), default=2000, help="training steps per run")
    p.add_argument("--sweep", type=bounded_int(1, MAX_SWEEP), default=8, help="K, models in the sweep")
    p.add_argument("--repeats", type=bounded_int(1, MAX_REPEATS), default=3,
                   help="alternating repeats; the best is kept")  # fmt: skip
    p.add_argument("--norm", choices=["none", "bn"], default="bn")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    args = p.parse_args(argv)
    if args.device is not None:
        try:
            check_device(args.device)
        except ValueError as e:
            p.error(f"argument --device: {e}")
    device = pick_device(args.device)
    norm = None if args.norm == "none" else "bn"
    rng = np.random.default_rng(0)
    x_np = rng.integers(0, 256, (10_000, 784), dtype=np.uint8)
    y_np = rng.integers(0, 10, 10_000)
    x = torch.tensor(x_np, dtype=torch.float32, device=device) / 255
    y = torch.tensor(y_np, device=device)
    best = {"plain": np.inf, "engine1": np.inf, "engineK": np.inf}
    for _ in range(args.repeats):
        best["plain"] = min(best["plain"], plain_loop_seconds(x, y, args.steps, norm, device))
        best["engine1"] = min(best["engine1"], engine_seconds(x_np, y_np, args.steps, 1, norm, device))
        best["engineK"] = min(best["engineK"], engine_seconds(x_np, y_np, args.steps, args.sweep, norm, device))
    per_step = {
        "plain": best["plain"] / args.steps,
        "engine1": best["engine1"] / args.steps,
        "engineK": best["engineK"] / (args.steps * args.sweep),
    }
    print(
        f"device: {device_name(device, threads=True)} | torch {torch.__version__} | {args.steps} steps, batch 60, "
        f"norm={args.norm}, best of {args.repeats}"
    )
    print(f"{'run':<40}{'total s':>10}{'us / model-step':>18}")
    print(f"{'plain loop, 1 model':<40}{best['plain']:>10.3f}{per_step['plain'] * 1e6:>18.1f}")
    print(f"{'engine, 1 model':<40}{best['engine1']:>10.3f}{per_step['engine1'] * 1e6:>18.1f}")
    print(f"{f'engine, sweep of K={args.sweep}':<40}{best['engineK']:>10.3f}{per_step['engineK'] * 1e6:>18.1f}")
    ratios = {
        "speedup_single": per_step["plain"] / per_step["engine1"],
        "speedup_sweep": per_step["plain"] / per_step["engineK"],
    }
    print(f"speedup_single={ratios['speedup_single']:.2f} speedup_sweep={ratios['speedup_sweep']:.2f}")
    return ratios


if __name__ == "__main__":
    main()
