"""Benchmark: grade N chapter-3 submissions and print the seconds per submission (not a test).

    PYTHONPATH=. python scripts/bench_grading.py --count 200 --workers 2 --batch 1 8

The submissions are generated: a third correct (the solution notebook), a third unmodified student copies
(every exercise fails), a third with a wrong forward (ddof=1). Each ``--batch`` value is one full run; the
target of issue 18 is 200 submissions in under 5 minutes on 2 cores (1.5 s per submission).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from bncourse.grading import grade_many, load_assignment  # noqa: E402
from bncourse.instructor import make_student_copy  # noqa: E402


def solution_notebook() -> Path:
    """Chapter 3's solution notebook (``book/exercises/solutions/`` when it exists, else ``book/exercises/``)."""
    hits = glob.glob(str(ROOT / "book/exercises/solutions/03_*.ipynb"))
    hits = hits or glob.glob(str(ROOT / "book/exercises/03_*.ipynb"))
    return Path(sorted(hits)[0])


def make_submissions(folder: Path, count: int) -> list[Path]:
    """``count`` submissions in ``folder``: correct, empty and wrong in turn."""
    sol = solution_notebook()
    student = make_student_copy(sol, folder / "_student.ipynb")
    wrong = nbformat.read(str(sol), as_version=4)
    for cell in wrong.cells:
        cell.source = cell.source.replace("var = (xc**2).mean(axis=0)", "var = x.var(axis=0, ddof=1)")
    nbformat.write(wrong, str(folder / "_wrong.ipynb"))
    sources = [sol.read_text(), student.read_text(), (folder / "_wrong.ipynb").read_text()]
    paths = []
    for i in range(count):
        p = folder / "class" / f"student{i:03d}.ipynb"
        p.parent.mkdir(exist_ok=True)
        p.write_text(sources[i % 3])
        paths.append(p)
    return paths


def main() -> None:
    """Run the benchmark and print one line per batch size."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, nargs="+", default=[8])
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    assignment = load_assignment(solution_notebook())
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_submissions(Path(tmp), args.count)
        for batch in args.batch:
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            t0 = time.perf_counter()
            rows = grade_many(assignment, paths, workers=args.workers, batch=batch, progress=True)
            dt = time.perf_counter() - t0
            totals = [r.total for r in rows]
            expected = [3.0 if i % 3 == 0 else 0.0 for i in range(args.count)]
            status = "all rows as expected" if totals == expected else f"UNEXPECTED totals {totals[:9]}..."
            print(
                f"{args.count} chapter-3 submissions, workers={args.workers}, batch={batch}: {dt:.1f} s, "
                f"{dt / args.count:.2f} s per submission ({os.cpu_count()} CPUs visible, load average before "
                f"{load}); {status}"
            )


if __name__ == "__main__":
    main()
