"""What a reader sees of the code on a page (issue 22), checked on the MyST sources of every page.

The website shows a code cell's input unless the cell is tagged ``remove-input`` or ``remove-cell`` (input hidden);
``hide-input`` folds it behind a toggle. The rules, for every page of the book:

- a *visible* cell (input shown, not folded) is at most ``MAX_LINES`` lines, unless tagged ``listing`` (a deliberate
  listing of code the text discusses);
- no line of any cell whose input reaches the page (visible or folded) is wider than ``MAX_WIDTH`` characters, the
  width of the book's code column (``MAX_WIDTH_SOLUTION`` inside a solution's dropdown box): wider lines scroll
  sideways;
- no ``glue(`` call and no ``assert`` reaches the page: plumbing lives in hidden cells (they stay in the notebooks).

``tests/test_site.py`` checks the same on the built HTML and measures sideways scrolling in Chromium.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "book").glob("**/*.md"))
MAX_LINES = 15
MAX_WIDTH = 88
MAX_WIDTH_SOLUTION = 86  # a solution's dropdown box is narrower than the column
HIDDEN = {"remove-input", "remove-cell"}
PLUMBING = re.compile(r"(^|[^\w.])(glue\(|assert\b)")


def code_cells(text: str) -> list[tuple[int, set[str], list[str]]]:
    """The code cells of a MyST page: (line number of the fence, tags, source lines without the options)."""
    cells, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if not lines[i].startswith("```{code-cell}"):
            i += 1
            continue
        start, i, tags, body = i + 1, i + 1, set(), []
        if i < len(lines) and lines[i] == "---":  # YAML options block
            i += 1
            while lines[i] != "---":
                found = re.search(r"tags:\s*\[(.*)\]", lines[i])
                tags |= {t.strip().strip("\"'") for t in found.group(1).split(",")} if found else set()
                i += 1
            i += 1
        while i < len(lines) and lines[i].startswith(":"):  # short options
            found = re.match(r":tags:\s*\[(.*)\]", lines[i])
            tags |= {t.strip().strip("\"'") for t in found.group(1).split(",")} if found else set()
            i += 1
        while i < len(lines) and lines[i] != "```":
            body.append(lines[i])
            i += 1
        while body and not body[0].strip():
            body.pop(0)
        while body and not body[-1].strip():
            body.pop()
        cells.append((start, tags, body))
        i += 1
    return cells


def solution_spans(text: str) -> list[tuple[int, int]]:
    """Line ranges (1-based, inclusive) between a ``{solution-start}`` and its ``{solution-end}``."""
    spans, start = [], None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```{solution-start}"):
            start = n
        elif line.startswith("```{solution-end}") and start is not None:
            spans.append((start, n))
            start = None
    return spans


def problems(text: str) -> list[str]:
    """Every breach of the rules on one page, as ``line N: what``."""
    found, spans = [], solution_spans(text)
    for line, tags, body in code_cells(text):
        if tags & HIDDEN:
            continue
        if "hide-input" not in tags and "listing" not in tags and len(body) > MAX_LINES:
            found.append(f"line {line}: visible code cell of {len(body)} lines (at most {MAX_LINES})")
        width = MAX_WIDTH_SOLUTION if any(a < line < b for a, b in spans) else MAX_WIDTH
        wide = [n for n, s in enumerate(body) if len(s) > width]
        if wide:
            found.append(f"line {line}: {len(wide)} code line(s) wider than {width} characters")
        if any(PLUMBING.search(s) and not s.lstrip().startswith("#") for s in body):
            found.append(f"line {line}: glue( or assert on the page (hide the cell: remove-input / remove-cell)")
    return found


def test_rules_catch_known_breaches():
    wall = "```{code-cell} ipython3\n" + "x = 1\n" * 16 + "```\n"
    wide = "```{code-cell} ipython3\n" + "y = " + "1 + " * 30 + "1\n```\n"
    glued = "```{code-cell} ipython3\nglue('a', 1)\n```\n"
    checked = "```{code-cell} ipython3\nassert a == 1\n```\n"
    assert len(problems(wall)) == 1 and "16 lines" in problems(wall)[0]
    assert len(problems(wide)) == 1 and "wider" in problems(wide)[0]
    assert len(problems(glued)) == 1 and len(problems(checked)) == 1
    hidden = "```{code-cell} ipython3\n:tags: [remove-input]\n" + "glue('a', 1)\n" * 20 + "```\n"
    folded = "```{code-cell} ipython3\n---\ntags: [hide-input]\n---\n" + "x = 1\n" * 20 + "```\n"
    listing = "```{code-cell} ipython3\n:tags: [listing]\n" + "x = 1\n" * 20 + "```\n"
    assert problems(hidden) == [] and problems(folded) == [] and problems(listing) == []
    assert problems("```{code-cell} ipython3\nx.glue(1)  # assertion\n```\n") == []
    line87 = "```{code-cell} ipython3\n" + "z = 1  # " + "x" * 78 + "\n```\n"
    assert problems(line87) == []
    in_solution = "```{solution-start} ex\n```\n\n" + line87 + "\n```{solution-end}\n```\n"
    assert len(problems(in_solution)) == 1 and "wider than 86" in problems(in_solution)[0]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT / "book")))
def test_page_code_is_readable(page):
    found = problems(page.read_text())
    assert not found, f"{page.name}:\n" + "\n".join(found)
