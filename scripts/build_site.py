"""``jupyter-book build`` with the chapters executed in parallel: ``python scripts/build_site.py [JB ARGS]``.

Jupyter Book 1's command line always reads (and so executes) the pages one after the other. This runs the same
command, with two changes: Sphinx reads with ``$BNCOURSE_BUILD_JOBS`` processes (default: the number of CPUs), and
each page is its own reading task (Sphinx would otherwise hand every process a fixed block of pages, so all the
slow chapters would land in the same one). Two extensions that Jupyter Book loads do not declare whether they
are parallel safe, so Sphinx would fall back to serial reading: ``sphinx_multitoc_numbering`` (it replaces the
toctree collector's section numbering, which runs in the main process after reading) and
``sphinx_jupyterbook_latex`` (LaTeX-only transforms); both keep no per-document state, so they are declared
safe here.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys

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


def main(argv: list[str]) -> int:
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
