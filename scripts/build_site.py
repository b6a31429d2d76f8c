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
the test that it runs as on Colab; ``$BNCOURSE_COLAB_PYTHON`` names another environment's Python. When that
environment changes (another Python, other package versions), the execution cache is cleared, so no page keeps
outputs made by another environment.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jupyter_book.cli.main as jb
import jupyter_book.sphinx as jb_sphinx
import sphinx.builders

from bncourse.grading import kernel_start_failed


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
KERNEL_VAR = "BNCOURSE_COLAB_PYTHON"  # also the Python tests/test_colab.py uses


def stale_files(installed: Path, checkout: Path = ROOT / "bncourse") -> list[str]:
    """The package's source files that differ between an installed copy and the checkout (or exist in one only)."""

    def sources(root: Path) -> dict[str, bytes]:
        files = [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in files if p.suffix in (".py", ".json", ".md")}

    have, want = sources(installed), sources(checkout)
    return sorted(name for name in have.keys() | want.keys() if have.get(name) != want.get(name))


def use_kernel(python: Path, jupyter_dir: Path = KERNEL_DIR, checkout: Path = ROOT / "bncourse") -> tuple[Path, str]:
    """Make ``python3``, the kernel the pages name, run ``python``: write its kernel spec under ``jupyter_dir``
    (put that folder first on ``JUPYTER_PATH`` to use it). Refuses a Python that cannot import ``bncourse``, or
    whose installed ``bncourse`` is not the ``checkout``'s (a wheel built before the last edit).

    Returns:
        The spec's path, and a line naming the environment (its Python and package versions).
    """
    python = python.absolute()  # not resolve(): a venv's python is a link out of the venv
    if not python.exists():
        raise SystemExit(f"[build] no Python at {python}: run `bash scripts/colab_env.sh` (or set {KERNEL_VAR})")
    check = (
        "import bncourse, ipykernel, IPython, ipywidgets, matplotlib, numpy, torch; "
        "print(bncourse.__file__); "
        "print(f'ipywidgets {ipywidgets.__version__}, IPython {IPython.__version__}, numpy {numpy.__version__}, '"
        "f'matplotlib {matplotlib.__version__}, torch {torch.__version__}')"
    )
    jupyter_dir.mkdir(parents=True, exist_ok=True)  # an empty folder to check from: the checkout is not on its path
    found = subprocess.run([str(python), "-c", check], capture_output=True, text=True, cwd=jupyter_dir)
    if found.returncode:
        why = (found.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"[build] the kernel's Python {python} cannot run the pages: {why}")
    where, versions = found.stdout.strip().splitlines()
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
    return spec, f"{python} ({versions}; bncourse from {where})"


def forget_other_environments(environment: str, build: Path = ROOT / "_build") -> bool:
    """Clear the execution cache (and Sphinx's record of read pages) if the pages last ran in another
    environment than ``environment``; remember this one. Returns whether anything was cleared."""
    stamp = build / "jupyter" / "environment.txt"
    cleared = False
    if stamp.exists() and stamp.read_text() != environment:
        for folder in (build / ".jupyter_cache", build / ".doctrees", build / "jupyter_execute"):
            shutil.rmtree(folder, ignore_errors=True)
        cleared = True
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(environment)
    return cleared


def retry_kernel_start(execute, attempts: int = 3):
    """Wrap jupyter-cache's ``single_nb_execution`` so that a page whose kernel failed to start (and so ran no
    cell) is executed again, up to ``attempts`` times. The failure comes as an exception (nbclient's
    ``RuntimeError``) or as the result's error; any other error, or one after a cell ran, is passed on at once."""

    @functools.wraps(execute)
    def run(nb, *args, **kwargs):
        pristine = copy.deepcopy(nb)
        for attempt in range(1, attempts + 1):
            try:
                result = execute(nb, *args, **kwargs)
                failure, why = None, f"{result.err!r} {result.exc_string or ''}" if result.err is not None else ""
            except Exception as err:  # noqa: BLE001 - passed on below unless it is a failed start
                result, failure, why = None, err, repr(err)
            ran = any(c.get("execution_count") for c in nb.get("cells", []))
            # two pages' kernels starting at one moment can be handed the same free port (jupyter_client
            # picks the ports before the kernel binds them)
            start_failed = bool(why) and not ran and kernel_start_failed(why)
            if not start_failed or attempt == attempts:
                if failure is not None:
                    raise failure
                return result
            print(f"[build] a kernel did not start ({why.strip()[:80]}); running the page again")
            nb.clear()
            nb.update(copy.deepcopy(pristine))
        raise AssertionError("unreachable")

    return run


def main(argv: list[str]) -> int:
    os.environ.setdefault("BNCOURSE_BOOK_BUILD", "1")  # glue's records and the panels' static grids
    import myst_nb.core.execute.cache as mystnb_cache  # the reading processes are forked: they inherit this

    mystnb_cache.single_nb_execution = retry_kernel_start(mystnb_cache.single_nb_execution)
    spec, environment = use_kernel(Path(os.environ.get(KERNEL_VAR, KERNEL_PYTHON)))
    os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(spec.parents[2]), os.environ.get("JUPYTER_PATH")) if p)
    print(f"[build] pages run with {environment}")
    if forget_other_environments(environment):
        print("[build] the pages last ran in another environment: execution cache cleared")
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
