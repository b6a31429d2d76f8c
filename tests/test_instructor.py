"""Instructors' kit: student copies stub every solution; grading reports per exercise with the hint."""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from bncourse.grading import grade_many
from bncourse.instructor import BEGIN, END, STUB, exercise_cells, grade, main, make_student_copy, stub_solutions

_EX = Path(__file__).resolve().parent.parent / "book" / "exercises"
# the solution notebooks: book/exercises/solutions/ once the student copies live in book/exercises/
EXERCISES = sorted((_EX / "solutions").glob("*.ipynb")) or sorted(_EX.glob("*.ipynb"))


def test_stub_solutions_keeps_markers_and_indentation():
    src = f"def f(x):\n    {BEGIN}\n    y = x + 1\n    {END}\n    return y\n"
    out = stub_solutions(src)
    assert "x + 1" not in out and f"    {STUB}" in out and BEGIN in out and END in out and "return y" in out
    for bad in (f"{BEGIN}\n", f"{END}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"):
        with pytest.raises(ValueError):
            stub_solutions(bad)
    assert stub_solutions("x = 1") == "x = 1"


def test_exercise_notebooks_exist():
    assert any(p.name == "03_batchnorm_exercises.ipynb" for p in EXERCISES)


@pytest.fixture(scope="module")
def graded_pairs(tmp_path_factory):
    """Each chapter's student copy and solution, graded against the solution: one pytest run (two kernels) per
    chapter, two chapters at a time."""
    tmp = tmp_path_factory.mktemp("pairs")

    def one(solution):
        student = make_student_copy(solution, tmp / solution.name)
        return solution.name, (student, grade_many(solution, [student, solution], batch=2))

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(one, EXERCISES))


@pytest.mark.parametrize("solution", EXERCISES, ids=lambda p: p.name)
def test_student_copy_fails_every_exercise_and_solution_passes_all(solution, graded_pairs):
    student, (copy_row, solution_row) = graded_pairs[solution.name]
    nb = nbformat.read(str(student), as_version=4)
    assert not any("solution-start" in c.source for c in nb.cells)
    assert sum(STUB in c.source for c in nb.cells) >= 3, "at least three graded exercises"
    failed = copy_row.results
    assert not copy_row.error and len(failed) >= 3 and not any(r.passed for r in failed)
    assert all("check_" in r.message and "not filled in yet" in r.message for r in failed), [r.message for r in failed]
    passed = solution_row.results
    assert [r.title for r in passed] == [r.title for r in failed] and all(r.passed for r in passed), passed
    assert solution_row.total == sum(r.max_points for r in passed) and copy_row.total == 0


def test_partly_done_copy_and_cli(tmp_path, capsys):
    solution = EXERCISES[[p.name for p in EXERCISES].index("03_batchnorm_exercises.ipynb")]
    student = make_student_copy(solution, tmp_path / "s.ipynb")
    nb = nbformat.read(str(student), as_version=4)
    original = nbformat.read(str(solution), as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if STUB in c.source)
    nb.cells[first] = original.cells[
        [c.source for c in original.cells].index(
            next(c.source for c in original.cells if c.source.startswith(nb.cells[first].source.split("\n")[0]))
        )
    ]
    nbformat.write(nb, str(student))
    results = grade(student)
    n = len(exercise_cells(original))
    assert n >= 3 and [r.passed for r in results] == [True] + [False] * (n - 1)
    assert main(["grade", str(student)]) == 1
    out = capsys.readouterr().out
    assert f"1/{n} exercises passed" in out and "[FAIL]" in out and "[PASS]" in out
    assert main(["student", str(solution), "--out", str(tmp_path / "copies")]) == 0
    assert (tmp_path / "copies" / solution.name).exists()


# ------------------------------------------------------------------------------- wrong input of `student`


def _solution_nb(path: Path, code: str = f"def f():\n    {BEGIN}\n    return 1\n    {END}\n") -> Path:
    """A tiny solution notebook: an exercise heading, a solution cell with ``code`` and a checker cell."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("## Exercise 1"),
        nbformat.v4.new_code_cell(code),
        nbformat.v4.new_code_cell("check_f(f)  # points: 2"),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def refused(argv, capsys) -> str:
    """Run the CLI; assert exit status 2 and one line on stderr, no traceback; return that line."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("python -m bncourse.instructor")
    return err.strip()


def _bad_files(tmp: Path) -> dict[str, Path]:
    files = {
        "text": "this is not JSON\n",
        "empty": "",
        "list": "[1, 2, 3]",
        "nocells": '{"metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
        "schemabad": '{"cells": [], "nbformat": 4, "nbformat_minor": 5}',
    }
    out = {}
    for name, text in files.items():
        out[name] = tmp / f"{name}.ipynb"
        out[name].write_text(text)
    out["binary"] = tmp / "binary.ipynb"
    out["binary"].write_bytes(b"\xff\xfe\x00\x81")
    out["unbalanced_begin"] = _solution_nb(tmp / "unbalanced_begin.ipynb", f"{BEGIN}\nx = 1\n")
    out["unbalanced_end"] = _solution_nb(tmp / "unbalanced_end.ipynb", f"x = 1\n{END}\n")
    out["nomarkers"] = _solution_nb(tmp / "nomarkers.ipynb", "x = 1\n")
    return out


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("text", "not a notebook (not valid JSON)"),
        ("empty", "not a notebook (not valid JSON)"),
        ("binary", "not a notebook (not UTF-8 text)"),
        ("list", "not a notebook (JSON, but not of a Jupyter notebook's shape)"),
        ("nocells", "not a valid notebook"),
        ("schemabad", "not a valid notebook"),
        ("unbalanced_begin", f"{BEGIN!r} without an END"),
        ("unbalanced_end", f"{END!r} without a BEGIN"),
        ("nomarkers", "no solution blocks"),
    ],
)
def test_student_names_the_file_that_is_not_a_solution_notebook(name, expected, tmp_path, capsys):
    bad = _bad_files(tmp_path)[name]
    good = _solution_nb(tmp_path / "good" / "a.ipynb")
    line = refused(["student", str(good), str(bad), "--out", str(tmp_path / "copies")], capsys)
    assert f"error: {bad}: " in line and expected in line, line
    assert not (tmp_path / "copies").exists()  # every input is checked before the first copy is written


def test_student_refuses_outputs_that_would_overwrite_or_collide(tmp_path, capsys, monkeypatch):
    solution = _solution_nb(tmp_path / "inplace" / "assign.ipynb")
    before = solution.read_text()
    line = refused(["student", str(solution), "--out", str(tmp_path / "inplace")], capsys)
    assert "is the folder of" in line and "would replace the solution" in line
    monkeypatch.chdir(tmp_path / "inplace")  # the same folder spelled another way
    line = refused(["student", "assign.ipynb", "--out", "."], capsys)
    assert "--out . is the folder of assign.ipynb" in line
    assert solution.read_text() == before
    a, b = _solution_nb(tmp_path / "dupA" / "x.ipynb"), _solution_nb(tmp_path / "dupB" / "x.ipynb")
    line = refused(["student", str(a), str(b), "--out", str(tmp_path / "sdup")], capsys)
    assert f"{a} and {b} have the same file name" in line and not (tmp_path / "sdup").exists()
    assert "--out is empty" in refused(["student", str(a), "--out", ""], capsys)
    (tmp_path / "afile").write_text("x")
    assert "is a file, not a folder" in refused(["student", str(a), "--out", str(tmp_path / "afile")], capsys)
    line = refused(["student", str(a), "--out", str(tmp_path / "afile" / "sub")], capsys)
    assert "cannot create the folder" in line
    line = refused(["student", str(tmp_path / "missing.ipynb"), "--out", str(tmp_path / "c")], capsys)
    assert "missing.ipynb: no such file" in line
    line = refused(["student", str(tmp_path / "dupA"), "--out", str(tmp_path / "c")], capsys)
    assert "dupA: not a regular file" in line


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_student_refuses_a_pipe_instead_of_waiting_on_it(tmp_path, capsys):
    fifo = tmp_path / "pipe.ipynb"
    os.mkfifo(fifo)
    line = refused(["student", str(fifo), "--out", str(tmp_path / "copies")], capsys)
    assert f"{fifo}: not a regular file" in line


def test_student_copies_a_valid_notebook(tmp_path, capsys):
    solution = _solution_nb(tmp_path / "in" / "assign.ipynb")
    assert main(["student", str(solution), "--out", str(tmp_path / "copies")]) == 0
    copy = nbformat.read(str(tmp_path / "copies" / "assign.ipynb"), as_version=4)
    assert STUB in copy.cells[1].source and "return 1" not in copy.cells[1].source
    assert f"wrote {tmp_path / 'copies' / 'assign.ipynb'}" in capsys.readouterr().out
