"""The book's notebooks: every MyST chapter has an up-to-date, output-free .ipynb twin.

The notebooks themselves run under nbval (``pytest --nbval-lax book``, part of the README's test command).
"""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("sync_notebooks", ROOT / "scripts" / "sync_notebooks.py")
sync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync)

NOTEBOOKS = sync.myst_notebooks()


def test_book_has_notebooks():
    names = {p.name for p in NOTEBOOKS}
    assert {"03_batchnorm.md", "03_batchnorm_exercises.md"} <= names


@pytest.mark.parametrize("md", NOTEBOOKS, ids=lambda p: p.name)
def test_pair_in_sync(md):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: run scripts/sync_notebooks.py"
    stale = f"{ipynb.name} is out of sync with {md.name}: run scripts/sync_notebooks.py"
    assert ipynb.read_text() == sync.twin(md), stale


@pytest.mark.parametrize("md", NOTEBOOKS, ids=lambda p: p.name)
def test_twin_has_no_outputs_and_installs_on_colab(md):
    nb = json.loads(md.with_suffix(".ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    first = "".join(code[0]["source"])
    assert '"google.colab" in sys.modules' in first and "%pip install" in first, "first code cell must install on Colab"


def test_stale_twin_is_detected(tmp_path):
    md = tmp_path / "01_x.md"
    md.write_text(
        "---\nkernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n\n"
        "# T\n\n```{code-cell} ipython3\n1 + 1\n```\n"
    )
    assert sync.myst_notebooks(tmp_path) == [md]
    md.with_suffix(".ipynb").write_text(sync.twin(md))
    md.write_text(md.read_text().replace("1 + 1", "1 + 2"))
    assert md.with_suffix(".ipynb").read_text() != sync.twin(md)
