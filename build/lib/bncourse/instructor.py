"""Instructors' tools: student copies of the exercise notebooks, and grading with nbval.

    python -m bncourse.instructor student book/exercises/*.ipynb --out student/
    python -m bncourse.instructor grade student/03_batchnorm_exercises.ipynb

A student copy replaces every block between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` by a stub that
raises ``NotImplementedError`` and drops the folded solution markers, so every graded check fails with
its hint until the student writes the code. Grading runs the notebook under ``pytest --nbval-lax``
(each cell is a test; cells keep running after a failure) and reports, per exercise, passed or failed
with the checker's message.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import nbformat

__all__ = ["ExerciseResult", "exercise_cells", "grade", "make_student_copy", "main", "stub_solutions"]

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = 'raise NotImplementedError("write your solution here")'
_EXERCISE = re.compile(r"```\{exercise\}\s*(?P<title>[^\n]*)\n(?P<opts>(?::[^\n]*\n)*)")
_LABEL = re.compile(r":label:\s*(\S+)")
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


def make_student_copy(src: str | Path, dst: str | Path) -> Path:
    """Write the student copy of the solution notebook ``src`` (an .ipynb) to ``dst``; outputs cleared."""
    nb = nbformat.read(str(src), as_version=4)
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":  # drop the website's folded-solution markers
            cell.source = _SOLUTION_FENCE.sub("", cell.source).strip()
            if not cell.source:
                continue
        if cell.cell_type == "code":
            cell.source = stub_solutions(cell.source)
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    nb.cells = cells
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dst))
    return dst


def exercise_cells(nb) -> dict[int, str]:
    """Map the index of each checker cell (a code cell calling ``check_...``) to the title of the
    ``{exercise}`` it follows."""
    title, found = None, {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            m = _EXERCISE.search(cell.source)
            if m:
                label = _LABEL.search(m.group("opts"))
                title = m.group("title").strip() or (label.group(1) if label else f"exercise at cell {i}")
        elif title and re.search(r"^\s*check_\w+\(", cell.source, re.M):
            found[i] = title
    return found


@dataclass
class ExerciseResult:
    """One graded exercise: its title, whether its check passed, and the checker's message if not."""

    title: str
    passed: bool
    message: str = ""


def _failure_message(text: str) -> str:
    """The checker's hint from a failing cell's report (the last AssertionError, else the last error)."""
    text = re.sub(r"(\x1b|#x1B)\[[0-9;]*m", "", text)  # ANSI colours (junit writes ESC as #x1B)
    hits = re.findall(r"^AssertionError: (.+)$", text, re.M)
    if hits:
        return hits[-1].strip()
    errors = re.findall(r"^(\w+(?:Error|Exception)\b.*)$", text, re.M)
    return errors[-1].strip() if errors else text.strip().splitlines()[-1][:300]


def grade(notebook: str | Path, timeout: int = 600) -> list[ExerciseResult]:
    """Run ``notebook`` under ``pytest --nbval-lax`` and return one result per graded exercise."""
    notebook = Path(notebook).resolve()
    nb = nbformat.read(str(notebook), as_version=4)
    checks = exercise_cells(nb)
    if not checks:
        raise ValueError(f"{notebook} has no graded exercise (an {{exercise}} followed by a check_... cell)")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            str(notebook),
            f"--junitxml={report}",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--nbval-cell-timeout={timeout}",
            "-o",
            "addopts=",
        ]
        subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, check=False)
        if not report.exists():
            raise RuntimeError(f"pytest --nbval-lax produced no report for {notebook}")
        failures, ran = {}, 0
        for case in ET.parse(report).getroot().iter("testcase"):
            ran += 1
            m = re.search(r"Cell (\d+)", case.get("name", ""))
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            if m and bad is not None:
                failures[int(m.group(1))] = _failure_message((bad.get("message") or "") + "\n" + (bad.text or ""))
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    if ran != n_code:
        raise RuntimeError(f"nbval ran {ran} cells of {notebook}, which has {n_code} code cells")
    # nbval numbers code cells only; map them back to notebook cell indices
    code_index = {i: n for n, i in enumerate(i for i, c in enumerate(nb.cells) if c.cell_type == "code")}
    results = []
    for i, title in checks.items():
        msg = failures.get(code_index[i])
        results.append(ExerciseResult(title, msg is None, msg or ""))
    return results


def main(argv: list[str] | None = None) -> int:
    """Command line: ``student`` writes student copies; ``grade`` prints per-exercise results (exit 1 if any
    failed)."""
    p = argparse.ArgumentParser(prog="python -m bncourse.instructor", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("student", help="write student copies of solution notebooks")
    s.add_argument("notebooks", nargs="+")
    s.add_argument("--out", default="student")
    g = sub.add_parser("grade", help="grade notebooks with nbval, per exercise")
    g.add_argument("notebooks", nargs="+")
    args = p.parse_args(argv)
    if args.cmd == "student":
        for src in args.notebooks:
            print(f"wrote {make_student_copy(src, Path(args.out) / Path(src).name)}")
        return 0
    ok = True
    for path in args.notebooks:
        results = grade(path)
        print(f"{path}: {sum(r.passed for r in results)}/{len(results)} exercises passed")
        for r in results:
            print(f"  [{'PASS' if r.passed else 'FAIL'}] {r.title}" + ("" if r.passed else f"\n         {r.message}"))
        ok &= all(r.passed for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
