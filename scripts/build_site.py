"""``jupyter-book build`` with the chapters executed in parallel: ``python scripts/build_site.py [JB ARGS]``.

Jupyter Book 1's command line always reads (and so executes) the pages one after the other. This runs the same
command, with two changes: Sphinx reads with ``$BNCOURSE_BUILD_JOBS`` processes (default: the number of CPUs), and
each page is its own reading task (Sphinx would otherwise hand every process a fixed block of pages, so all the
slow chapters would land in the same one). Every extension the book uses is declared parallel-read safe.
"""

from __future__ import annotations

import functools
import os
import sys

import jupyter_book.cli.main as jb
import sphinx.builders


def one_page_per_task(docnames, nproc, maxbatch=10):
    """Sphinx's ``make_chunks`` replacement: every page is a task, so free processes take the next page."""
    return [[name] for name in docnames]


def main(argv: list[str]) -> int:
    jobs = int(os.environ.get("BNCOURSE_BUILD_JOBS", os.cpu_count() or 1))
    if jobs > 1:
        sphinx.builders.make_chunks = one_page_per_task
        jb.build_sphinx = functools.partial(jb.build_sphinx, jobs=jobs)
    print(f"[build] reading pages with {jobs} process(es)")
    return jb.main(args=["build", *argv], standalone_mode=False) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
