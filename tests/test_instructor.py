"""Instructors' kit: student copies stub every solution; grading reports per exercise with the hint."""

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
