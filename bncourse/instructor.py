"""Instructors' tools: student copies of the exercise notebooks, and grading a class with nbval underneath.

    python -m bncourse.instructor student book/exercises/solutions/*.ipynb --out student/
    python -m bncourse.instructor grade --assignment book/exercises/solutions/03_batchnorm_exercises.ipynb \
        submissions/ --out grades/ --workers 2

A student copy replaces every block between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` by a stub that
raises ``NotImplementedError`` and drops the folded solution markers, so every graded check fails with
its hint until the student writes the code. Grading (:mod:`bncourse.grading`) takes only the code inside the
blocks of each submission and runs it with the checker cells of the assignment (the instructor's solution
notebook), under ``pytest --nbval-lax`` on the grader's own kernel; it writes ``gradebook.csv`` and one
feedback file per student.
"""

from __future__ import annotations

import re
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

import nbformat

from bncourse.argparsing import Parser, positive_float, positive_int
from bncourse.grading import (
    BEGIN,
    END,
    STUB,
    ExerciseResult,
    GradeOptions,
    exercise_cells,
    find_submissions,
    grade,
    grade_many,
    load_assignment,
    write_feedback,
    write_gradebook,
)
from bncourse.notebooks import rewrite_cells

__all__ = [
    "BEGIN",
    "END",
    "STUB",
    "ExerciseResult",
    "exercise_cells",
    "grade",
    "make_student_copy",
    "main",
    "stub_solutions",
    "student_notebook",
]

_SOLUTION_FENCE = re.compile(r"```\{solution-(?:start|end)\}[^`]*```\n?")


def stub_solutions(source: str) -> str:
    """Replace each ``BEGIN``/``END SOLUTION`` block of a code cell by the stub, keeping the markers and
    the block's indentation. Raises ``ValueError`` on unbalanced markers."""
    out, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError("nested '# BEGIN SOLUTION'")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [line, indent + STUB]
        elif stripped == END:
            if not inside:
                raise ValueError("'# END SOLUTION' without a BEGIN")
            inside = False
            out.append(line)
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("'# BEGIN SOLUTION' without an END")
    return "\n".join(out)


def student_notebook(nb, markdown: Callable[[str], str] | None = None):
    """Turn the solution notebook ``nb`` into a student copy in place (solution blocks stubbed by
    :func:`stub_solutions`, outputs cleared, markdown through ``markdown``) and return it."""
    return rewrite_cells(nb, markdown=markdown, code=stub_solutions)


def make_student_copy(src: str | Path, dst: str | Path) -> Path:
    """Write the student copy of the solution notebook ``src`` (an .ipynb) to ``dst``; outputs cleared."""
    nb = nbformat.read(str(src), as_version=4)
    student_notebook(nb, markdown=lambda text: _SOLUTION_FENCE.sub("", text).strip())
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dst))
    return dst


def main(argv: list[str] | None = None) -> int:
    """Command line. ``student`` writes student copies. ``grade`` grades files and folders of submissions against
    ``--assignment`` (the solution notebook), writes ``--out``/gradebook.csv and ``--out``/feedback/*.md, prints one
    line per exercise, and exits 1 if any exercise failed, 2 on a usage error (one line, no traceback)."""
    p = Parser(prog="python -m bncourse.instructor", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    s = sub.add_parser("student", help="write student copies of solution notebooks")
    s.add_argument("notebooks", nargs="+")
    s.add_argument("--out", default="student")
    g = sub.add_parser("grade", help="grade submissions (files or folders) against the assignment's checker cells")
    g.add_argument("submissions", nargs="+", help="submitted .ipynb files and folders (searched recursively)")
    g.add_argument(
        "--assignment",
        help="the instructor's solution notebook (without it each notebook is graded "
        "against its own checker cells: not for marks)",
    )
    g.add_argument("--out", help="folder for gradebook.csv and feedback/ (default: print only)")
    g.add_argument("--workers", type=positive_int, default=1, help="pytest processes at once (default 1)")
    g.add_argument("--batch", type=positive_int, default=8, help="submissions per pytest process (default 8)")
    g.add_argument("--cell-timeout", type=positive_float, default=GradeOptions.cell_timeout, help="seconds per cell")
    g.add_argument("--timeout", type=positive_float, default=GradeOptions.timeout, help="seconds per submission")
    g.add_argument("--memory-mb", type=positive_int, default=GradeOptions.memory_mb, help="address space per process")
    g.add_argument(
        "--tamper",
        choices=("fail", "zero", "report"),
        default="fail",
        help="flagged code (redefined checkers, the course package, patched modules): fail its exercise "
        "(default), zero the submission, or report only",
    )
    g.add_argument(
        "--allow",
        action="append",
        default=None,
        metavar="MODULE",
        help="a bncourse module solutions may import from (default: bncourse.gradcheck)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar and no per-exercise lines")
    args = p.parse_args(argv)  # fmt: skip
    if args.cmd == "student":
        try:
            for src in args.notebooks:
                print(f"wrote {make_student_copy(src, Path(args.out) / Path(src).name)}")
        except (OSError, ValueError) as e:
            print(f"{p.prog}: error: {e}", file=sys.stderr)
            return 2
        return 0
    files = find_submissions(args.submissions)
    missing = [str(f) for f in files if not f.exists()]
    if missing or not files:
        print(
            f"{p.prog}: error: no such submission: {', '.join(missing) or ' '.join(args.submissions)}", file=sys.stderr
        )
        return 2
    opts = GradeOptions(
        cell_timeout=args.cell_timeout,
        timeout=args.timeout,
        memory_mb=args.memory_mb,
        tamper=args.tamper,
        allow=tuple(args.allow) if args.allow else GradeOptions.allow,
    )
    ok = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if args.quiet else "default")
        if args.assignment:
            try:
                assignment = load_assignment(args.assignment)
            except Exception as e:  # noqa: BLE001 - a bad assignment is a usage error: one line
                print(f"{p.prog}: error: cannot read the assignment {args.assignment}: {e}", file=sys.stderr)
                return 2
            rows = grade_many(assignment, files, workers=args.workers, batch=args.batch, options=opts,
                              progress=not args.quiet)  # fmt: skip
            pairs = [(assignment, r) for r in rows]
        else:
            pairs = []
            for f in files:
                try:
                    ref = load_assignment(f)
                except Exception as e:  # noqa: BLE001 - reported in the file's row
                    from bncourse.grading import SubmissionResult

                    pairs.append((None, SubmissionResult(f.stem, f, error=f"cannot be graded: {e}")))
                    continue
                pairs.append((ref, grade_many(ref, [f], options=opts)[0]))
    for ref, r in pairs:
        n = len(r.results)
        if r.error:
            ok = False
            print(f"{r.path}: not graded: {r.error}")
            continue
        print(
            f"{r.path}: {sum(x.passed for x in r.results)}/{n} exercises passed, {r.total:g}/{ref.max_points:g} points"
        )
        ok &= all(x.passed for x in r.results)
        if not args.quiet:
            for x in r.results:
                line = f"  [{'PASS' if x.passed else 'FAIL'}] {x.title}"
                if not x.passed:
                    line += "\n" + textwrap.indent(x.message, " " * 9)
                print(line)
    if args.out:
        out = Path(args.out)
        graded = [(ref, r) for ref, r in pairs if ref is not None]
        if args.assignment and graded:
            print(f"wrote {write_gradebook([r for _, r in graded], graded[0][0], out / 'gradebook.csv')}")
        for ref, r in graded:
            write_feedback(r, ref, out / "feedback")
        if graded:
            print(f"wrote {len(graded)} feedback files to {out / 'feedback'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
