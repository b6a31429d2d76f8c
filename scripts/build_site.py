"""``jupyter-book build`` with the chapters executed in parallel: ``python scripts/build_site.py [JB ARGS]``.

Jupyter Book 1's command line always reads (and so executes) the pages one after the other. This runs the same
command, with two changes: Sphinx reads with ``$BNCOURSE_BUILD_JOBS`` processes (default: the number of CPUs), and
each page is its own reading task (Sphinx would otherwise hand every process a fixed block of pages, so all the
slow chapters would land in the same one). Two extensions that Jupyter Book loads do not declare whether they
are parallel safe, so Sphinx would fall back to serial reading: ``sphinx_multitoc_numbering`` (it replaces the
toctree collector's section numbering, which runs in the main process after reading) and
``sphinx_jupyterbook_latex`` (LaTeX-only transforms); both keep no per-document state, so they are declared
safe here.

The pages run in the Colab-like environment (``.venv-colab``, made by ``scripts/colab_env.sh``: Colab's versions
of ipywidgets, IPython, numpy and matplotlib, and ``bncourse`` from its wheel), each in an empty temporary folder
(``execute.run_in_temp``): the kernel named ``python3`` is that environment's Python (a kernel spec written to
``_build/jupyter``, found first through ``JUPYTER_PATH``). So the build's one execution of every page is also
the test that it runs as on Colab; ``$BNCOURSE_KERNEL_PYTHON`` names another environment's Python.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import jupyter_book.cli.main as jb
import jupyter_book.sphinx as jb_sphinx
import sphinx.builders


def one_page_per_task(docnames, nproc, maxbatch=10):
    """Sphinx's ``make_chunks`` replacement: every page is a task, so free processes take the next page."""
    return [[name] for name in docnames]


UNDECLARED = ("sphinx_multitoc_numbering", "sphinx_jupyterbook_latex")


def declare_parallel_safe(name: str) -> None:
    """Make the extension module ``name`` declare itself parallel read/write safe (its setup is kept)."""
    module = importlib.import_module(name)
    setup = module.setup

    def safe_setup(app):
        meta = setup(app) or {}
        return {**meta, "parallel_read_safe": True, "parallel_write_safe": True}

    module.setup = safe_setup


def create_execution_cache(source: str) -> None:
    """Create MyST-NB's jupyter-cache database before the reading processes start: on an empty ``_build`` the
    first two processes would otherwise both create its tables, and one fails ("table settings already
    exists")."""
    from jupyter_cache import get_cache

    get_cache(os.path.join(source, "_build", ".jupyter_cache")).list_cache_records()


ROOT = Path(__file__).resolve().parent.parent
KERNEL_PYTHON = ROOT / ".venv-colab" / "bin" / "python"
KERNEL_DIR = ROOT / "_build" / "jupyter"
KERNEL_VAR = "BNCOURSE_KERNEL_PYTHON"


def stale_files(installed: Path, checkout: Path = ROOT / "bncourse") -> list[str]:
    """The package's source files that differ between an installed copy and the checkout (or exist in one only)."""

    def sources(root: Path) -> dict[str, bytes]:
        files = [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in files if p.suffix in (".py", ".json", ".md")}

    have, want = sources(installed), sources(checkout)
    return sorted(name for name in have.keys() | want.keys() if have.get(name) != want.get(name))


def use_kernel(python: Path, jupyter_dir: Path = KERNEL_DIR, checkout: Path = ROOT / "bncourse") -> Path:
    """Make ``python3``, the kernel the pages name, run ``python``: write its kernel spec under ``jupyter_dir``
    and put that folder first on ``JUPYTER_PATH``. Refuses a Python that cannot import ``bncourse``, or whose
    installed ``bncourse`` is not the ``checkout``'s (a wheel built before the last edit). Returns the spec's
    path."""
    if not python.exists():
        raise SystemExit(f"[build] no Python at {python}: run `bash scripts/colab_env.sh` (or set {KERNEL_VAR})")
    check = "import bncourse, ipykernel, IPython, ipywidgets; print(ipywidgets.__version__, bncourse.__file__)"
    jupyter_dir.mkdir(parents=True, exist_ok=True)  # an empty folder to check from: the checkout is not on its path
    found = subprocess.run([str(python), "-c", check], capture_output=True, text=True, cwd=jupyter_dir)
    if found.returncode:
        why = (found.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"[build] the kernel's Python {python} cannot run the pages: {why}")
    ipywidgets, where = found.stdout.split()
    stale = stale_files(Path(where).parent, checkout)
    if stale:
        more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
        raise SystemExit(
            f"[build] the kernel's bncourse ({Path(where).parent}) is not the checkout's: {', '.join(stale[:3])}"
            f"{more} differ; run `bash scripts/colab_env.sh` to install a fresh wheel"
        )
    spec = jupyter_dir / "kernels" / "python3" / "kernel.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    quiet = {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}  # ipykernel 6's debugger warns about frozen modules otherwise
    spec.write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python", "env": quiet}))
    os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(jupyter_dir), os.environ.get("JUPYTER_PATH")) if p)
    print(f"[build] pages run with {python} (ipywidgets {ipywidgets}, bncourse from {where})")
    return spec


def main(argv: list[str]) -> int:
    use_kernel(Path(os.environ.get(KERNEL_VAR, KERNEL_PYTHON)))
    jobs = int(os.environ.get("BNCOURSE_BUILD_JOBS", os.cpu_count() or 1))
    if jobs > 1:
        create_execution_cache(next((a for a in argv if not a.startswith("-")), "."))
        sphinx.builders.make_chunks = one_page_per_task
        for name in UNDECLARED:
            declare_parallel_safe(name)
        # kernels run side by side: each gets its share of the CPUs (torch's default of one thread per core
        # in every kernel oversubscribes them, and small-model training then slows down several times)
        share = str(max(1, (os.cpu_count() or 1) // jobs))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, share)
        jb_sphinx.build_sphinx = functools.partial(jb_sphinx.build_sphinx, jobs=jobs)  # the CLI imports it late
    print(f"[build] reading pages with {jobs} process(es)")
    return jb.main(args=["build", *argv], standalone_mode=False) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
