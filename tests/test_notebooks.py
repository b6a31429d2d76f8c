"""The book's notebooks: every MyST page that is a notebook has up-to-date, output-free notebooks written from it
(``scripts/sync_notebooks.py``): the Colab notebook of a chapter, the student copy and the solution notebook of an
exercise page. Each installs this very version of the package on Colab, and only there.

The Colab notebooks are executed by tests/test_colab.py, the solution notebooks by the grader's tests.
"""

import importlib.util
import json
import re
from pathlib import Path

import pytest
import tomllib

import bncourse
from bncourse.notebooks import BookLinks, myst_leftovers, parse_bibtex_authors, plain_markdown

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("sync_notebooks", ROOT / "scripts" / "sync_notebooks.py")
sync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync)

NOTEBOOKS = sync.myst_notebooks()
WRITTEN = [(md, rel) for md in NOTEBOOKS for rel in sync.targets(md)]


def test_book_has_notebooks():
    names = {p.name for p in NOTEBOOKS}
    assert {"03_batchnorm.md", "03_batchnorm_exercises.md"} <= names
    rels = {rel for _, rel in WRITTEN}
    assert {"03_batchnorm.ipynb", "exercises/03_batchnorm_exercises.ipynb"} <= rels
    assert "exercises/solutions/03_batchnorm_exercises.ipynb" in rels


@pytest.mark.parametrize(("md", "rel"), WRITTEN, ids=lambda x: str(x) if isinstance(x, str) else x.name)
def test_notebook_in_sync(md, rel):
    ipynb = sync.BOOK / rel
    assert ipynb.exists(), f"{rel} is missing: run scripts/sync_notebooks.py"
    stale = f"{rel} is out of sync with {md.name}: run scripts/sync_notebooks.py"
    assert ipynb.read_text() == sync.targets(md)[rel], stale


@pytest.mark.parametrize(("md", "rel"), WRITTEN, ids=lambda x: str(x) if isinstance(x, str) else x.name)
def test_notebook_has_no_outputs_and_installs_this_version_on_colab(md, rel):
    nb = json.loads((sync.BOOK / rel).read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    first = "".join(code[0]["source"])
    assert '"google.colab" in sys.modules' in first and "%pip install" in first, "first code cell must install on Colab"
    assert f"@v{bncourse.__version__}" in first and sync.install_cell_ok(first), (
        "install cell not pinned to this version"
    )
    assert "remove-cell" in code[0].get("metadata", {}).get("tags", []), "the install cell stays off the website"


def test_versions_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == bncourse.__version__


def test_gpu_chapters_ask_colab_for_a_gpu():
    for md in NOTEBOOKS:
        if md.parent.name == "book":
            meta = json.loads(md.with_suffix(".ipynb").read_text())["metadata"]
            assert (meta.get("accelerator") == "GPU") == (md.stem in sync.GPU_CHAPTERS), md.name


def test_stale_notebook_is_detected(tmp_path, monkeypatch):
    book = tmp_path / "book"
    book.mkdir()
    (tmp_path / "_config.yml").write_text("html:\n  baseurl: https://example.org/site/\n")
    md = book / "01_x.md"
    md.write_text(
        "---\nkernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n\n"
        "# T\n\n```{code-cell} ipython3\n1 + 1\n```\n"
    )
    monkeypatch.setattr(sync, "BOOK", book)
    assert sync.myst_notebooks(book) == [md]
    text = sync.targets(md)["01_x.ipynb"]
    md.write_text(md.read_text().replace("1 + 1", "1 + 2"))
    assert sync.targets(md)["01_x.ipynb"] != text


LINKS = BookLinks(
    "https://example.org/site/",
    "book/exercises",
    titles={"book/03_batchnorm": "3. The algorithm"},
    citations={"ioffe2015batch": ("Ioffe & Szegedy", "2015"), "santurkar2018how": ("Santurkar et al.", "2018")},
)


def test_plain_markdown_rewrites_roles_and_directives():
    text = (
        "(sec-x)=\nBN {cite}`ioffe2015batch,santurkar2018how` and {cite:t}`ioffe2015batch`; see {doc}`../03_batchnorm`"
        " or {doc}`there <../03_batchnorm>`. Accuracy {glue:text}`acc_bn:.3f`.\n\n"
        "```{exercise} Do it\n:label: ex-1\n:nonumber:\n\nBody with $x$.\n```\n\n"
        "```{solution-start} ex-1\n:class: dropdown\n```\n\n"
        "```{solution} ex-1\n:class: dropdown\n\nThe answer.\n```\n\n```python\n{doc}`kept in code`\n```"
    )
    out = plain_markdown(text, LINKS)
    assert "(sec-x)=" not in out and "solution-start" not in out
    assert "[(Ioffe & Szegedy, 2015; Santurkar et al., 2018)](https://example.org/site/book/references.html)" in out
    assert "[Ioffe & Szegedy (2015)](https://example.org/site/book/references.html)" in out
    assert "[3. The algorithm](https://example.org/site/book/03_batchnorm.html)" in out
    assert "[there](https://example.org/site/book/03_batchnorm.html)" in out
    assert "**`acc_bn`**" in out and "**Exercise: Do it**" in out and "Body with $x$." in out
    assert re.search(r"<details>.*The answer\..*</details>", out, re.S)
    assert myst_leftovers(out) == ["{doc}`"], "only the role inside the code block is left"


@pytest.mark.parametrize(
    "bad",
    ["{ref}`sec-x`", "```{note}\nhi\n```", "{cite}`nobody2020`", "```{exercise} open\n:label: x\n"],
)
def test_plain_markdown_refuses_what_it_cannot_convert(bad):
    with pytest.raises(ValueError):
        plain_markdown(bad, LINKS)


def test_myst_leftovers_finds_syntax():
    assert myst_leftovers("plain text, `code` and $x$") == []
    assert myst_leftovers("a {glue:text}`x` b") == ["{glue:text}`"]
    assert myst_leftovers("```{exercise} t\nbody\n```") == ["```{exercise}"]
    assert myst_leftovers("(label)=\n# Title") == ["(label)="]


def test_bibtex_authors():
    bib = (
        "@article{a1,\n  author = {Ioffe, Sergey and Szegedy, Christian},\n  year = {2015}\n}\n\n"
        "@article{a2,\n  author = {Ba, Jimmy Lei},\n  year = {2016}\n}\n\n"
        "@article{a3,\n  author = {Yuxin Wu and Kaiming He and Ross Girshick},\n  year = {2018}\n}\n"
    )
    assert parse_bibtex_authors(bib) == {
        "a1": ("Ioffe & Szegedy", "2015"),
        "a2": ("Ba", "2016"),
        "a3": ("Wu et al.", "2018"),
    }
    assert set(parse_bibtex_authors((ROOT / "book" / "references.bib").read_text())) >= {"ioffe2015batch"}
