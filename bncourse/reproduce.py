"""Regenerate the book's stored results: ``python -m bncourse.reproduce figure1-full`` (or ``--all``).

Each result is written to ``<out>/<name>.json`` (default: ``$BNCOURSE_RESULTS`` if set, else the package's
``bncourse/stored/``, where the book reads them; set ``BNCOURSE_RESULTS`` to a folder of your own to use
your runs instead of the shipped ones) with its config, the data and device it ran on, the
torch version, the wall time and the command that made it. Run on a GPU for the paper-scale settings; on
a CPU the same command works, more slowly.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import shlex
import sys
from pathlib import Path

from bncourse.experiments import Result
from bncourse.experiments.result import stored_folders

__all__ = ["RESULTS", "main", "run"]

# name -> (module, function): imported only when that result is regenerated
RESULTS: dict[str, tuple[str, str]] = {
    "figure1-full": ("bncourse.experiments.figure1", "figure1_full"),
    "lr-ladder-full": ("bncourse.experiments.ladder", "lr_ladder_full"),
    "santurkar-vgg-full": ("bncourse.experiments.critique", "santurkar_vgg_full"),
    "santurkar-dln-full": ("bncourse.experiments.critique", "santurkar_dln_full"),
    "batchsize-full": ("bncourse.experiments.batchsize", "batchsize_full"),
    "sgd-throughput-full": ("bncourse.experiments.sgd", "throughput_full"),
    "norms-batchsize-full": ("bncourse.experiments.norms_compare", "norms_batchsize_full"),
    "lenet-fashion-full": ("bncourse.experiments.conv", "lenet_fashion_full"),
}


def run(name: str, **options) -> Result:
    """Run the stored experiment ``name`` (a key of :data:`RESULTS`) and return its result.

    ``options`` (``device``, ``workers``) go to the experiments that take them; the others ignore them.
    """
    module, function = RESULTS[name]
    fn = getattr(importlib.import_module(module), function)
    accepted = inspect.signature(fn).parameters
    return fn(**{k: v for k, v in options.items() if v is not None and k in accepted})


def main(argv: list[str] | None = None) -> list[Path]:
    """Run the named stored experiments and write them under ``--out``; returns the written paths."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"one or more of {sorted(RESULTS)}")
    p.add_argument("--all", action="store_true", help="regenerate every stored result")
    p.add_argument("--out", default=None, help="output folder (default: $BNCOURSE_RESULTS, else bncourse/stored/)")
    p.add_argument("--device", default=None, help="cuda or cpu, for the sweeps that take it (default: cuda if any)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes for the sweeps of many small runs (default: $BNCOURSE_WORKERS or 1)")  # fmt: skip
    args = p.parse_args(argv)
    names = sorted(RESULTS) if args.all else args.names
    unknown = [n for n in names if n not in RESULTS]
    if unknown or not names:
        p.error(f"choose from {sorted(RESULTS)} or --all; got {names}")
    out = Path(args.out) if args.out else stored_folders()[0]
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m bncourse.reproduce " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    written = []
    for name in names:
        result = run(name, device=args.device, workers=args.workers)
        result.meta["command"] = command.strip()
        written.append(result.save(out / f"{name}.json"))
        print(f"wrote {written[-1]} ({result.meta.get('data')}, {result.meta.get('device')})")
    return written


if __name__ == "__main__":
    main()
