"""Grading for marks (issue 18): a class of generated chapter-3 submissions, graded in one CLI run.

Every attack of the issue scores 0 on the attacked exercise (the honest exercise 1 keeps its point, so a
grader that zeroes everything would fail too); every honest variant scores full marks; bad files get an
error row. The class is graded once (module fixture) through ``python -m bncourse.instructor grade``.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from test_instructor import refused as _refused  # the one CLI-refusal check

from bncourse.grading import (
    BEGIN,
    END,
    NOT_STARTED,
    START_ATTEMPTS,
    GradeOptions,
    check_markers,
    grade,
    grade_many,
    load_assignment,
    read_notebook,
    scan_code,
    solution_blocks,
)
from bncourse.instructor import main, make_student_copy

ROOT = Path(__file__).resolve().parent.parent
_EX = ROOT / "book" / "exercises"
SOLUTION = sorted((_EX / "solutions").glob("03_*.ipynb")) or sorted(_EX.glob("03_*.ipynb"))
SOLUTION = SOLUTION[0]
ASSIGNMENT = load_assignment(SOLUTION)
CHECKERS = [ASSIGNMENT.nb.cells[e.checker].get("id") for e in ASSIGNMENT.exercises]
SOLUTION_CELLS = [ASSIGNMENT.nb.cells[e.cells[0]].get("id") for e in ASSIGNMENT.exercises]
HONEST_BLOCKS = [solution_blocks(ASSIGNMENT.nb.cells[e.cells[0]].source)[0][1] for e in ASSIGNMENT.exercises]
N = len(ASSIGNMENT.exercises)  # the points each submission can score: all, the first only, none
ALL, FIRST, NONE = [1] * N, [1] + [0] * (N - 1), [0] * N


def _cell(nb, cid):
    return next(c for c in nb.cells if c.get("id") == cid)


def _set_block(nb, k: int, code: str) -> None:
    """Put ``code`` (written at indentation 0) into exercise k's block of ``nb``."""
    cell = _cell(nb, SOLUTION_CELLS[k])
    indent = solution_blocks(cell.source)[0][0]
    body = "\n".join(indent + ln for ln in code.strip("\n").splitlines())
    cell.source = re.sub(
        rf"{re.escape(BEGIN)}\n.*?\n(\s*){re.escape(END)}",
        lambda m: f"{BEGIN}\n{body}\n{m.group(1)}{END}",
        cell.source,
        flags=re.S,
    )


def _student(tmp: Path, first_done: bool = True):
    nb = nbformat.read(str(make_student_copy(SOLUTION, tmp / "_copy.ipynb")), as_version=4)
    if first_done:
        _set_block(nb, 0, __import__("textwrap").dedent(HONEST_BLOCKS[0]))
    return nb


def _honest(tmp: Path):
    nb = _student(tmp)
    for k in range(1, N):
        _set_block(nb, k, __import__("textwrap").dedent(HONEST_BLOCKS[k]))
    return nb


_PATCH_ERR = """
import bncourse.checks.batchnorm as cb
cb.rel_err = lambda *a, **k: 0.0  # the checker's error measure (the issue's _err, before the checker kit)
return dout, dout.sum(0), dout.sum(0)
"""
_ADD_ATTR = """
import bncourse.checks.batchnorm as cb
cb._err = lambda *a, **k: 0.0  # a name the checker does not use: the check fails, and the patch is reported
return dout, dout.sum(0), dout.sum(0)
"""
_ALT_FORWARD = """
def _moments(a):  # a helper inside the block
    m = a.mean(axis=0)
    return m, (a * a).mean(axis=0) - m * m  # one-pass variance
mu, var = _moments(x)
x_hat = (x - mu) / np.sqrt(var + eps)
out = gamma * x_hat + beta
cache = {"x_hat": x_hat, "xc": x - mu, "var": var, "inv_std": 1 / np.sqrt(var + eps), "gamma": gamma, "eps": eps}
"""


def _class(tmp: Path) -> dict[str, list[float] | str]:
    """Write the class (name -> expected points per exercise, or 'error') into tmp/class."""
    out, expect = tmp / "class", {}
    out.mkdir()

    def save(name, nb, points):
        nbformat.write(nb, str(out / f"{name}.ipynb"))
        expect[name] = points

    # honest work
    save("solution", nbformat.read(str(SOLUTION), as_version=4), ALL)
    save("filled_copy", _honest(tmp), ALL)
    nb = _honest(tmp)
    nb.metadata["kernelspec"] = {"name": "conda-env-bn-py", "display_name": "bn (conda)", "language": "python"}
    save("kernel_renamed", nb, ALL)
    nb = _honest(tmp)
    for i, c in enumerate(c for c in nb.cells if c.cell_type == "code"):
        c.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"old output {i}\n")]
        c.execution_count = None
    save("outputs_without_counts", nb, ALL)
    raw = json.loads(nbformat.writes(_honest(tmp)))
    raw["nbformat_minor"] = 2
    for c in raw["cells"]:
        c.pop("id", None)
        c["metadata"] = {"collapsed": False, "trusted": True, "colab": {"base_uri": "x"}}
    raw["metadata"] = {"widgets": {"state": {}}, "accelerator": "GPU"}
    (out / "old_minor_and_metadata.ipynb").write_text(json.dumps(raw))
    expect["old_minor_and_metadata"] = ALL
    nb = _honest(tmp)
    for c in nb.cells:
        c["id"] = "x" + c.get("id", "")[::-1]  # new ids, as some front ends write
    code = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells = [c for c in nb.cells if c not in code] + code[::-1]  # and every code cell reordered
    save("new_ids_and_reordered", nb, ALL)
    nb = _honest(tmp)
    _set_block(nb, 0, _ALT_FORWARD)
    save("alternative_forward", nb, ALL)
    nb = _honest(tmp)
    for cid in CHECKERS:
        nb.cells.remove(_cell(nb, cid))  # the student deleted their checker cells: the assignment's still run
    save("own_checkers_deleted", nb, ALL)
    nb = _honest(tmp)
    _set_block(nb, 0, "# NBVAL_SKIP\n" + __import__("textwrap").dedent(HONEST_BLOCKS[0]))
    save("nbval_marker_in_block", nb, ALL)

    # the attacks of the issue: exercise 1 honest, the others attacked
    def attacked_checkers(name, edit):
        nb = _student(tmp)
        for cid in CHECKERS[1:]:
            edit(_cell(nb, cid))
        save(name, nb, FIRST)

    attacked_checkers(
        "try_except", lambda c: setattr(c, "source", f"try:\n    {c.source}\nexcept Exception:\n    pass")
    )
    attacked_checkers("if_false", lambda c: setattr(c, "source", f"{c.source} if False else None"))
    attacked_checkers("nbval_skip_comment", lambda c: setattr(c, "source", "# NBVAL_SKIP\n" + c.source))
    attacked_checkers("nbval_raises_comment", lambda c: setattr(c, "source", "# NBVAL_RAISES_EXCEPTION\n" + c.source))
    attacked_checkers("tag_skip", lambda c: c.metadata.update(tags=["nbval-skip"]))
    attacked_checkers("tag_raises", lambda c: c.metadata.update(tags=["raises-exception"]))
    nb = _student(tmp)
    cell = _cell(nb, SOLUTION_CELLS[1])
    cell.source += "\n\n\ndef check_batchnorm_backward(*a, **k):\n    return None\n"  # top level, outside the markers
    save("redefine_checker_outside_block", nb, FIRST)
    nb = _student(tmp)
    _set_block(nb, 1, "global check_m2_gradient\ndef check_m2_gradient(*a, **k):\n    return None")
    save("redefine_checker_in_block", nb, FIRST)
    nb = _student(tmp)
    _set_block(nb, 1, _PATCH_ERR)
    save("patch_private_helper", nb, FIRST)
    nb = _student(tmp, first_done=False)
    _set_block(nb, 0, "import bncourse.checks.batchnorm as cb\ncb.batchnorm_forward = lambda x, g, b, e: (x, None)\n"
               "out, cache = x, None")  # fmt: skip
    save("patch_reference", nb, NONE)
    nb = _student(tmp, first_done=False)
    _set_block(nb, 0, "from bncourse.norms import batchnorm_forward as ref\nout, cache = ref(x, gamma, beta, eps)")
    save("calls_reference", nb, NONE)
    for name, attack in (  # exercise 2's block hangs or ends the kernel: exercise 1 keeps its point
        ("sleeps", "import time\ntime.sleep(10**6)"),
        ("os_exit", "import os\nos._exit(0)"),
        ("sys_exit", "import sys\nsys.exit(0)"),
    ):
        nb = _student(tmp)
        _set_block(nb, 1, attack)
        save(name, nb, FIRST)
    nb = _student(tmp)
    keep = nb.cells.index(_cell(nb, CHECKERS[0]))
    nb.cells = nb.cells[: keep + 1]  # exercises 2 and 3 deleted, exercise 1 done
    save("two_exercises_deleted", nb, FIRST)

    # the rest of a class: empty, wrong, malformed
    save("untouched_copy", _student(tmp, first_done=False), NONE)
    nb = _honest(tmp)
    _set_block(
        nb, 0, __import__("textwrap").dedent(HONEST_BLOCKS[0]).replace("(xc**2).mean(axis=0)", "x.var(axis=0, ddof=1)")
    )
    save("wrong_forward", nb, [0, 0, 1, 0])  # exercise 3, a prediction, does not call the forward
    (out / "invalid_json.ipynb").write_text('{"cells": [')
    expect["invalid_json"] = "error"
    (out / "not_a_notebook.ipynb").write_text("[1, 2, 3]")
    expect["not_a_notebook"] = "error"
    return expect


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grading")
    expect = _class(tmp)
    argv = ["grade", "--assignment", str(SOLUTION), str(tmp / "class"), "--out", str(tmp / "out")]
    # generous limits: CI runs this next to other tests on 2 cores; the hanging attacks still stop at 15 s a cell
    argv += ["--workers", "2", "--batch", "2", "--cell-timeout", "15", "--timeout", "120", "--quiet"]
    rc = main(argv)
    with (tmp / "out" / "gradebook.csv").open(newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    return expect, rows, tmp / "out", rc


def test_class_of_twenty_gradebook_has_a_row_each(graded):
    expect, rows, _, rc = graded
    assert len(expect) >= 20 and set(rows) == set(expect) and rc == 1


def _points(row) -> list[float]:
    return [float(row[f"{e.title} ({e.points:g})"]) for e in ASSIGNMENT.exercises]


@pytest.mark.parametrize(
    "name",
    [
        "solution", "filled_copy", "kernel_renamed", "outputs_without_counts", "old_minor_and_metadata",
        "new_ids_and_reordered", "alternative_forward", "own_checkers_deleted", "nbval_marker_in_block",
    ],
)  # fmt: skip
def test_honest_work_gets_full_marks(graded, name):
    expect, rows, _, _ = graded
    row = rows[name]
    assert _points(row) == expect[name] == ALL, row
    assert row["total"] == str(N) and row["status"] == "graded" and not row["flags"]


@pytest.mark.parametrize(
    "name",
    [
        "try_except", "if_false", "nbval_skip_comment", "nbval_raises_comment", "tag_skip", "tag_raises",
        "redefine_checker_outside_block", "redefine_checker_in_block", "patch_private_helper", "patch_reference",
        "calls_reference", "sleeps", "os_exit", "sys_exit", "two_exercises_deleted",
    ],
)  # fmt: skip
def test_attack_scores_zero_on_the_attacked_exercise(graded, name):
    expect, rows, _, _ = graded
    row = rows[name]
    assert _points(row) == expect[name], row
    assert row["max"] == str(N), "every exercise of the assignment is graded, whatever the submission deleted"
    for e, p in zip(ASSIGNMENT.exercises, expect[name], strict=True):
        assert bool(row[f"hint: {e.title}"]) == (p == 0), row


def test_attack_reasons_are_reported(graded):
    _, rows, _, _ = graded
    assert "redefines the checker check_m2_gradient" in rows["redefine_checker_in_block"]["flags"]
    assert "course package" in rows["patch_private_helper"]["flags"]
    assert "course package" in rows["calls_reference"]["hint: " + ASSIGNMENT.exercises[0].title]
    assert "course package" in rows["patch_reference"]["flags"]
    assert "time limit" in rows["sleeps"]["hint: " + ASSIGNMENT.exercises[1].title]
    assert "did not run" in rows["sleeps"]["hint: " + ASSIGNMENT.exercises[2].title]
    assert "kernel died" in rows["os_exit"]["hint: " + ASSIGNMENT.exercises[1].title]
    assert "SystemExit" in rows["sys_exit"]["hint: " + ASSIGNMENT.exercises[1].title]
    assert "not filled in yet" in rows["two_exercises_deleted"]["hint: " + ASSIGNMENT.exercises[1].title]


def test_empty_wrong_and_bad_files(graded):
    _, rows, out, _ = graded
    first, second = (f"hint: {e.title}" for e in ASSIGNMENT.exercises[:2])
    assert "not filled in yet" in rows["untouched_copy"][first]
    assert "unbiased variance" in rows["wrong_forward"][first]
    hint = rows["wrong_forward"][second]  # the full multi-line hint, not its first line
    assert "fix your forward first" in hint and "\nIt reports:" in hint and "unbiased variance" in hint
    for bad in ("invalid_json", "not_a_notebook"):
        assert rows[bad]["status"].startswith("error:") and rows[bad]["total"] == "0"
    feedback = (out / "feedback" / "wrong_forward.md").read_text()
    assert f"Score: **1 / {N}**" in feedback and "It reports:" in feedback
    assert "Not graded" in (out / "feedback" / "invalid_json.md").read_text()
    assert f"{N} / {N}" in (out / "feedback" / "solution.md").read_text()


def test_runtime_guard_catches_a_patch_when_static_flags_only_report(tmp_path):
    nb = _student(tmp_path)
    _set_block(nb, 1, _PATCH_ERR)
    path = tmp_path / "patcher.ipynb"
    nbformat.write(nb, str(path))
    results = grade(path, assignment=SOLUTION, tamper="report", cell_timeout=20)
    assert [r.passed for r in results] == [True] + [False] * (N - 1)
    assert "grading integrity" in results[1].message and "rel_err" in results[1].message
    assert results[1].flags, "the static finding is still reported"
    _set_block(nb, 1, _ADD_ATTR)
    nbformat.write(nb, str(path))
    results = grade(path, assignment=SOLUTION, tamper="report", cell_timeout=20)
    assert [r.passed for r in results] == [True] + [False] * (N - 1)
    assert "grading integrity" in results[1].message and "_err" in results[1].message


def test_submission_time_limit_fails_what_did_not_run(tmp_path):
    nb = _student(tmp_path)
    _set_block(nb, 1, "while True:\n    pass")
    path = tmp_path / "spinner.ipynb"
    nbformat.write(nb, str(path))
    [res] = grade_many(SOLUTION, [path], options=GradeOptions(cell_timeout=120, timeout=8))
    assert [r.passed for r in res.results] == [True] + [False] * (N - 1)
    assert "time limit" in res.results[1].message


def test_points_are_read_from_the_checker_cell(tmp_path):
    nb = nbformat.read(str(SOLUTION), as_version=4)
    _cell(nb, CHECKERS[1]).source += "  # points: 2.5"
    path = tmp_path / "a.ipynb"
    nbformat.write(nb, str(path))
    a = load_assignment(path)
    assert [e.points for e in a.exercises] == [1, 2.5] + [1] * (N - 2) and a.max_points == N + 1.5
    assert [e.title for e in a.exercises] == [e.title for e in ASSIGNMENT.exercises]


def test_titles_from_plain_headings_without_myst(tmp_path):
    nb = nbformat.read(str(SOLUTION), as_version=4)
    for c in nb.cells:
        if c.cell_type == "markdown":
            c.source = re.sub(r"```\{exercise\}.*?```", "", c.source, flags=re.S)
    path = tmp_path / "plain.ipynb"
    nbformat.write(nb, str(path))
    assert [e.title for e in load_assignment(path).exercises][0].startswith("Exercise 1")
    no_checks = copy.deepcopy(nb)
    no_checks.cells = [c for c in nb.cells if "check_" not in c.source or "import" in c.source]
    nbformat.write(no_checks, str(tmp_path / "none.ipynb"))
    with pytest.raises(ValueError, match="no graded exercise"):
        load_assignment(tmp_path / "none.ipynb")


def test_scan_code_flags_tampering_and_passes_ordinary_code():
    names = {"check_batchnorm_forward"}
    ordinary = [
        "mu = x.mean(axis=0)\nvar = x.var(axis=0)\nout = gamma * (x - mu) / np.sqrt(var + eps) + beta",
        "bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]",
        "from bncourse.gradcheck import eval_numerical_gradient_array",
        "import numpy as np\nfrom math import sqrt\nbn.momentum = None\nsetattr(bn, 'eps', 1e-5)",
        "this is not python (",
    ]
    for code in ordinary:
        assert scan_code(code, names) == [], code
    bad = {
        "def check_batchnorm_forward(*a):\n    pass": "redefines the checker",
        "check_batchnorm_forward = print": "redefines the checker",
        "import bncourse": "course package",
        "from bncourse.norms import batchnorm_forward": "course package",
        "import numpy\nnumpy.abs = lambda a: 0 * a": "attribute of a module",
        "import numpy as q\nsetattr(q, 'max', min)": "attribute of the module",
        "__import__('bnc' + 'ourse')": "dynamically",
        "import sys\nsys.modules['x'] = None": "sys.modules",
        "import os\nos._exit(0)": "os._exit",
        "get_ipython().set_custom_exc((Exception,), None)": "kernel",
        "%timeit 1": "kernel",
        "f.__code__ = g.__code__": "function code",
    }
    for code, reason in bad.items():
        assert any(reason in r for r in scan_code(code, names)), (code, scan_code(code, names))


def test_cli_usage_errors_are_one_line_exit_2(tmp_path, capsys):
    assert main(["grade", "--assignment", str(SOLUTION), str(tmp_path / "missing.ipynb")]) == 2
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{")
    assert main(["grade", "--assignment", str(bad), str(SOLUTION)]) == 2
    with pytest.raises(SystemExit) as e:
        main(["grade", "--workers", "0", str(SOLUTION)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len([ln for ln in err.splitlines() if ln.strip()]) == 3


def test_gradebook_cells_are_not_formulas_and_errors_score_zero(tmp_path):
    from bncourse.grading import ExerciseResult, SubmissionResult, write_feedback, write_gradebook

    ok = [ExerciseResult(e.title, True, "", e.points, e.points) for e in ASSIGNMENT.exercises]
    rows = [
        SubmissionResult("=cmd()", tmp_path / "=cmd().ipynb", ok),
        SubmissionResult("bob", tmp_path / "b", error="x"),
    ]
    path = write_gradebook(rows, ASSIGNMENT, tmp_path / "g.csv")
    with path.open(newline="") as f:
        got = list(csv.DictReader(f))
    assert got[0]["student"] == "'=cmd()" and got[0]["total"] == str(N) and got[1]["status"] == "error: x"
    assert f"Score: **{N} / {N}**" in write_feedback(rows[0], ASSIGNMENT, tmp_path / "fb").read_text()


def test_sandbox_has_no_network_but_a_loopback():
    import subprocess
    import sys

    from bncourse.grading import _sandbox_prefix

    prefix = _sandbox_prefix()
    if not prefix:
        pytest.skip("unprivileged user namespaces (unshare) are not available here: the grader warns and runs without")
    probe = (
        "import socket\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
        "socket.create_connection(s.getsockname(), timeout=2).close()\n"  # the loopback works
        "try:\n    socket.create_connection(('192.0.2.1', 80), timeout=2)\n"
        "except OSError as e:\n    print('blocked', e)\n"
    )
    out = subprocess.run([*prefix, sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "blocked" in out.stdout and "unreachable" in out.stdout, out


def test_tamper_policy_fail_zero_report(tmp_path):
    import textwrap

    nb = _honest(tmp_path)
    _set_block(nb, 2, "import bncourse  # flagged, harmless\n" + textwrap.dedent(HONEST_BLOCKS[2]))
    path = tmp_path / "flagged.ipynb"
    nbformat.write(nb, str(path))
    got = {}
    for policy in ("fail", "zero", "report"):
        [row] = grade_many(SOLUTION, [path], options=GradeOptions(tamper=policy))
        got[policy] = [r.points for r in row.results]
        assert row.results[2].flags and "course package" in row.results[2].flags[0]
    flagged = [1, 1, 0] + [1] * (N - 3)
    assert got == {"fail": flagged, "zero": NONE, "report": ALL}


# ------------------------------------------------------------------------------ wrong input of `grade`


@pytest.fixture
def no_grading(monkeypatch):
    """Fail the test if grading would start."""
    import bncourse.instructor as instructor

    def boom(*args, **kwargs):
        raise AssertionError("graded before the input was checked")

    monkeypatch.setattr(instructor, "grade_many", boom)


@pytest.fixture
def sub(tmp_path):
    """One submission (a copy of the solution under another name) in a folder."""
    path = tmp_path / "subs" / "alice.ipynb"
    path.parent.mkdir()
    path.write_text(SOLUTION.read_text())
    return path


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--timeout", "inf"], "argument --timeout: expected a finite number, got inf"),
        (["--timeout", "1e309"], "argument --timeout: expected a finite number, got 1e309"),
        (["--timeout", "nan"], "argument --timeout: expected a finite number, got nan"),
        (["--timeout", "100000"], "argument --timeout: must be from 1 to 86400, got 100000"),
        (["--cell-timeout", "inf"], "argument --cell-timeout: expected a finite number, got inf"),
        (["--cell-timeout", "1e-300"], "argument --cell-timeout: must be from 1 to 86400, got 1e-300"),
        (["--memory-mb", "9999999999999"], "argument --memory-mb: must be from 2048 to 1048576, got 9999999999999"),
        (["--memory-mb", "1"], "argument --memory-mb: must be from 2048 to 1048576, got 1"),
        (["--workers", "99999999999"], "argument --workers: must be from 1 to 1024, got 99999999999"),
        (["--batch", "0"], "argument --batch: must be at least 1, got 0"),
        (["--assignment", ""], "--assignment is empty"),
        (["--out", ""], "--out is empty"),
    ],
)
def test_grade_refuses_wrong_options_before_grading(options, expected, sub, capsys, no_grading):
    line = _refused(["grade", "--assignment", str(SOLUTION), str(sub.parent), *options], capsys)
    assert expected in line, line


def test_grade_checks_out_before_grading(sub, tmp_path, capsys, no_grading):
    afile = tmp_path / "afile.txt"
    afile.write_text("keep")
    line = _refused(["grade", "--assignment", str(SOLUTION), str(sub), "--out", str(afile)], capsys)
    assert f"--out {afile} is a file, not a folder" in line and afile.read_text() == "keep"
    line = _refused(["grade", "--assignment", str(SOLUTION), str(sub), "--out", str(afile / "grades")], capsys)
    assert f"--out {afile / 'grades'}: cannot create the folder" in line


def test_grade_refuses_bad_submission_paths(sub, tmp_path, capsys, no_grading, monkeypatch):
    monkeypatch.chdir(sub.parent)  # '' would mean this folder, which holds a notebook
    assert "an empty submission path ('')" in _refused(["grade", "--assignment", str(SOLUTION), ""], capsys)
    line = _refused(["grade", "--assignment", str(SOLUTION), str(SOLUTION)], capsys)
    assert f"{SOLUTION} is the assignment itself, not a submission" in line
    (tmp_path / "empty").mkdir()
    line = _refused(["grade", "--assignment", str(SOLUTION), str(tmp_path / "empty")], capsys)
    assert f"{tmp_path / 'empty'} holds no notebooks" in line
    line = _refused(["grade", "--assignment", str(SOLUTION), str(tmp_path / "missing.ipynb")], capsys)
    assert "missing.ipynb: no such submission" in line
    line = _refused(["grade", "--assignment", str(SOLUTION), "x" * 300 + ".ipynb"], capsys)
    assert "File name too long" in line and len(line) < 200
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.ipynb")
        line = _refused(["grade", "--assignment", str(SOLUTION), str(tmp_path / "pipe.ipynb")], capsys)
        assert f"{tmp_path / 'pipe.ipynb'}: not a regular file" in line
        line = _refused(["grade", "--assignment", str(tmp_path / "pipe.ipynb"), str(sub)], capsys)
        assert f"the assignment {tmp_path / 'pipe.ipynb'}: not a regular file" in line


def test_grade_refuses_an_assignment_that_student_would_refuse(sub, tmp_path, capsys, no_grading):
    nb = copy.deepcopy(ASSIGNMENT.nb)
    cell = ASSIGNMENT.exercises[0].cells[0]
    nb.cells[cell].source = nb.cells[cell].source.replace(END, "", 1)  # a BEGIN without its END
    bad = tmp_path / "unbalanced.ipynb"
    nbformat.write(nb, str(bad))
    line = _refused(["grade", "--assignment", str(bad), str(sub)], capsys)
    assert f"the assignment {bad}: cell {cell}: {BEGIN!r} without an END" in line
    listing = tmp_path / "list.ipynb"
    listing.write_text("[1, 2, 3]")
    line = _refused(["grade", "--assignment", str(listing), str(sub)], capsys)
    assert f"the assignment {listing}: not a notebook (JSON, but not of a Jupyter notebook's shape)" in line


def test_check_markers_and_read_notebook(tmp_path):
    assert check_markers(f"a\n{BEGIN}\nb\n{END}\n{BEGIN}\n{END}") == 2 and check_markers("x = 1") == 0
    for bad, message in [(f"{BEGIN}\n", "without an END"), (END, "without a BEGIN"), (f"{BEGIN}\n{BEGIN}", "nested")]:
        with pytest.raises(ValueError, match=message):
            check_markers(bad)
    assert read_notebook(SOLUTION).cells
    (tmp_path / "bad.ipynb").write_text("{")
    with pytest.raises(ValueError, match=r"bad\.ipynb: not a notebook \(not valid JSON\)"):
        read_notebook(tmp_path / "bad.ipynb")
    with pytest.raises(ValueError, match="not a regular file"):
        read_notebook(tmp_path)


# A kernel that fails to start while a counter file is below its limit, then starts as ipykernel does: the
# grader's trouble (two kernels handed one port), which must never cost a student points.
FLAKY_KERNEL = """
import os, sys
counter, limit = sys.argv[1], int(sys.argv[2])
n = int(open(counter).read()) if os.path.exists(counter) else 0
open(counter, "w").write(str(n + 1))
if n < limit:
    sys.exit(3)
os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", "-f", sys.argv[3]])
"""


def _flaky_kernel(monkeypatch, tmp_path, failures: int) -> Path:
    import bncourse.grading as grading

    real, counter = grading._kernelspec, tmp_path / "starts"

    def spec(root, fork_server):
        out = real(root, fork_server)
        path = out / "kernels" / grading.KERNEL_NAME / "kernel.json"
        data = json.loads(path.read_text())
        data["argv"] = [sys.executable, "-c", FLAKY_KERNEL, str(counter), str(failures), "{connection_file}"]
        path.write_text(json.dumps(data))
        return out

    monkeypatch.setattr(grading, "_kernelspec", spec)
    return counter


def test_a_kernel_that_did_not_start_is_started_again_and_never_costs_points(monkeypatch, tmp_path):
    counter = _flaky_kernel(monkeypatch, tmp_path, failures=1)
    [row] = grade_many(ASSIGNMENT, [SOLUTION], options=GradeOptions(timeout=120))
    assert not row.error and [r.points for r in row.results] == ALL, row
    assert counter.read_text() == "2", "one failed start, then one that worked"


def test_a_kernel_that_never_starts_is_the_graders_error_not_zero_points(monkeypatch, tmp_path):
    counter = _flaky_kernel(monkeypatch, tmp_path, failures=99)
    [row] = grade_many(ASSIGNMENT, [SOLUTION], options=GradeOptions(timeout=120))
    assert row.error == NOT_STARTED and not row.results, row
    assert counter.read_text() == str(START_ATTEMPTS)


def test_kernel_start_failures_are_told_from_a_students_errors(tmp_path):
    from bncourse.grading import kernel_did_not_start, kernel_start_failed

    assert kernel_start_failed("RuntimeError: Kernel died before replying to kernel_info")
    assert kernel_start_failed("zmq.error.ZMQError: Address already in use (addr='tcp://127.0.0.1:1')")
    assert not kernel_start_failed("RuntimeError: the student's own error")
    nb = tmp_path / "00001" / "submission.ipynb"
    started = "RuntimeError: Kernel died before replying to kernel_info"
    died = {"nodeid": "00001/submission.ipynb::Cell 0", "when": "setup", "longrepr": started}
    other = {"nodeid": "00002/submission.ipynb::Cell 0", "when": "call", "longrepr": "ValueError"}
    assert kernel_did_not_start(nb, [died, {**died, "nodeid": died["nodeid"][:-1] + "1"}, other])
    assert not kernel_did_not_start(nb, [died, {**died, "when": "call"}]), "a cell ran: the submission's run"
    assert not kernel_did_not_start(nb, [other]), "no entry of its own"
