"""Regenerate the book's stored results: ``python -m bncourse.reproduce figure1-full`` (or ``--all``).

Each result is written to ``<out>/<name>.json`` (default: ``$BNCOURSE_RESULTS`` if set, else the package's
``bncourse/stored/``, where the book reads them; set ``BNCOURSE_RESULTS`` to a folder of your own to use
your runs instead of the shipped ones) with its config, the data and device it ran on, the
torch version, the wall time and the command that made it. Run on a GPU for the paper-scale settings; on
a CPU the same command works, more slowly.

Every option is checked before anything runs: an option that a named experiment does not take (see
:data:`OPTIONS`), a device this machine does not have, ``--workers`` (or ``$BNCOURSE_WORKERS``) outside 1 to
1024, ``--all`` together with names, an empty ``--out``, an ``--out`` that is a file or cannot be written, or a
result file that already exists (replace it with ``--force``) ends the command with one line and exit status 2.
With ``--all``, ``--device`` and ``--workers`` go to the experiments that take them.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bncourse.argparsing import Parser, bounded_int, check_device

if TYPE_CHECKING:  # imported by the experiments when they run: a wrong option fails without loading torch
    from bncourse.experiments import Result

__all__ = ["OPTIONS", "RESULTS", "main", "run"]

MAX_WORKERS = 1024  # --workers and $BNCOURSE_WORKERS

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
# name -> the command-line options its function takes (the others take none); tests compare with the signatures
OPTIONS: dict[str, tuple[str, ...]] = {
    "batchsize-full": ("device", "workers"),
    "norms-batchsize-full": ("device", "workers"),
}


def run(name: str, **options) -> Result:
    """Run the stored experiment ``name`` (a key of :data:`RESULTS`) and return its result.

    ``options`` (``device``, ``workers``) go to the experiments that take them (:data:`OPTIONS`); the others
    ignore them (:func:`main` refuses them for an experiment named on the command line).
    """
    module, function = RESULTS[name]
    fn = getattr(importlib.import_module(module), function)
    accepted = inspect.signature(fn).parameters
    return fn(**{k: v for k, v in options.items() if v is not None and k in accepted})


def _default_out() -> Path:
    """Where the book reads stored results first (:func:`bncourse.result.stored_folders`): ``$BNCOURSE_RESULTS``
    if set, else the package's ``stored/``. Imported here, after the options are checked (it loads torch)."""
    from bncourse.result import stored_folders

    return stored_folders()[0]


def main(argv: list[str] | None = None) -> list[Path]:
    """Run the named stored experiments and write them under ``--out``; returns the written paths.

    Every option is checked first; a wrong one exits with status 2 and a one-line message.
    """
    p = Parser(prog="python -m bncourse.reproduce", description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"one or more of {sorted(RESULTS)}")
    p.add_argument("--all", action="store_true", help="regenerate every stored result")
    p.add_argument("--out", default=None, help="output folder (default: $BNCOURSE_RESULTS, else bncourse/stored/)")
    p.add_argument("--force", action="store_true", help="replace result files that already exist in --out")
    p.add_argument("--device", default=None, help="cuda or cpu, for the sweeps that take it (default: cuda if any)")
    p.add_argument("--workers", type=bounded_int(1, MAX_WORKERS), default=None,
                   help="processes for the sweeps of many small runs (default: $BNCOURSE_WORKERS or 1)")  # fmt: skip
    args = p.parse_args(argv)
    if args.all and args.names:
        p.error(f"give --all or names, not both (got --all and {' '.join(args.names)})")
    names = sorted(RESULTS) if args.all else list(dict.fromkeys(args.names))
    unknown = [n for n in names if n not in RESULTS]
    if unknown:
        p.error(f"unknown experiment {', '.join(map(repr, unknown))}; choose from {', '.join(sorted(RESULTS))}")
    if not names:
        p.error(f"name one or more experiments ({', '.join(sorted(RESULTS))}) or give --all")
    for option in ("device", "workers"):
        takers = [n for n in sorted(RESULTS) if option in OPTIONS.get(n, ())]
        refusing = [n for n in names if option not in OPTIONS.get(n, ())]
        if getattr(args, option) is not None and not args.all and refusing:
            p.error(f"--{option} is not an option of {', '.join(refusing)} (only of {', '.join(takers)})")
    if args.device is not None:
        try:
            check_device(args.device)
        except ValueError as e:
            p.error(f"argument --device: {e}")
    uses_workers = any("workers" in OPTIONS.get(n, ()) for n in names)
    if uses_workers and args.workers is None and os.environ.get("BNCOURSE_WORKERS", "").strip():
        try:  # the sweeps read it when they start (bncourse.training.pool.default_workers): check it now
            bounded_int(1, MAX_WORKERS)(os.environ["BNCOURSE_WORKERS"].strip())
        except argparse.ArgumentTypeError as e:
            p.error(f"BNCOURSE_WORKERS={os.environ['BNCOURSE_WORKERS']!r}: {e}")
    if args.out is not None and not args.out.strip():
        p.error("--out is empty (leave it out for the default folder)")
    out = Path(args.out) if args.out is not None else _default_out()
    if out.exists() and not out.is_dir():
        p.error(f"--out {out} is a file, not a folder")
    existing = [str(out / f"{n}.json") for n in names if (out / f"{n}.json").exists()]
    if existing and not args.force:
        verb = "exists" if len(existing) == 1 else "exist"
        p.error(f"{', '.join(existing)} already {verb}; add --force to replace, or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        p.error(f"--out {out}: cannot create the folder ({e.strerror or e})")
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        p.error(f"--out {out}: cannot write there ({e.strerror or e})")
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
