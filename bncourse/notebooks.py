"""Notebooks made for running: the book's MyST pages turned into plain Jupyter notebooks for Colab.

The website is built from MyST Markdown (roles such as ``{glue:text}``, ``{cite}``, ``{doc}`` and directives
such as ``{exercise}``), which Colab and Jupyter show as raw text. :func:`plain_markdown` rewrites one
markdown cell into plain Markdown:

- ``{glue:text}`name``` (a number computed by a cell) becomes **`name`**; the computing cell prints
  ``name = value`` when it runs outside the book build (:func:`bncourse.glue.glue`), so the number is there;
- ``{cite}`key``` becomes "(Ioffe & Szegedy, 2015)", ``{cite:t}`` "Ioffe & Szegedy (2015)", each linked to the
  published reference list; ``{doc}`page``` becomes a link to the published page, titled as the page;
- ``{exercise}`` becomes a bold "Exercise: title" paragraph, a chapter's ``{solution}`` a folded
  ``<details>`` block, and the website's ``{solution-start}``/``{solution-end}`` markers are dropped;
- a MyST target line ``(label)=`` is dropped.

Anything else MyST-specific raises ``ValueError``, so a new role or directive cannot slip into a notebook.
:func:`myst_leftovers` finds such syntax (the tests run it over every notebook that Colab opens).
``scripts/sync_notebooks.py`` uses this module to write the notebooks; ``bncourse.instructor`` uses it for
student copies.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

__all__ = ["BookLinks", "myst_leftovers", "parse_bibtex_authors", "plain_markdown", "rewrite_cells"]

_ROLE = re.compile(r"\{(?P<name>[a-z][a-z:-]*)\}`(?P<body>[^`]*)`")
_FENCE_OPEN = re.compile(r"^(?P<ticks>`{3,}|:{3,})\{(?P<name>[a-z-]+)\}[ \t]*(?P<arg>.*)$")
_TARGET = re.compile(r"^\([A-Za-z0-9_.:-]+\)=\s*$")
_OPTION = re.compile(r"^:[a-z-]+:.*$")
_LEFTOVER = re.compile(r"\{[a-z][a-z:-]*\}`|^(`{3,}|:{3,})\{[a-z-]+\}|^\([A-Za-z0-9_.:-]+\)=\s*$", re.M)


@dataclass
class BookLinks:
    """What links need: the published site's root URL, the folder of the page (relative to the book's root,
    e.g. ``book`` or ``book/exercises``), page titles by path (``book/03_batchnorm`` -> its title) and
    citations by key (``ioffe2015batch`` -> ``("Ioffe & Szegedy", "2015")``)."""

    site_url: str
    page_dir: str = "book"
    titles: dict[str, str] = field(default_factory=dict)
    citations: dict[str, tuple[str, str]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        """The published URL of the book page ``path`` (relative to the book's root, no suffix)."""
        return f"{self.site_url.rstrip('/')}/{path}.html"

    def resolve(self, target: str) -> str:
        """A ``{doc}`` target (relative to this page, or absolute from the root with a leading /) as a root path."""
        if target.startswith("/"):
            return target.lstrip("/")
        parts: list[str] = []
        for part in PurePosixPath(self.page_dir, target).parts:
            if part == "..":
                if parts:
                    parts.pop()
            elif part != ".":
                parts.append(part)
        return "/".join(parts)


def parse_bibtex_authors(bib: str) -> dict[str, tuple[str, str]]:
    """``key -> (authors, year)`` from BibTeX text, authors as in an author-year citation: "Ioffe & Szegedy",
    "Santurkar et al." (three or more), "Ba" (one)."""
    out = {}
    for entry in re.finditer(r"@\w+\s*\{\s*([^,\s]+)\s*,(.*?)\n\}", bib, re.S):
        key, body = entry.group(1), entry.group(2)
        author = re.search(r"\bauthor\s*=\s*\{(.*?)\}\s*,?\s*\n", body, re.S)
        year = re.search(r"\byear\s*=\s*\{?(\d{4})", body)
        if not author or not year:
            continue
        names = [n.strip() for n in re.split(r"\s+and\s+", " ".join(author.group(1).split()))]
        last = [n.split(",")[0].strip() if "," in n else n.split()[-1] for n in names]
        last = [re.sub(r"[{}]", "", n) for n in last]
        text = last[0] if len(last) == 1 else f"{last[0]} & {last[1]}" if len(last) == 2 else f"{last[0]} et al."
        out[key] = (text, year.group(1))
    return out


def _cite(role: str, body: str, links: BookLinks) -> str:
    keys = [k.strip() for k in body.split(",") if k.strip()]
    missing = [k for k in keys if k not in links.citations]
    if missing:
        raise ValueError(f"unknown citation key(s) {missing}: add them to references.bib")
    refs = links.url("book/references")
    if role == "cite:t":
        return " and ".join(f"[{links.citations[k][0]} ({links.citations[k][1]})]({refs})" for k in keys)
    inner = "; ".join(f"{links.citations[k][0]}, {links.citations[k][1]}" for k in keys)
    return f"[({inner})]({refs})"


def _doc(body: str, links: BookLinks) -> str:
    m = re.fullmatch(r"(?P<text>.*?)\s*<(?P<target>[^>]+)>", body.strip())
    text, target = (m.group("text"), m.group("target")) if m else (None, body.strip())
    path = links.resolve(target)
    title = text or links.titles.get(path) or path.rsplit("/", 1)[-1]
    return f"[{title}]({links.url(path)})"


def _roles(line: str, links: BookLinks) -> str:
    def one(m: re.Match) -> str:
        name, body = m.group("name"), m.group("body")
        if name == "glue:text":
            return f"**`{body.split(':', 1)[0]}`**"
        if name in ("cite", "cite:p", "cite:t"):
            return _cite(name, body, links)
        if name == "doc":
            return _doc(body, links)
        raise ValueError(f"MyST role {{{name}}} has no plain-Markdown form: extend bncourse.notebooks")

    return _ROLE.sub(one, line)


def plain_markdown(text: str, links: BookLinks) -> str:
    """One markdown cell's MyST text as plain Markdown (see the module docstring); may return ''."""
    out: list[str] = []
    closers: list[tuple[str, str]] = []  # (fence, what to write when it closes)
    in_code = None  # the fence of a plain code block (its content is kept as is)
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        stripped = line.strip()
        if in_code is not None:
            out.append(line)
            if stripped == in_code:
                in_code = None
            continue
        m = _FENCE_OPEN.match(stripped)
        if m:
            name, arg, ticks = m.group("name"), m.group("arg").strip(), m.group("ticks")
            while i < len(lines) and _OPTION.match(lines[i].strip()):  # :label:, :class:, :nonumber:
                i += 1
            if name in ("solution-start", "solution-end"):  # website folding markers: no content
                while i < len(lines) and lines[i].strip() != ticks:
                    i += 1
                i += 1
                continue
            if name == "exercise":
                out.append(f"**Exercise: {_roles(arg, links)}**" if arg else "**Exercise**")
                out.append("")
                closers.append((ticks, ""))
            elif name == "solution":
                out += ["<details><summary><b>Solution</b> (click to show)</summary>", ""]
                closers.append((ticks, "\n</details>"))
            else:
                raise ValueError(f"MyST directive {{{name}}} has no plain-Markdown form: extend bncourse.notebooks")
            continue
        if closers and stripped == closers[-1][0]:
            tail = closers.pop()[1]
            if tail:
                out.append(tail)
            continue
        if re.match(r"^(`{3,}|~{3,})", stripped):
            in_code = re.match(r"^(`{3,}|~{3,})", stripped).group(1)
            out.append(line)
            continue
        if _TARGET.match(stripped):
            continue
        out.append(_roles(line, links))
    if closers:
        raise ValueError(f"unclosed MyST directive fence {closers[-1][0]!r}")
    return "\n".join(out).strip()


def myst_leftovers(text: str) -> list[str]:
    """The MyST roles, directive fences and targets left in ``text`` (empty for plain Markdown)."""
    return [m.group(0) for m in _LEFTOVER.finditer(text)]


def rewrite_cells(nb, markdown: Callable[[str], str] | None = None, code: Callable[[str], str] | None = None):
    """Rewrite the notebook ``nb`` in place and return it: each markdown cell's source through ``markdown``
    (a cell left empty is dropped), each code cell's through ``code``, code outputs and counts cleared."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown" and markdown is not None:
            cell.source = markdown(cell.source)
            if not cell.source.strip():
                continue
        elif cell.cell_type == "code":
            if code is not None:
                cell.source = code(cell.source)
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    nb.cells = cells
    return nb
