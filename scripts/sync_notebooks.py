"""Write the output-free .ipynb twin of every MyST notebook under book/ (the .md is the source).

Run after editing a chapter: ``.venv/bin/python scripts/sync_notebooks.py``. ``tests/test_notebooks.py``
fails when a pair is out of sync. ``--check`` only reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat

BOOK = Path(__file__).resolve().parent.parent / "book"


def _front_matter(path: Path) -> str:
    text = path.read_text()
    return text.split("---", 2)[1] if text.startswith("---") else ""


def myst_notebooks(book: Path = BOOK) -> list[Path]:
    """The MyST Markdown files under ``book`` that are notebooks (they declare a kernelspec)."""
    return sorted(p for p in book.rglob("*.md") if "kernelspec:" in _front_matter(p))


def twin(md: Path) -> str:
    """The .ipynb text that ``md`` converts to: no outputs, no execution counts, stable metadata."""
    nb = jupytext.read(md, fmt="md:myst")
    nb.metadata.pop("jupytext", None)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{md.stem[:40]}-{i}"  # stable ids: the twin is a pure function of the .md
    nb.metadata["colab"] = {"provenance": []}
    nb.metadata["language_info"] = {"name": "python"}
    return nbformat.writes(nb) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for md in myst_notebooks():
        ipynb = md.with_suffix(".ipynb")
        text = twin(md)
        if not ipynb.exists() or ipynb.read_text() != text:
            stale.append(ipynb)
            if not check:
                ipynb.write_text(text)
    verb = "out of sync" if check else "written"
    for p in stale:
        print(f"{verb}: {p.relative_to(BOOK.parent)}")
    return 1 if (check and stale) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
