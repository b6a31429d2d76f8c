"""Internal links of the built website: every relative href points at a page (and anchor) that exists."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.site

SITE = Path(os.environ.get("BNCOURSE_SITE", Path(__file__).resolve().parents[1] / "_build" / "html")).resolve()
SKIP = {"_static", "_sources", "_images", "_downloads", "jupyter_execute"}


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        if d.get("id"):
            self.ids.add(d["id"])
        if tag == "a" and d.get("name"):
            self.ids.add(d["name"])
        if tag in ("a", "link") and d.get("href"):
            self.hrefs.append(d["href"])
        if tag in ("img", "script") and d.get("src"):
            self.hrefs.append(d["src"])


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(errors="replace"))
    return parser


def _pages() -> list[Path]:
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built website at {SITE}: run scripts/build_book.sh first")
    return sorted(p for p in SITE.rglob("*.html") if not SKIP & set(p.relative_to(SITE).parts))


def broken_links(page: Path, cache: dict[Path, _Links]) -> list[str]:
    """The relative links of ``page`` whose target file or anchor does not exist."""
    bad = []
    for href in cache.setdefault(page, _parse(page)).hrefs:
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or href.startswith(("mailto:", "javascript:", "data:")):
            continue  # external: not checked offline
        target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            bad.append(f"{href} (no file {target.relative_to(SITE) if SITE in target.parents else target})")
        elif parts.fragment and target.suffix == ".html":
            ids = cache.setdefault(target, _parse(target)).ids
            if unquote(parts.fragment) not in ids:
                bad.append(f"{href} (no anchor #{parts.fragment})")
    return bad


def test_every_internal_link_resolves():
    cache: dict[Path, _Links] = {}
    problems = {str(p.relative_to(SITE)): b for p in _pages() if (b := broken_links(p, cache))}
    assert not problems, problems


def test_link_checker_catches_a_broken_link(tmp_path):
    (tmp_path / "a.html").write_text('<a href="b.html#x">b</a><a href="c.html">c</a><a href="https://x.org">x</a>')
    (tmp_path / "b.html").write_text('<h1 id="y">b</h1>')
    bad = broken_links(tmp_path / "a.html", {})
    assert len(bad) == 2 and "no anchor #x" in bad[0] and "no file" in bad[1]
