"""Every notebook that Colab opens, run as a student runs it: in a Colab-like environment, from an empty folder.

The environment (``scripts/colab_env.sh``, made by ``scripts/build_book.sh``) has Colab's versions of the packages
the course touches (ipywidgets 7.7.1, IPython 7.34.0, numpy 2.1.3, matplotlib 3.10.0; torch at the project's CPU
pin) and ``bncourse`` installed from a built wheel, never from this checkout.

- chapters: the book build executes each page once, and it does so with this environment's Python as the kernel,
  each page in an empty temporary folder (``scripts/build_site.py``, ``execute.run_in_temp``); the build fails on
  any error. The tests here check that it was so (the kernel spec the build wrote), and read the build's executed
  notebooks: no error output, every panel displays a widget view, every stored result was found. The panels'
  own tests also run in this environment, under ipywidgets 7.7.1.
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
    nb = nbformat.read(str(work / notebook.name), as_version=4)
    env = {k: v for k, v in os.environ.items() if k not in ("BNCOURSE_BOOK_BUILD", "PYTHONPATH")}
    env.update(JUPYTER_PATH=str(tmp_path / "jupyter"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        client = NotebookClient(nb, kernel_name="colab", timeout=600, allow_errors=allow_errors,
                                resources={"metadata": {"path": str(work)}})  # fmt: skip
        client.execute()
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
    assert version == "7.7.1", f"the build's kernel has ipywidgets {version}"
    checkout = (ROOT / "bncourse").resolve()
    assert "site-packages" in package and Path(package).resolve().parent != checkout, f"bncourse from {package}"
    config = (ROOT / "_config.yml").read_text()
    assert re.search(r"^  run_in_temp: true", config, re.M), "the pages must run in an empty folder, as on Colab"


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.name)
def test_chapter_as_the_build_ran_it(notebook):
    """The chapter's executed notebook from the build: no errors, a widget view per panel, stored results found."""
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
    panels = [c for c in code if re.search(r"^panels\.show\(", c.source, re.M)]
    for cell in panels:
        views = [o for o in cell.outputs if WIDGET_VIEW in o.get("data", {})]
        assert views, f"a panel cell shows no widget view: {cell.source[:80]!r}"
    missing = [c.source[:60] for c in code if "load_stored(" in c.source and "No stored" in _text(c)]
    assert not missing, f"stored results not found from an empty folder: {missing}"


PANEL_TESTS = ("tests/test_panels.py", "tests/test_widgets_errors.py")


def test_panel_tests_pass_under_colabs_ipywidgets(tmp_path):
    """The panels' tests, run by the Colab-like Python against the wheel (from an empty folder)."""
    python = _colab_python()
    version, package = _where(python, tmp_path)
    assert "site-packages" in package, package
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
    monkeypatch.setenv("JUPYTER_PATH", "/elsewhere")
    spec = build_site.use_kernel(_colab_python(), tmp_path / "jupyter")
    assert json.loads(spec.read_text())["argv"][0] == str(_colab_python())
    assert os.environ["JUPYTER_PATH"].split(os.pathsep) == [str(tmp_path / "jupyter"), "/elsewhere"]
    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == str(_colab_python())
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
    assert build_site.use_kernel(_colab_python(), tmp_path / "jupyter", checkout).exists()
    (checkout / "glue.py").write_text((checkout / "glue.py").read_text() + "\n# edited\n")
    (checkout / "new_module.py").write_text("")
    with pytest.raises(SystemExit, match=r"not the checkout's: glue\.py, new_module\.py differ; run `bash scri"):
        build_site.use_kernel(_colab_python(), tmp_path / "jupyter", checkout)
