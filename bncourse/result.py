"""The result object every experiment returns, and the metadata it carries."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["Result", "full_scale_note", "load_stored", "make_meta", "stored_folders"]


def stored_folders() -> list[Path]:
    """Where stored results are looked for, first match wins: ``$BNCOURSE_RESULTS`` (a reader's own
    regenerated results, if set), then the results that ship inside the package (``bncourse/stored/``, package
    data), so they are found from any working directory, on Colab too."""
    own = os.environ.get("BNCOURSE_RESULTS")
    return ([Path(own)] if own else []) + [Path(str(resources.files("bncourse") / "stored"))]


@dataclass
class Result:
    """What an experiment returns: its name, the config it ran with, its arrays, and metadata."""

    name: str
    config: dict[str, Any]
    data: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON (arrays become nested lists)."""
        path = Path(path)
        payload = {
            "name": self.name,
            "config": self.config,
            "meta": self.meta,
            "data": {k: np.asarray(v).tolist() for k, v in self.data.items()},
        }
        path.write_text(json.dumps(payload, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Result:
        """Read a result written by :meth:`save`; lists come back as numpy arrays."""
        payload = json.loads(Path(path).read_text())
        data = {k: np.asarray(v) for k, v in payload["data"].items()}
        return cls(payload["name"], payload["config"], data, payload["meta"])


def load_stored(name: str, folders: Sequence[str | Path] | None = None) -> Result | None:
    """The stored result ``<folder>/<name>.json`` from the first of ``folders`` that has it, else None.

    Stored results are the GPU-scale runs written by ``python -m bncourse.reproduce <name>``. ``folders``
    defaults to :func:`stored_folders`.
    """
    for folder in stored_folders() if folders is None else folders:
        path = Path(folder) / f"{name}.json"
        if path.is_file():
            return Result.load(path)
    return None


def make_meta(data: str, started: float) -> dict[str, Any]:
    """The metadata every result carries: the data used, device, library versions and wall time so far."""
    return {
        "data": data,
        "device": "cpu",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "wall_time_s": round(time.perf_counter() - started, 4),
    }


def full_scale_note(*names: str, t4_factor: tuple[float, float] = (2.0, 4.0)) -> str:
    """One line for a chapter's setup cell: what its full-scale runs cost, from the stored runs' own wall times.

    The free Colab T4 figure is an estimate, ``t4_factor`` times the stored GPU time: these networks are small,
    so a step costs its kernel launches more than its arithmetic, and a T4 launches and runs them more slowly
    than the datacenter GPU the stored runs used. It is not a measurement.
    """
    found = [(n, load_stored(n)) for n in names]
    missing = [n for n, r in found if r is None]
    if missing:
        return f"full scale: no stored run of {', '.join(missing)} to say what it costs"
    total = sum(float(r.meta["wall_time_s"]) for _, r in found)
    devices = sorted({str(r.meta.get("device", "?")) for _, r in found})
    lo, hi = (total * f for f in t4_factor)
    return (
        f'SCALE = "full" runs {", ".join(names)}: {total:.0f} s on {" / ".join(devices)} (stored run); '
        f"a free Colab T4 should take roughly {lo:.0f}-{hi:.0f} s (an estimate, not measured)"
    )
