"""Write the notebooks of the book from its MyST sources (the ``.md`` files are the only sources).

For every MyST notebook under ``book/`` (a ``.md`` that declares a kernelspec) this writes, output-free:

- chapters: ``book/NN_slug.ipynb``, the notebook that the page's Colab button opens: plain Markdown
  (:mod:`bncourse.notebooks`: no MyST roles or directives; glued numbers named, citations and page links
  resolved against the published site), ``accelerator: GPU`` metadata where a GPU helps;
- exercises: ``book/exercises/NN_slug_exercises.ipynb``, the *student copy* that Colab opens (solutions
  replaced by stubs, plain Markdown, a link to the worked solutions on the website), and
  ``book/exercises/solutions/NN_slug_exercises.ipynb``, the *solution notebook* for instructors and the
  grader (MyST markdown kept: the grader reads its ``{exercise}`` blocks).

Run after editing a page: ``.venv/bin/python scripts/sync_notebooks.py``. ``tests/test_notebooks.py`` fails when
a notebook is out of date. ``--check`` only reports.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
sys.path.insert(0, str(ROOT))

from bncourse import __version__  # noqa: E402
from bncourse.instructor import stub_solutions  # noqa: E402
from bncourse.notebooks import BookLinks, parse_bibtex_authors, plain_markdown, rewrite_cells  # noqa: E402

GPU_CHAPTERS = {
    "01_sgd",
    "02_covariate_shift",
    "02_ics_critique",
    "04_inference",
    "04_bn_practice",
    "04_bn_training",
    "05_conv",
    "06_batchsize",
    "07_alternatives",
    "07_transformers",
}
INSTALL = (
    'if "google.colab" in sys.modules:  # on Colab only: install the course package (keeps Colab\'s torch)\n'
    f'    %pip install -q "bncourse @ git+https://github.com/bncourse/bncourse@v{__version__}"'
)


def site_url(root: Path = ROOT) -> str:
    """The published website's root URL (``html.baseurl`` in ``_config.yml``)."""
    m = re.search(r"^\s*baseurl:\s*(\S+)", (root / "_config.yml").read_text(), re.M)
    if not m:
        raise SystemExit("_config.yml has no html.baseurl: the notebooks' links need the published site's URL")
    return m.group(1).strip("\"'")


def _front_matter(path: Path) -> str:
    text = path.read_text()
    return text.split("---", 2)[1] if text.startswith("---") else ""


def myst_notebooks(book: Path = BOOK) -> list[Path]:
    """The MyST Markdown files under ``book`` that are notebooks (they declare a kernelspec)."""
    return sorted(p for p in book.rglob("*.md") if "kernelspec:" in _front_matter(p))


def links_for(md: Path, book: Path = BOOK) -> BookLinks:
    """Site URL, page titles and citations for the links of the page ``md``."""
    root = book.parent
    titles = {}
    for page in book.rglob("*.md"):
        m = re.search(r"^# (.+)$", page.read_text(), re.M)
        if m:
            titles[page.relative_to(root).with_suffix("").as_posix()] = m.group(1).strip()
    bib = book / "references.bib"
    citations = parse_bibtex_authors(bib.read_text()) if bib.exists() else {}
    page_dir = md.parent.relative_to(root).as_posix()
    return BookLinks(site_url(root), page_dir, titles, citations)


def targets(md: Path) -> dict[str, str]:
    """The notebooks written from ``md``, as ``{path relative to book/: text}``."""
    rel = md.relative_to(BOOK)
    if rel.parts[0] == "exercises":
        return {
            str(rel.with_suffix(".ipynb")): _colab(md, student=True),
            str(Path("exercises", "solutions", rel.with_suffix(".ipynb").name)): _solution(md),
        }
    return {str(rel.with_suffix(".ipynb")): _colab(md, student=False)}


def _read(md: Path):
    nb = jupytext.read(md, fmt="md:myst")
    nb.metadata.pop("jupytext", None)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def _finish(nb, md: Path) -> str:
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{md.stem[:40]}-{i}"  # stable ids: each notebook is a pure function of the .md
    return nbformat.writes(nb) + "\n"


def _solution(md: Path) -> str:
    nb = _read(md)
    nb.metadata["colab"] = {"provenance": []}
    return _finish(nb, md)


def _colab(md: Path, student: bool) -> str:
    nb = _read(md)
    links = links_for(md, BOOK)
    rewrite_cells(nb, markdown=lambda text: plain_markdown(text, links), code=stub_solutions if student else None)
    cells = nb.cells
    page = md.relative_to(BOOK.parent).with_suffix("").as_posix()
    if student:
        note = (
            "> **Student copy.** Write your code where a cell says `raise NotImplementedError`, between "
            "`# BEGIN SOLUTION` and `# END SOLUTION`, then run the check cell after it: it names the likely "
            f"mistake. Worked solutions: [on the website]({links.url(page)}) (folded under each exercise)."
        )
    else:
        note = (
            f"> **Running this chapter.** This is the notebook of [the book's page]({links.url(page)}). Numbers "
            "that the page's text quotes appear here as **`names`**: the code cell before the paragraph prints "
            "`name = value` when it runs. The first code cell installs `bncourse` (on Colab only)."
        )
    title = next((i for i, c in enumerate(cells) if c.cell_type == "markdown"), 0)
    cells.insert(title + 1, nbformat.v4.new_markdown_cell(note))
    nb.cells = cells
    nb.metadata["colab"] = {"provenance": []}
    if md.stem in GPU_CHAPTERS:
        nb.metadata["accelerator"] = "GPU"
        nb.metadata["colab"]["gpuType"] = "T4"
    return _finish(nb, md)


def install_cell_ok(source: str) -> bool:
    """True when a code cell is the pinned Colab install cell."""
    return INSTALL in source


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for md in myst_notebooks():
        for rel, text in targets(md).items():
            path = BOOK / rel
            if not path.exists() or path.read_text() != text:
                stale.append(path)
                if not check:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text)
    verb = "out of sync" if check else "written"
    for p in stale:
        print(f"{verb}: {p.relative_to(ROOT)}")
    return 1 if (check and stale) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
