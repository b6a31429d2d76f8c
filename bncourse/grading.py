"""Grading a class: the student's solution code, run with the assignment's own checker cells, under nbval.

The instructor's *solution* notebook is the assignment: it fixes the exercises (titles, points, checker cells),
the cell order and everything outside the ``# BEGIN SOLUTION`` / ``# END SOLUTION`` blocks. From a submission
only the code inside those blocks is taken; it is matched to the assignment's blocks by cell id, else by the
cell's code outside the blocks (which a student copy keeps), else by order. The grader writes a notebook of
its own per submission (the assignment with the student's blocks in place, outputs and tags cleared, a hidden
guard cell, every checker cell rewritten to call the guard) and runs it with ``pytest --nbval-lax`` on a
kernelspec that points at the grader's own Python. See ``book/instructors.md`` for the workflow.

Per submission: its own temporary directory (the kernel's working directory), its own processes with limits
on CPU time and address space, no network when unprivileged namespaces are available (``unshare``), a time
limit per cell and per submission. A checker cell counts only when it ran and passed: skipped, xfailed, timed
out, interrupted or a dead kernel is a failure.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

__all__ = [
    "BEGIN",
    "END",
    "STUB",
    "exercise_cells",
    "Assignment",
    "Exercise",
    "ExerciseResult",
    "GradeOptions",
    "SubmissionError",
    "SubmissionResult",
    "find_submissions",
    "grade",
    "grade_many",
    "check_markers",
    "load_assignment",
    "kernel_did_not_start",
    "kernel_start_failed",
    "read_notebook",
    "scan_code",
    "solution_blocks",
    "write_feedback",
    "write_gradebook",
]

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = 'raise NotImplementedError("write your solution here")'
KERNEL_NAME = "bncourse-grader"
# a kernel that never started (before any cell of the submission ran): the grader's trouble, never the student's;
# e.g. two kernels starting at once handed the same free port
KERNEL_START_FAILED = ("Kernel died before replying to kernel_info", "Address already in use", "Kernel didn't respond")


def kernel_start_failed(text: str) -> bool:
    """Whether an error's text says a kernel failed to start (also used by the book build and the Colab tests)."""
    return any(m in text for m in KERNEL_START_FAILED)


START_ATTEMPTS = 3
MARK = "BNCOURSE_GRADER_HINT:"
_EXERCISE = re.compile(r"```\{exercise\}\s*(?P<title>[^\n]*)\n(?P<opts>(?::[^\n]*\n)*)")
_LABEL = re.compile(r":label:\s*(\S+)")
_HEADING = re.compile(r"^#{1,6}\s*(Exercise\b[^\n]*)$", re.M)
_CHECK_CALL = re.compile(r"^\s*check_\w+\(", re.M)
_POINTS = re.compile(r"#\s*points\s*:\s*([0-9]+(?:\.[0-9]+)?)", re.I)
_NBVAL_MARKER = re.compile(r"^\s*#\s*(NBVAL|PYTEST_VALIDATE)_\w+\s*$", re.I)
_ANSI = re.compile(r"(\x1b|#x1B)\[[0-9;]*m")


class SubmissionError(ValueError):
    """A submission that cannot be graded at all (not a notebook, invalid JSON, ...): reported in its row."""


@dataclass
class ExerciseResult:
    """One graded exercise: its title, whether its check passed, the full hint if not, points and flags."""

    title: str
    passed: bool
    message: str = ""
    points: float = 0.0
    max_points: float = 1.0
    flags: list[str] = field(default_factory=list)


@dataclass
class Exercise:
    """An exercise of the assignment: its title, points, checker cell and solution cells (cell indices)."""

    title: str
    points: float
    checker: int
    cells: list[int]


@dataclass
class Assignment:
    """The instructor's solution notebook, parsed: exercises, and the solution blocks of each code cell."""

    path: Path
    nb: nbformat.NotebookNode
    exercises: list[Exercise]
    blocks: dict[int, int]  # cell index -> number of solution blocks in it
    checker_names: set[str]

    @property
    def max_points(self) -> float:
        """The total of the exercises' points."""
        return sum(e.points for e in self.exercises)


@dataclass
class GradeOptions:
    """Limits and policies of a grading run.

    ``cell_timeout`` and ``timeout`` are seconds per cell and per submission; ``memory_mb`` limits each process's
    address space; ``tamper`` decides what a static finding in a student's code does: ``fail`` (the exercise that
    holds the code scores 0), ``zero`` (the whole submission scores 0) or ``report`` (flagged only). ``allow`` lists
    the modules of the course package that solutions may import (``from bncourse.gradcheck import ...``).
    """

    cell_timeout: float = 30.0
    timeout: float = 60.0
    memory_mb: int = 6144
    tamper: str = "fail"
    allow: tuple[str, ...] = ("bncourse.gradcheck",)
    network: bool = False
    fork_server: bool = True


@dataclass
class SubmissionResult:
    """The grade of one submission: its exercises, or the error that kept it from being graded."""

    student: str
    path: Path
    results: list[ExerciseResult] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def total(self) -> float:
        """Points earned."""
        return sum(r.points for r in self.results)


# ----------------------------------------------------------------------------------------------- the assignment


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def solution_blocks(source: str) -> list[tuple[str, str]]:
    """The ``(indent, code)`` of each ``BEGIN``/``END SOLUTION`` block of a cell, in order.

    Lenient, for submissions: a ``BEGIN`` without an ``END`` runs to the end of the cell, a stray ``END`` and a
    nested ``BEGIN`` are ignored.
    """
    blocks, current, indent = [], None, ""
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN and current is None:
            current, indent = [], line[: len(line) - len(line.lstrip())]
        elif stripped == END and current is not None:
            blocks.append((indent, "\n".join(current)))
            current = None
        elif current is not None and stripped != BEGIN:
            current.append(line)
    if current is not None:
        blocks.append((indent, "\n".join(current)))
    return blocks


def _skeleton(source: str) -> str:
    """A cell's code outside its solution blocks, blank lines and trailing spaces dropped."""
    out, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            inside = True
        elif stripped == END:
            inside = False
        elif not inside and stripped:
            out.append(line.rstrip())
    return "\n".join(out)


def _title(markdown: str) -> str | None:
    m = _EXERCISE.search(markdown)
    if m:
        label = _LABEL.search(m.group("opts"))
        return m.group("title").strip() or (label.group(1) if label else None)
    m = _HEADING.search(markdown)
    return m.group(1).strip() if m else None


def exercise_cells(nb) -> dict[int, str]:
    """Map the index of each checker cell (a code cell calling ``check_...``) to the title of the exercise it
    follows (from its ``{exercise}`` fence or an ``Exercise ...`` heading)."""
    title, found = None, {}
    for i, cell in enumerate(nb.cells):
        src = _source(cell)
        if cell.cell_type == "markdown":
            title = _title(src) or title
        elif cell.cell_type == "code" and title and _CHECK_CALL.search(src):
            found[i] = title
    return found


def check_markers(source: str) -> int:
    """The number of ``BEGIN``/``END SOLUTION`` blocks of a cell's ``source``; strict, for the instructor's
    notebooks. Raises ``ValueError`` on a nested ``BEGIN``, an ``END`` without a ``BEGIN`` or a ``BEGIN``
    without an ``END``."""
    inside, count = False, 0
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"nested {BEGIN!r}")
            inside, count = True, count + 1
        elif stripped == END:
            if not inside:
                raise ValueError(f"{END!r} without a BEGIN")
            inside = False
    if inside:
        raise ValueError(f"{BEGIN!r} without an END")
    return count


def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """Read the notebook ``path`` (converted to nbformat 4). Raises ``ValueError`` naming ``path`` when it is
    not a regular file (a folder, a pipe: reading a pipe would wait forever), cannot be read, or is not a valid
    Jupyter notebook (invalid JSON, JSON of another shape, a notebook that fails the nbformat schema)."""
    path = Path(path)
    try:
        regular = path.is_file()
    except OSError as e:
        raise ValueError(f"{path}: {e.strerror or e}") from None
    if not regular:
        raise ValueError(f"{path}: {'no such file' if not path.exists() else 'not a regular file'}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nbformat warns about missing cell ids; the schema check decides
            nb = nbformat.read(str(path), as_version=4)
    except OSError as e:
        raise ValueError(f"{path}: cannot read the file ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a notebook (not UTF-8 text)") from None
    except nbformat.ValidationError as e:
        raise ValueError(f"{path}: not a valid notebook ({str(e).splitlines()[0]})") from None
    except (AttributeError, KeyError, TypeError):
        raise ValueError(f"{path}: not a notebook (JSON, but not of a Jupyter notebook's shape)") from None
    except ValueError:  # nbformat's NotJSONError and JSONDecodeError are ValueErrors
        raise ValueError(f"{path}: not a notebook (not valid JSON)") from None
    if not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path}: not a notebook (no list of cells)")
    return nb


def load_assignment(path: str | Path) -> Assignment:
    """Parse the instructor's solution notebook ``path``: exercises (title from the ``{exercise}`` fence or an
    ``Exercise ...`` heading; points from a ``# points: N`` comment in the checker cell, default 1) and blocks.

    Raises ``ValueError`` (naming ``path``) when the notebook has no graded exercise (a code cell calling
    ``check_...``), unbalanced solution markers (:func:`check_markers`), or cannot be read (:func:`read_notebook`).
    """
    path = Path(path)
    nb = read_notebook(path)
    exercises, blocks, pending, title, names = [], {}, [], None, set()
    for i, cell in enumerate(nb.cells):
        src = _source(cell)
        if cell.cell_type == "markdown":
            title = _title(src) or title
            continue
        if cell.cell_type != "code":
            continue
        if BEGIN in src or END in src:
            try:
                check_markers(src)
            except ValueError as e:
                raise ValueError(f"{path}: cell {i}: {e}") from None
        if BEGIN in src:
            blocks[i] = len(solution_blocks(src))
            pending.append(i)
        if _CHECK_CALL.search(src):
            names |= set(re.findall(r"\b(check_\w+)\s*\(", src))
            m = _POINTS.search(src)
            exercises.append(
                Exercise(title or f"Exercise {len(exercises) + 1}", float(m.group(1)) if m else 1.0, i, pending)
            )
            pending, title = [], None
    if not exercises:
        raise ValueError(f"{path} has no graded exercise (a code cell calling check_...)")
    return Assignment(path, nb, exercises, blocks, names)


# ------------------------------------------------------------------------------------------------ a submission


@dataclass
class _SubCell:
    id: str | None
    skeleton: str
    blocks: list[tuple[str, str]]


def _read_submission(path: Path) -> list[_SubCell]:
    """The code cells with solution blocks of a submission; ``SubmissionError`` when it is not a notebook."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SubmissionError(f"cannot read the file: {type(e).__name__}: {e}") from None
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise SubmissionError(f"not a notebook: invalid JSON ({e})") from None
    if isinstance(raw, dict) and "worksheets" in raw:
        try:
            raw = json.loads(nbformat.writes(nbformat.reads(text, as_version=4)))
        except Exception as e:  # noqa: BLE001 - any failure of the old-format conversion is reported in the row
            raise SubmissionError(f"an nbformat 3 notebook that cannot be converted: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        raise SubmissionError("not a Jupyter notebook (no list of cells)")
    cells = []
    for cell in raw["cells"]:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        src = _source(cell)
        if BEGIN in src:
            cid = cell.get("id")
            cells.append(_SubCell(cid if isinstance(cid, str) else None, _skeleton(src), solution_blocks(src)))
    return cells


def _match(assignment: Assignment, cells: list[_SubCell]) -> dict[int, list[str | None]]:
    """The student's code for each block of the assignment (None: not found): by cell id, then by the code around
    the blocks (unique), then by order among the cells left. A cell is used once, so duplicating, deleting or
    reordering cells can only lose blocks, never move graded code into another exercise's place unnoticed."""
    used: set[int] = set()
    found: dict[int, _SubCell] = {}
    order = sorted(assignment.blocks)
    for i in order:
        cid = assignment.nb.cells[i].get("id")
        j = next((j for j, c in enumerate(cells) if j not in used and cid and c.id == cid), None)
        if j is not None:
            used.add(j)
            found[i] = cells[j]
    for i in order:
        if i in found:
            continue
        sk = _skeleton(_source(assignment.nb.cells[i]))
        hits = [j for j, c in enumerate(cells) if j not in used and c.skeleton == sk]
        if len(hits) == 1:
            used.add(hits[0])
            found[i] = cells[hits[0]]
    rest = [j for j in range(len(cells)) if j not in used]
    for i in order:
        if i not in found and rest:
            found[i] = cells[rest.pop(0)]
    out = {}
    for i in order:
        got = [code for _, code in found[i].blocks] if i in found else []
        out[i] = [got[k] if k < len(got) else None for k in range(assignment.blocks[i])]
    return out


def _prepare_code(code: str | None, indent: str) -> str:
    """The student's block, without nbval markers, re-indented to the assignment's block; a stub if empty."""
    lines = [] if code is None else [ln for ln in code.splitlines() if not _NBVAL_MARKER.match(ln)]
    body = textwrap.dedent("\n".join(lines))
    if not any(ln.strip() and not ln.strip().startswith("#") for ln in body.splitlines()):
        body = (body + "\n" if body.strip() else "") + STUB
    return "\n".join(indent + ln if ln.strip() else "" for ln in body.splitlines())


def _fill(source: str, codes: list[str | None]) -> str:
    """The assignment cell ``source`` with its blocks replaced by ``codes`` (markers kept)."""
    out, inside, k = [], False, 0
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN and not inside:
            inside = True
            out.append(line)
            out.append(_prepare_code(codes[k] if k < len(codes) else None, line[: len(line) - len(line.lstrip())]))
            k += 1
        elif stripped == END and inside:
            inside = False
            out.append(line)
        elif not inside:
            out.append(line)
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- static scan


_FORBIDDEN_NAMES = {
    "__import__": "imports modules dynamically (__import__)",
    "importlib": "imports modules dynamically (importlib)",
    "__builtins__": "touches the builtins",
    "builtins": "touches the builtins",
    "globals": "reaches into the notebook's globals()",
    "get_ipython": "drives the notebook's kernel (get_ipython, magics, shell commands)",
    "exec": "runs code from strings (exec)",
    "eval": "runs code from strings (eval)",
    "compile": "compiles code from strings",
    "ctypes": "uses ctypes",
    "gc": "uses the garbage collector's object graph (gc)",
    "inspect": "inspects frames or source (inspect)",
    "atexit": "registers exit handlers (atexit)",
    "signal": "installs signal handlers",
    "threading": "starts threads",
    "subprocess": "starts processes",
    "multiprocessing": "starts processes",
}
_FORBIDDEN_ATTRS = {
    "modules": "reaches into sys.modules",
    "_exit": "exits the kernel (os._exit)",
    "exit": "exits (sys.exit / exit)",
    "kill": "kills processes",
    "system": "runs shell commands",
    "settrace": "installs a tracer",
    "setprofile": "installs a profiler",
    "_getframe": "reaches into call frames",
    "__code__": "replaces function code",
    "__globals__": "reaches into a function's globals",
    "__defaults__": "changes function defaults",
    "__kwdefaults__": "changes function defaults",
    "__closure__": "reaches into closures",
    "__dict__": "reaches into an object's namespace",
    "__class__": "reaches into an object's class",
    "__subclasses__": "reaches into the class hierarchy",
}
_OWNER = {"modules": "sys", "exit": "sys", "kill": "os", "system": "os"}  # attributes flagged on that module only


def _ipython_to_python(code: str) -> str:
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(code)
    except Exception:  # noqa: BLE001 - without IPython, parse the code as plain Python
        return code


def scan_code(
    code: str, checker_names: Iterable[str] = (), allow: Sequence[str] = ("bncourse.gradcheck",)
) -> list[str]:
    """Reasons to distrust a student's solution code, found without running it: redefining a checker, using the
    course package (its checkers or reference implementations; ``allow`` lists the modules that may be imported
    with ``from ... import``), assigning to an attribute of a module, dynamic code, exits and introspection.

    An empty list for ordinary numpy/torch code; code that does not parse is not flagged (it fails when run).
    """
    checkers = set(checker_names)
    try:
        tree = ast.parse(_ipython_to_python(code))
    except SyntaxError:
        return []
    found: list[str] = []
    modules: set[str] = {"np", "numpy", "torch", "nn", "F", "math", "sys", "os", "time", "random"}
    aliases: dict[str, str] = {"sys": "sys", "os": "os"}  # name -> the module it is bound to

    def add(msg: str) -> None:
        if msg not in found:
            found.append(msg)

    def root(node: ast.AST) -> str | None:
        while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
            node = node.func if isinstance(node, ast.Call) else node.value
        return node.id if isinstance(node, ast.Name) else None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                modules.add((alias.asname or alias.name).split(".")[0])
                aliases[(alias.asname or alias.name).split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
                if alias.name.split(".")[0] == "bncourse":
                    add(f"imports the course package ({alias.name}): solutions may not use its checkers or references")
                if alias.name.split(".")[0] in _FORBIDDEN_NAMES:
                    add(_FORBIDDEN_NAMES[alias.name.split(".")[0]])
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if mod.split(".")[0] == "bncourse" and not any(mod == a or mod.startswith(a + ".") for a in allow):
                add(f"imports from the course package ({mod}): solutions may not use its checkers or references")
            if mod.split(".")[0] in _FORBIDDEN_NAMES:
                add(_FORBIDDEN_NAMES[mod.split(".")[0]])
            for alias in node.names:
                if (alias.asname or alias.name) in checkers:
                    add(f"redefines the checker {alias.asname or alias.name}")
                if alias.name in _FORBIDDEN_NAMES or alias.name in _FORBIDDEN_ATTRS:
                    add(_FORBIDDEN_NAMES.get(alias.name) or _FORBIDDEN_ATTRS[alias.name])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name in checkers:
            add(f"redefines the checker {node.name}")
        elif isinstance(node, ast.Name):
            if node.id in checkers and isinstance(node.ctx, ast.Store | ast.Del):
                add(f"redefines the checker {node.id}")
            elif node.id == "bncourse":
                add("uses the course package (bncourse): solutions may not use its checkers or references")
            elif node.id in _FORBIDDEN_NAMES:
                add(_FORBIDDEN_NAMES[node.id])
            elif node.id in ("exit", "quit"):
                add(_FORBIDDEN_ATTRS["exit"])
        elif isinstance(node, ast.Attribute) and node.attr in _FORBIDDEN_ATTRS:
            owner = _OWNER.get(node.attr)
            if owner is None or (isinstance(node.value, ast.Name) and aliases.get(node.value.id) == owner):
                add(_FORBIDDEN_ATTRS[node.attr])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "bncourse" in node.value:
            add("names the course package in a string")
        elif isinstance(node, ast.Global | ast.Nonlocal):
            for name in node.names:
                if name in checkers:
                    add(f"redefines the checker {name}")
    for node in ast.walk(tree):  # a second pass, once every imported module alias is known
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            if node.args and root(node.args[0]) in modules:
                add(f"changes an attribute of the module {root(node.args[0])} ({node.func.id})")
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, ast.Attribute) and root(sub) in modules:
                    add(f"assigns to {ast.unparse(sub)}, an attribute of a module")
                    break
    return found


# ------------------------------------------------------------------------------------------- the grader notebook


@dataclass
class _Prepared:
    student: str
    path: Path
    nb_path: Path | None = None
    roles: dict[int, tuple[str, int]] = field(default_factory=dict)  # nbval cell number -> (role, exercise)
    flags: dict[int, list[str]] = field(default_factory=dict)  # exercise -> static findings
    error: str = ""


def _build(assignment: Assignment, blocks: dict[int, list[str | None]]) -> tuple[nbformat.NotebookNode, dict]:
    """The notebook the grader runs, and the role of each of its code cells (by nbval's cell number)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": KERNEL_NAME, "display_name": "bncourse grader", "language": "python"},
        "language_info": {"name": "python"},
    }
    owner = {}
    for n, ex in enumerate(assignment.exercises):
        owner[ex.checker] = ("checker", n)
        for i in ex.cells:
            owner[i] = ("solution", n)
    first_solution = min(assignment.blocks) if assignment.blocks else assignment.exercises[0].checker
    roles, code_no = {}, 0

    def add_code(src: str, role: tuple[str, int]) -> None:
        nonlocal code_no
        nb.cells.append(nbformat.v4.new_code_cell(src))
        roles[code_no] = role
        code_no += 1

    for i, cell in enumerate(assignment.nb.cells):
        if i == first_solution:
            add_code(
                "import bncourse._grading_runtime as _bncourse_grader\n_bncourse_grader.install(globals())",
                ("guard", -1),
            )
        if cell.cell_type != "code":
            continue
        src = _source(cell)
        role = owner.get(i, ("setup", -1))
        if role[0] == "checker":
            src = (
                "import bncourse._grading_runtime as _bncourse_grader\n"
                f"_bncourse_grader.run({json.dumps(src)}, globals())"
            )
        elif i in blocks:
            src = _fill(src, blocks[i])
            role = owner.get(i, ("solution", -1))
        add_code(src, role)
    return nb, roles


def _student_id(path: Path, assignment: Assignment) -> str:
    stem = path.stem
    if stem == assignment.path.stem and path.parent.name:
        return path.parent.name
    return stem


def _prepare(assignment: Assignment, path: Path, student: str, workdir: Path, opts: GradeOptions) -> _Prepared:
    prep = _Prepared(student, path)
    try:
        cells = _read_submission(path)
    except SubmissionError as e:
        prep.error = str(e)
        return prep
    blocks = _match(assignment, cells)
    for n, ex in enumerate(assignment.exercises):
        for i in ex.cells:
            for code in blocks.get(i, []):
                if code:
                    for reason in scan_code(code, assignment.checker_names, opts.allow):
                        prep.flags.setdefault(n, [])
                        if reason not in prep.flags[n]:
                            prep.flags[n].append(reason)
    nb, prep.roles = _build(assignment, blocks)
    workdir.mkdir(parents=True, exist_ok=True)
    prep.nb_path = workdir / "submission.ipynb"
    nbformat.write(nb, str(prep.nb_path))
    return prep


# ------------------------------------------------------------------------------------------- running nbval


_SANDBOX: list[str] | None = None


def _sandbox_prefix() -> list[str]:
    """``unshare`` without root (no network, own PID namespace) when the OS allows it; else [] and a warning."""
    global _SANDBOX
    if _SANDBOX is None:
        prefix = ["unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child"]
        script = 'ip link set lo up && exec "$@"'  # the kernel talks to pytest over the loopback
        try:
            ok = shutil.which("unshare") and (
                subprocess.run([*prefix, "sh", "-c", script, "sh", "true"], capture_output=True, timeout=20).returncode
                == 0
            )
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok and shutil.which("ip"):
            _SANDBOX = [*prefix, "sh", "-c", script, "sh"]
        else:
            warnings.warn(
                "grading without network isolation: unprivileged user namespaces (unshare) or `ip` are unavailable; "
                "run the grader in a container without network for that",
                RuntimeWarning,
                stacklevel=3,
            )
            _SANDBOX = []
    return _SANDBOX


def _limits(cpu_seconds: int, memory_mb: int):
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        if memory_mb > 0:
            resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _kernelspec(root: Path, fork_server: bool) -> Path:
    spec = root / "jupyter" / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    if fork_server:
        argv = [sys.executable, "-m", "bncourse._grading_launch", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "bncourse grader", "language": "python"})
    )
    return root / "jupyter"


def _preload(assignment: Assignment) -> list[str]:
    """The modules imported by the assignment's code outside solution and checker cells (for the fork server)."""
    skip = {e.checker for e in assignment.exercises} | set(assignment.blocks)
    names = ["numpy", "bncourse._grading_runtime"]
    for i, cell in enumerate(assignment.nb.cells):
        if cell.cell_type != "code" or i in skip:
            continue
        try:
            tree = ast.parse(_ipython_to_python(_source(cell)))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.append(node.module)
    return list(dict.fromkeys(names))


def _run_batch(
    batch: list[_Prepared], root: Path, opts: GradeOptions, tag: str, preload: Sequence[str] = ()
) -> list[dict]:
    """Run the batch's notebooks in one ``pytest --nbval-lax`` (one kernel each); the cells' log entries."""
    log = root / f"log-{tag}.jsonl"
    ini = root / "pytest.ini"
    if not ini.exists():
        ini.write_text("[pytest]\naddopts =\n")
    package_root = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])]),
        "JUPYTER_PATH": str(_kernelspec(root, opts.fork_server)),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "IPYTHONDIR": str(root / "ipython"),
        "MPLBACKEND": "Agg",
        "BNCOURSE_OFFLINE": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "BNCOURSE_GRADER_LOG": str(log),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    if opts.fork_server:
        env["BNCOURSE_GRADER_PRELOAD"] = ",".join(preload)
    else:
        env.pop("BNCOURSE_GRADER_PRELOAD", None)
    cmd = [sys.executable, "-m", "pytest", "-c", str(ini), "--rootdir", str(root), "-q", "-p", "no:cacheprovider"]
    cmd += ["-p", "bncourse._grading_plugin", "--nbval-lax", f"--nbval-kernel-name={KERNEL_NAME}"]
    cmd += [f"--nbval-cell-timeout={opts.cell_timeout:g}", "--nbval-kernel-startup-timeout=60"]
    cmd += [str(p.nb_path) for p in batch]
    limit = opts.timeout * len(batch) + 15
    prefix = [] if opts.network else _sandbox_prefix()
    proc = subprocess.Popen(
        [*prefix, *cmd],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_limits(int(limit) + 30, opts.memory_mb),  # noqa: PLW1509 - rlimits before exec, no threads
    )
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    entries = []
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


def _hint(text: str) -> str | None:
    text = _ANSI.sub("", text)
    hits = re.findall(re.escape(MARK) + r'("(?:[^"\\]|\\.)*")', text)
    if hits:
        try:
            return json.loads(hits[-1])
        except ValueError:
            return None
    return None


def _last_error(text: str) -> str:
    text = _ANSI.sub("", text)
    errors = re.findall(r"^(\w*(?:Error|Exception|Exit|Interrupt)\b.*)$", text, re.M)
    if errors:
        return errors[-1].strip()
    if "Kernel dead" in text:
        return "the kernel had died"
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "failed"


def _results(assignment: Assignment, prep: _Prepared, entries: list[dict], opts: GradeOptions) -> list[ExerciseResult]:
    by_cell: dict[int, dict] = {}
    for e in entries:
        m = re.search(r"::Cell (\d+)", e.get("nodeid", ""))
        if m and Path(e["nodeid"].split("::")[0]).parent.name == prep.nb_path.parent.name:
            by_cell[int(m.group(1))] = e
    cause = ""
    for n in sorted(prep.roles):
        e = by_cell.get(n)
        if e and (e.get("died") or "Timeout of" in e.get("longrepr", "")):
            cause = (
                "the kernel died (os._exit, a crash, or the memory or CPU limit)"
                if e.get("died")
                else f"a cell ran past the time limit of {opts.cell_timeout:g} s per cell"
            )
            break
    results = []
    for n_ex, ex in enumerate(assignment.exercises):
        cells = [n for n, (role, k) in prep.roles.items() if k == n_ex]
        checker = next(n for n in cells if prep.roles[n][0] == "checker")
        e = by_cell.get(checker)
        passed = bool(e) and e["outcome"] == "passed" and not e.get("xfail")
        msg = ""
        if not passed:
            if e is None:
                msg = f"did not run: the submission ran past its time limit of {opts.timeout:g} s"
            elif e.get("xfail") or e["outcome"] == "skipped":
                msg = f"did not run: {cause or 'an earlier cell did not finish'}"
            elif e.get("died") or "Timeout of" in e.get("longrepr", ""):
                msg = f"did not finish: {cause}"
            else:
                msg = _hint(e.get("longrepr", "")) or _last_error(e.get("longrepr", ""))
            own = [by_cell[n] for n in cells if prep.roles[n][0] == "solution" and n in by_cell]
            errs = [_last_error(x["longrepr"]) for x in own if x["outcome"] == "failed" and not x.get("died")]
            if errs and "Timeout of" not in own[0].get("longrepr", ""):
                msg = f"your code for this exercise raised {errs[0]}\n{msg}"
        flags = prep.flags.get(n_ex, [])
        if flags and opts.tamper in ("fail", "zero") and passed:
            passed, msg = False, "not accepted: your code " + "; ".join(flags)
        results.append(ExerciseResult(ex.title, passed, msg, ex.points if passed else 0.0, ex.points, list(flags)))
    if opts.tamper == "zero" and any(r.flags for r in results):
        for r in results:
            if r.passed:
                r.passed, r.points, r.message = False, 0.0, "not accepted: another exercise's code was flagged"
    return results


# ------------------------------------------------------------------------------------------- a class at once


def find_submissions(paths: Iterable[str | Path]) -> list[Path]:
    """The ``.ipynb`` files among ``paths``, folders searched recursively (checkpoint folders skipped), sorted.

    Raises ``ValueError`` naming the path for an empty path (``''``, which would mean the current folder), a path
    that does not exist or cannot be looked at (a name too long), a path that is neither a folder nor a regular
    file (a pipe would hang the grader), and a folder that holds no notebooks.
    """
    out: list[Path] = []
    for text in paths:
        if not str(text).strip():
            raise ValueError("an empty submission path ('')")
        p = Path(text)
        try:
            is_dir, is_file, exists = p.is_dir(), p.is_file(), p.exists()
        except OSError as e:
            name = str(p) if len(str(p)) <= 80 else str(p)[:77] + "..."
            raise ValueError(f"{name}: {e.strerror or e}") from None
        if is_dir:
            found = sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts and q.is_file())
            if not found:
                raise ValueError(f"{p} holds no notebooks (*.ipynb)")
            out += found
        elif is_file:
            out.append(p)
        else:
            raise ValueError(f"{p}: {'not a regular file' if exists else 'no such submission'}")
    seen, unique = set(), []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


NOT_STARTED = "the grader's kernel did not start, so nothing of this submission ran (not its fault): grade it again"


def kernel_did_not_start(nb_path: Path, entries: list[dict]) -> bool:
    """Whether the grader's log ``entries`` say that the kernel for the notebook ``nb_path`` failed to start:
    every one of its cells failed in setup (none ran) with a kernel-start failure."""
    mine = [e for e in entries if Path(e.get("nodeid", "").split("::")[0]).parent.name == nb_path.parent.name]
    return bool(mine) and all(e.get("when") == "setup" and kernel_start_failed(e.get("longrepr", "")) for e in mine)


def grade_many(
    assignment: str | Path | Assignment,
    submissions: Sequence[str | Path],
    *,
    workers: int = 1,
    batch: int = 8,
    options: GradeOptions | None = None,
    progress: bool = False,
) -> list[SubmissionResult]:
    """Grade every submission (files) against ``assignment``: ``workers`` pytest processes at once, each grading
    ``batch`` submissions (one kernel each). Never raises for a bad submission: its row carries the error."""
    opts = options or GradeOptions()
    if not isinstance(assignment, Assignment):
        assignment = load_assignment(assignment)
    paths = [Path(p) for p in submissions]
    ids: dict[str, int] = {}
    students = []
    for p in paths:
        sid = _student_id(p, assignment)
        ids[sid] = ids.get(sid, 0) + 1
        students.append(sid if ids[sid] == 1 else f"{sid}-{ids[sid]}")
    results: list[SubmissionResult | None] = [None] * len(paths)
    with tempfile.TemporaryDirectory(prefix="bncourse-grade-") as tmp:
        root = Path(tmp)
        preps = [
            _prepare(assignment, p, s, root / f"{k:05d}", opts)
            for k, (p, s) in enumerate(zip(paths, students, strict=True))
        ]
        runnable = [k for k, pr in enumerate(preps) if not pr.error]
        preload = _preload(assignment)
        for k, pr in enumerate(preps):
            if pr.error:
                results[k] = SubmissionResult(pr.student, pr.path, error=pr.error)
        batches = [runnable[i : i + max(1, batch)] for i in range(0, len(runnable), max(1, batch))]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(paths), unit="submission", desc="grading", file=sys.stderr)
            bar.update(len(paths) - len(runnable))

        def work(idx: int, ks: list[int]) -> tuple[list[int], list[dict], float]:
            t0 = time.perf_counter()
            return ks, _run_batch([preps[k] for k in ks], root, opts, str(idx), preload), time.perf_counter() - t0

        for attempt in range(1, START_ATTEMPTS + 1):
            again = []  # submissions whose kernel did not start: graded again in a new run
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                futures = [pool.submit(work, f"{attempt}-{i}", ks) for i, ks in enumerate(batches)]
                for fut in as_completed(futures):
                    ks, entries, seconds = fut.result()
                    for k in ks:
                        pr = preps[k]
                        if kernel_did_not_start(pr.nb_path, entries):
                            again.append(k)
                            results[k] = SubmissionResult(pr.student, pr.path, error=NOT_STARTED)
                            continue
                        try:
                            res = _results(assignment, pr, entries, opts)
                            results[k] = SubmissionResult(pr.student, pr.path, res, seconds=seconds / len(ks))
                        except Exception as e:  # noqa: BLE001 - one bad row must not abort the class
                            results[k] = SubmissionResult(pr.student, pr.path, error=f"grader error: {e}")
                        if bar is not None:
                            bar.update(1)
            if not again:
                break
            batches = [again[i : i + max(1, batch)] for i in range(0, len(again), max(1, batch))]
        if bar is not None:
            bar.update(len(again))  # those whose kernel never started: their rows say so
            bar.close()
    return [r for r in results if r is not None]


def grade(
    notebook: str | Path, timeout: float = 60, assignment: str | Path | None = None, **options
) -> list[ExerciseResult]:
    """Grade one notebook and return one result per exercise of the assignment.

    ``assignment`` is the instructor's solution notebook; without it the notebook is graded against its own
    checker cells (fine for checking a solution notebook, not for marks). ``timeout`` is the time limit of the
    submission in seconds; further ``options`` are :class:`GradeOptions` fields. Raises ``ValueError`` when the
    file cannot be graded.
    """
    opts = GradeOptions(timeout=timeout, **options)
    ref = load_assignment(assignment if assignment is not None else notebook)
    [res] = grade_many(ref, [notebook], options=opts)
    if res.error:
        raise ValueError(f"{notebook}: {res.error}")
    return res.results


# ------------------------------------------------------------------------------------------- reports


def _csv_cell(text: str) -> str:
    """A cell a spreadsheet will not read as a formula (a file named ``=cmd()`` is a student id too)."""
    text = text.replace("\r", "")
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def write_gradebook(results: Sequence[SubmissionResult], assignment: Assignment, path: str | Path) -> Path:
    """One CSV row per submission: student, file, points per exercise, total, max, status, each failed exercise's
    hint, flags found in the code."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    titles = [e.title for e in assignment.exercises]
    header = ["student", "file", *[f"{t} ({e.points:g})" for t, e in zip(titles, assignment.exercises, strict=True)]]
    header += ["total", "max", "status", *[f"hint: {t}" for t in titles], "flags"]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in results:
            row = [_csv_cell(r.student), _csv_cell(str(r.path))]
            if r.error:
                row += ["0"] * len(titles) + ["0", f"{assignment.max_points:g}", f"error: {r.error}"]
                row += [""] * len(titles) + [""]
            else:
                row += [f"{x.points:g}" for x in r.results]
                row += [f"{r.total:g}", f"{assignment.max_points:g}", "graded"]
                row += [_csv_cell(x.message) if not x.passed else "" for x in r.results]
                row.append("; ".join(f"{x.title}: {f}" for x in r.results for f in x.flags))
            w.writerow(row)
    return path


def write_feedback(result: SubmissionResult, assignment: Assignment, folder: str | Path) -> Path:
    """A markdown feedback file for one student: the score, then each exercise with its full hint if it failed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result.student}.md"
    lines = [
        f"# Feedback: {assignment.path.stem}",
        "",
        f"Student: {result.student}  ",
        f"File: `{result.path.name}`",
        "",
    ]
    if result.error:
        lines += [f"**Not graded**: {result.error}", "", f"Score: 0 / {assignment.max_points:g}", ""]
    else:
        lines += [f"Score: **{result.total:g} / {assignment.max_points:g}**", ""]
        for r in result.results:
            mark = "passed" if r.passed else "failed"
            lines += [f"## {r.title}: {mark} ({r.points:g} / {r.max_points:g})", ""]
            if not r.passed:
                lines += ["```text", r.message.strip() or "(no message)", "```", ""]
            for flag in r.flags:
                lines.append(f"- flagged: your code {flag}")
            if r.flags:
                lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
