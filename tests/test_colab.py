"""Every notebook that Colab opens, run as a student runs it: in a Colab-like environment, from an empty folder.

The environment (``scripts/colab_env.sh``, made by ``scripts/build_book.sh``) has Colab's versions of the packages
the course touches (ipywidgets 7.7.1, IPython 7.34.0, numpy 2.1.3, matplotlib 3.10.0; torch at the project's CPU
pin) and ``bncourse`` installed from a built wheel, never from this checkout.

- chapters: the book build executes each page once, and it does so with this environment's Python as the kernel,
  each page in an empty temporary folder (``scripts/build_site.py``, ``execute.run_in_temp``); the build fails on
  any error. The tests here check that it was so (the kernel spec the build wrote), and read the build's executed
  notebooks: no error output, every panel displays a widget view made by this environment's ipywidgets, every
  stored result was found. The panels' own tests also run in this environment, under ipywidgets 7.7.1. In the
  build, ``glue`` records values and panels add their static grids; the two branches that only Colab takes
  (``glue`` printing, ``panels.show`` without a grid) are unit-tested (tests/test_experiments.py,
  tests/test_panels.py, the latter here too).
- exercise student copies: each is copied alone into an empty temporary folder (like Colab's ``/content``) and
  executed top to bottom with nbclient; the only errors are the exercises' own (the stub's
  ``NotImplementedError`` and the checkers' hints); every other cell runs.

Set ``BNCOURSE_COLAB_PYTHON`` to another environment's python (e.g. one made with ``IPYWIDGETS=8.1.9``) to run
the student copies and the panel tests against it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from bncourse.grading import kernel_start_failed
from bncourse.notebooks import myst_leftovers

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
STUDENT = sorted((BOOK / "exercises").glob("[0-9][0-9]_*.ipynb"))
COLAB_PYTHON = Path(os.environ.get("BNCOURSE_COLAB_PYTHON", ROOT / ".venv-colab" / "bin" / "python"))
EXECUTED = ROOT / "_build" / "jupyter_execute"  # the build's executed pages
KERNEL_SPEC = ROOT / "_build" / "jupyter" / "kernels" / "python3" / "kernel.json"  # written by build_site.py
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
STUB_ERROR = "NotImplementedError"


def _colab_python() -> Path:
    if not COLAB_PYTHON.exists():
        if os.environ.get("BNCOURSE_SKIP_COLAB") == "1":
            pytest.skip("BNCOURSE_SKIP_COLAB=1")
        pytest.fail(f"no Colab-like environment at {COLAB_PYTHON}: run `bash scripts/colab_env.sh`")
    return COLAB_PYTHON


def _ipywidgets_version(python: Path) -> str:
    out = subprocess.run([str(python), "-c", "import ipywidgets; print(ipywidgets.__version__)"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.strip()


def _run(notebook: Path, tmp_path: Path, allow_errors: bool):
    """Execute a copy of ``notebook`` alone in an empty folder with the Colab-like kernel; return it."""
    python = _colab_python()
    spec = tmp_path / "jupyter" / "kernels" / "colab"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like", "language": "python",
    }))  # fmt: skip
    work = tmp_path / "content"  # like Colab's /content: nothing of the repository is here
    work.mkdir()
    shutil.copy(notebook, work / notebook.name)
    env = {k: v for k, v in os.environ.items() if k not in ("BNCOURSE_BOOK_BUILD", "PYTHONPATH")}
    env.update(JUPYTER_PATH=str(tmp_path / "jupyter"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        for attempt in (1, 2, 3):  # a kernel that did not start (two handed one port) is the machine's hiccup
            nb = nbformat.read(str(work / notebook.name), as_version=4)
            client = NotebookClient(nb, kernel_name="colab", timeout=600, allow_errors=allow_errors,
                                    resources={"metadata": {"path": str(work)}})  # fmt: skip
            try:
                client.execute()
                break
            except RuntimeError as err:
                if not kernel_start_failed(str(err)) or attempt == 3:
                    raise
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
        if out.get("output_type") == "error":
            parts.append(f"{out['ename']}: {out['evalue']}")
    return "\n".join(parts)


def _errors(cell) -> list:
    return [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def _built() -> Path:
    if not KERNEL_SPEC.exists():
        pytest.fail(f"{KERNEL_SPEC} is missing: build the website first (bash scripts/build_book.sh)", pytrace=False)
    return KERNEL_SPEC


def _where(python: Path, cwd: Path) -> list[str]:
    """ipywidgets' version and the file ``bncourse`` is imported from, as ``python`` sees them from ``cwd``."""
    code = "import bncourse, ipywidgets; print(ipywidgets.__version__); print(bncourse.__file__)"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True, cwd=cwd)
    return out.stdout.split()


def test_the_build_ran_the_pages_in_the_colab_environment(tmp_path):
    argv = json.loads(_built().read_text())["argv"]
    assert Path(argv[0]) == COLAB_PYTHON.absolute(), f"the build's kernel is {argv[0]}, not {COLAB_PYTHON}"
    version, package = _where(Path(argv[0]), tmp_path)
    assert version == _expected_ipywidgets(), f"the build's kernel has ipywidgets {version}"
    checkout = (ROOT / "bncourse").resolve()
    assert "site-packages" in package and Path(package).resolve().parent != checkout, f"bncourse from {package}"
    config = (ROOT / "_config.yml").read_text()
    assert re.search(r"^  run_in_temp: true", config, re.M), "the pages must run in an empty folder, as on Colab"


def _expected_ipywidgets() -> str:
    """Colab's 7.7.1 for the default environment; another one (``BNCOURSE_COLAB_PYTHON``) has its own."""
    default = COLAB_PYTHON.absolute() == (ROOT / ".venv-colab" / "bin" / "python").absolute()
    return "7.7.1" if default else _ipywidgets_version(_colab_python())


PANEL_CELL = re.compile(r"^(panels\.)?show\(", re.M)  # a chapter shows a panel with panels.show(panel, ...)
NOT_FOUND = re.compile(r"\bnot? stored\b", re.I)  # what a chapter prints when a stored result is missing
CONTROLS = {"7": "1.5.0", "8": "2.0.0"}  # the widget models' version that each ipywidgets major writes


def _panel_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and PANEL_CELL.search(c.source)]


def test_every_panel_builder_is_shown_in_a_chapter():
    shown = [c.source for p in CHAPTERS for c in _panel_cells(nbformat.read(str(p), as_version=4))]
    from bncourse import panels

    builders = [name for name in panels.__all__ if name.endswith("_panel")]
    missing = [b for b in builders if f"{b}(" not in "\n".join(shown)]
    assert len(builders) >= 7 and not missing, f"panels that no chapter's panel cell shows: {missing}"


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.name)
def test_chapter_as_the_build_ran_it(notebook):
    """The chapter's executed notebook from the build: no errors, a widget view per panel (made by the Colab-like
    ipywidgets), stored results found."""
    _built()
    executed = EXECUTED / notebook.relative_to(ROOT)
    assert executed.exists(), f"{executed} is missing: the build did not execute {notebook.name}"
    nb = nbformat.read(str(executed), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [(i, o["ename"], o["evalue"]) for i, c in enumerate(code) for o in _errors(c)]
    assert not errors, errors
    colab = nbformat.read(str(notebook), as_version=4)
    ran = {c.source for c in code}
    skipped = [c.source[:60] for c in colab.cells if c.cell_type == "code" and c.source not in ran]
    assert all("google.colab" in s for s in skipped), f"Colab's notebook has cells the build did not run: {skipped}"
    panels = _panel_cells(nb)
    assert len(panels) == len(_panel_cells(colab)), "the build ran another number of panel cells than Colab's"
    for cell in panels:
        views = [o for o in cell.outputs if WIDGET_VIEW in o.get("data", {})]
        assert views, f"a panel cell shows no widget view: {cell.source[:80]!r}"
    if panels:  # the widgets were made by the kernel's ipywidgets: the models carry its version
        state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
        versions = {
            m["model_module_version"] for m in state.values() if m["model_module"] == "@jupyter-widgets/controls"
        }
        assert versions == {CONTROLS[_expected_ipywidgets().split(".")[0]]}, versions
    missing = [c.source[:60] for c in code if NOT_FOUND.search(_text(c))]
    assert not missing, f"stored results not found from an empty folder: {missing}"


PANEL_TESTS = ("tests/test_panels.py", "tests/test_widgets_errors.py")


def test_panel_tests_pass_under_colabs_ipywidgets(tmp_path):
    """The panels' tests, run by the Colab-like Python against the wheel (from an empty folder)."""
    python = _colab_python()
    version, package = _where(python, tmp_path)
    assert "site-packages" in package, package
    stale = _build_site().stale_files(Path(package).parent)
    assert not stale, (
        f"the Colab-like environment's bncourse is older than the checkout ({stale[:3]}): run colab_env.sh"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("BNCOURSE_BOOK_BUILD", "PYTHONPATH")}
    cmd = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *(str(ROOT / t) for t in PANEL_TESTS)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert re.search(r"\d+ passed", out.stdout) and " failed" not in out.stdout, out.stdout[-500:]
    assert _ipywidgets_version(python) == version


@pytest.mark.notebooks
@pytest.mark.parametrize("notebook", STUDENT, ids=lambda p: p.name)
def test_student_copy_runs_as_on_colab(notebook, tmp_path):
    nb = _run(notebook, tmp_path, allow_errors=True)
    code = [c for c in nb.cells if c.cell_type == "code"]
    graded = 0
    for cell in code:
        errs = _errors(cell)
        if "# BEGIN SOLUTION" in cell.source:
            assert all(e["ename"] in (STUB_ERROR, "NameError") for e in errs), [e["evalue"] for e in errs]
        elif re.search(r"^\s*check_\w+\(", cell.source, re.M):  # a checker cell (not an import of checkers)
            graded += 1
            assert len(errs) == 1 and errs[0]["ename"] in ("AssertionError", "CheckError"), (cell.source, _text(cell))
            assert len(errs[0]["evalue"]) > 20, f"a checker failed without a hint: {errs[0]['evalue']!r}"
        else:
            assert not errs, (cell.source[:80], [(e["ename"], e["evalue"]) for e in errs])
    assert graded >= 3


@pytest.mark.parametrize("notebook", CHAPTERS + STUDENT, ids=lambda p: p.name)
def test_colab_notebook_is_plain(notebook):
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            assert not myst_leftovers(cell.source), (notebook.name, myst_leftovers(cell.source))
        assert "solution-start" not in cell.source and "{solution}" not in cell.source
    if notebook in STUDENT:
        solutions = [c.source for c in nb.cells if c.cell_type == "code" and "# BEGIN SOLUTION" in c.source]
        assert solutions and all("raise NotImplementedError" in s for s in solutions)
        stripped = [s.split("# BEGIN SOLUTION", 1)[1].split("# END SOLUTION", 1)[0].strip() for s in solutions]
        assert all(s.startswith("raise NotImplementedError") and s.count("\n") == 0 for s in stripped), stripped


@pytest.mark.site
@pytest.mark.parametrize("notebook", CHAPTERS + STUDENT, ids=lambda p: p.name)
def test_website_launches_this_notebook_and_hides_the_install_cell(notebook):
    """The page's Colab button opens exactly the notebook tested above; the install cell is not on the page."""
    site = Path(os.environ.get("BNCOURSE_SITE", ROOT / "_build" / "html"))
    page = site / notebook.relative_to(ROOT).with_suffix(".html")
    if not page.exists():
        pytest.fail(f"{page} is missing: build the website first (bash scripts/build_book.sh)", pytrace=False)
    html = page.read_text()
    links = set(re.findall(r"https://colab\.research\.google\.com/github/[^\"']+", html))
    want = f"/blob/main/{notebook.relative_to(ROOT).as_posix()}"
    assert links and all(link.endswith(want) for link in links), links
    assert "google.colab" not in html and "%pip install" not in html, "the install cell is on the website"


def _build_site():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_site", ROOT / "scripts" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_use_kernel_names_the_python_that_runs_the_pages_and_refuses_one_that_cannot(tmp_path, monkeypatch):
    build_site = _build_site()
    monkeypatch.chdir(ROOT)
    relative = _colab_python().absolute().relative_to(ROOT)  # a relative path works from anywhere
    spec, environment = build_site.use_kernel(relative, tmp_path / "jupyter")
    assert json.loads(spec.read_text())["argv"][0] == str(_colab_python().absolute())
    assert f"ipywidgets {_expected_ipywidgets()}, IPython " in environment and "site-packages" in environment
    monkeypatch.setenv("JUPYTER_PATH", str(spec.parents[2]))
    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == str(_colab_python().absolute())
    with pytest.raises(SystemExit, match="no Python at /nope: run `bash scripts/colab_env.sh`"):
        build_site.use_kernel(Path("/nope"), tmp_path / "other")
    bare = tmp_path / "bare"  # a Python without the package: named, with the import that failed
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    with pytest.raises(SystemExit, match="cannot run the pages: ModuleNotFoundError: No module named 'bncourse'"):
        build_site.use_kernel(bare / "bin" / "python", tmp_path / "other")


def test_use_kernel_refuses_a_wheel_older_than_the_checkout(tmp_path):
    """After an edit to the package, the build does not run the pages with the old wheel: it names the file."""
    build_site = _build_site()
    checkout = tmp_path / "bncourse"
    shutil.copytree(ROOT / "bncourse", checkout, ignore=shutil.ignore_patterns("__pycache__"))
    assert build_site.use_kernel(_colab_python(), tmp_path / "jupyter", checkout)[0].exists()
    (checkout / "glue.py").write_text((checkout / "glue.py").read_text() + "\n# edited\n")
    (checkout / "new_module.py").write_text("")
    with pytest.raises(SystemExit, match=r"not the checkout's: glue\.py, new_module\.py differ; run `bash scri"):
        build_site.use_kernel(_colab_python(), tmp_path / "jupyter", checkout)


def test_a_page_whose_kernel_did_not_start_runs_again_and_a_cell_error_does_not():
    from jupyter_cache.executors.utils import ExecutionResult

    build_site = _build_site()
    calls, outcomes = [], []

    def execute(nb, cwd, **kwargs):
        cell = nb.cells[0]
        calls.append(len(cell.outputs))  # what the previous run left behind
        cell.outputs.append(nbformat.v4.new_output("stream", text="partial"))
        outcome = outcomes.pop(0)
        if outcome.startswith("raise: "):
            raise RuntimeError(outcome.removeprefix("raise: "))
        if outcome == "ok" or outcome.startswith("ran: "):
            cell.execution_count = 1
        if outcome == "ok":
            return ExecutionResult(nb, cwd, 1.0)
        return ExecutionResult(nb, cwd, 0.0, RuntimeError(outcome.removeprefix("ran: ")), "")

    def page():
        return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])

    run = build_site.retry_kernel_start(execute)
    outcomes[:] = ["Kernel died before replying to kernel_info", "ok"]
    nb = page()
    assert run(nb, "/tmp").err is None and calls == [0, 0], "run again, from the page as it was"
    assert len(nb.cells[0].outputs) == 1
    calls.clear()
    outcomes[:] = ["ran: ValueError", "ok"]  # a cell's error: no second run
    assert str(run(page(), "/tmp").err) == "ValueError" and calls == [0]
    calls.clear()
    outcomes[:] = ["ran: Kernel died before replying to kernel_info", "ok"]  # died after a cell ran: no rerun
    assert "Kernel died" in str(run(page(), "/tmp").err) and calls == [0]
    calls.clear()
    outcomes[:] = ["Address already in use"] * 3 + ["ok"]  # at most three runs
    assert "Address already in use" in str(run(page(), "/tmp").err) and calls == [0, 0, 0]
    calls.clear()
    outcomes[:] = ["raise: Kernel died before replying to kernel_info", "ok"]  # nbclient raises it
    assert run(page(), "/tmp").err is None and calls == [0, 0]
    calls.clear()
    outcomes[:] = ["raise: Kernel died before replying to kernel_info"] * 3
    with pytest.raises(RuntimeError, match="Kernel died"):
        run(page(), "/tmp")
    assert calls == [0, 0, 0]
    calls.clear()
    outcomes[:] = ["raise: disk full", "ok"]  # any other exception: at once
    with pytest.raises(RuntimeError, match="disk full"):
        run(page(), "/tmp")
    assert calls == [0]


def test_the_execution_cache_is_cleared_when_the_environment_changes(tmp_path):
    build_site = _build_site()
    build = tmp_path / "_build"
    cached = [
        build / ".jupyter_cache" / "global.db",
        build / ".doctrees" / "x.doctree",
        build / "jupyter_execute" / "a",
    ]
    for path in cached:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    assert not build_site.forget_other_environments("env A", build), "nothing to compare with yet"
    assert not build_site.forget_other_environments("env A", build) and all(p.exists() for p in cached)
    assert build_site.forget_other_environments("env B", build) and not any(p.exists() for p in cached)
    assert (build / "html").exists() is False and (build / "jupyter" / "environment.txt").read_text() == "env B"
