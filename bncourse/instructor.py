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

from bncourse.argparsing import Parser, bounded_float, bounded_int
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
    read_notebook,
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
    "student_copies",
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


def _student_copy(src: str | Path):
    """The student copy of the solution notebook ``src``, in memory. Raises ``ValueError`` naming ``src`` when it
    is not a readable notebook, has no solution block, or has unbalanced markers."""
    nb = read_notebook(src)
    has_blocks = any(c.cell_type == "code" and BEGIN in c.source for c in nb.cells)
    try:
        student_notebook(nb, markdown=lambda text: _SOLUTION_FENCE.sub("", text).strip())
    except ValueError as e:
        raise ValueError(f"{src}: {e}") from None
    if not has_blocks:
        raise ValueError(f"{src}: no solution blocks ({BEGIN!r} ... {END!r}): not a solution notebook")
    return nb


def make_student_copy(src: str | Path, dst: str | Path) -> Path:
    """Write the student copy of the solution notebook ``src`` (an .ipynb) to ``dst``; outputs cleared.

    Raises ``ValueError`` naming ``src`` when it is not a notebook, has no solution block or unbalanced markers.
    """
    nb = _student_copy(src)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dst))
    return dst


def student_copies(notebooks: list[str], out: str) -> list[Path]:
    """Write the student copy of each solution notebook into the folder ``out`` (same file names); return them.

    Everything is checked before anything is written; ``ValueError`` (one line) for an empty ``out``, an ``out``
    that is a file or the folder of an input (the copy would replace the solution), two inputs with the same
    file name, and any input that :func:`make_student_copy` refuses."""
    if not out.strip():
        raise ValueError("--out is empty")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file, not a folder")
    names: dict[str, str] = {}
    for src in notebooks:
        path = Path(src)
        if not src.strip():
            raise ValueError("an empty notebook path ('')")
        if path.name in names:
            raise ValueError(f"{names[path.name]} and {src} have the same file name; their copies would collide")
        names[path.name] = src
        if folder.resolve() == path.resolve().parent:
            raise ValueError(f"--out {folder} is the folder of {src}: the copy would replace the solution")
    copies = [_student_copy(src) for src in notebooks]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {folder}: cannot create the folder ({e.strerror or e})") from None
    written = []
    for src, nb in zip(notebooks, copies, strict=True):
        nbformat.write(nb, str(folder / Path(src).name))
        written.append(folder / Path(src).name)
    return written


MAX_SECONDS = 86_400  # --timeout and --cell-timeout: at most a day
# measured on chapter 3's solution graded against itself: full marks at 2048 MB (as at the default 6144); at
# 1024 MB the kernel dies and at 512 MB cells raise MemoryError: exercises score 0 for the grader's limit
MIN_MEMORY_MB = 2048
MAX_MEMORY_MB = 2**20  # 1 TiB
MAX_WORKERS = 1024


def _check_grade_inputs(args) -> tuple[list[Path], object]:
    """The submission files and the assignment (``None`` without ``--assignment``) of ``grade``, after checking
    everything that can be checked before grading; ``ValueError`` (one line) for the first problem. ``--out`` is
    created here, so that a folder that cannot be made stops the command before the grading, not after."""
    if args.assignment is not None and not args.assignment.strip():
        raise ValueError("--assignment is empty")
    if args.out is not None:
        if not args.out.strip():
            raise ValueError("--out is empty")
        if (out := Path(args.out)).exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file, not a folder")
    files = find_submissions(args.submissions)
    assignment = None
    if args.assignment is not None:
        try:
            assignment = load_assignment(args.assignment)
        except ValueError as e:
            raise ValueError(f"the assignment {e}") from None
        for f in files:
            if f.resolve() == assignment.path.resolve():
                raise ValueError(f"{f} is the assignment itself, not a submission")
    if args.out is not None:
        try:
            Path(args.out).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"--out {args.out}: cannot create the folder ({e.strerror or e})") from None
    return files, assignment


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
    g.add_argument(
        "--workers", type=bounded_int(1, MAX_WORKERS), default=1, help="pytest processes at once (default 1)"
    )
    g.add_argument("--batch", type=bounded_int(1, 10_000), default=8, help="submissions per pytest process (default 8)")
    g.add_argument("--cell-timeout", type=bounded_float(1, MAX_SECONDS), default=GradeOptions.cell_timeout,
                   help="seconds per cell (1 to 86400)")  # fmt: skip
    g.add_argument("--timeout", type=bounded_float(1, MAX_SECONDS), default=GradeOptions.timeout,
                   help="seconds per submission (1 to 86400)")  # fmt: skip
    g.add_argument("--memory-mb", type=bounded_int(MIN_MEMORY_MB, MAX_MEMORY_MB), default=GradeOptions.memory_mb,
                   help=f"address space per process, MB ({MIN_MEMORY_MB} to {MAX_MEMORY_MB})")  # fmt: skip
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
            for path in student_copies(args.notebooks, args.out):
                print(f"wrote {path}")
        except (OSError, ValueError) as e:
            print(f"{p.prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
            return 2
        return 0
    try:
        files, assignment = _check_grade_inputs(args)
    except ValueError as e:
        print(f"{p.prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
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
        if assignment is not None:
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
        if assignment is not None and graded:
            print(f"wrote {write_gradebook([r for _, r in graded], graded[0][0], out / 'gradebook.csv')}")
        for ref, r in graded:
            write_feedback(r, ref, out / "feedback")
        if graded:
            print(f"wrote {len(graded)} feedback files to {out / 'feedback'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
