"""Browser tests of the built website: every page renders fully offline in headless Chromium.

Build the book first (``scripts/vendor_assets.sh && jupyter-book build . -W -n --keep-going``), then
``pytest -m site``. The site root is ``$BNCOURSE_SITE`` (default ``<repo>/_build/html``) and the book
sources are ``$BNCOURSE_SOURCE`` (default: two levels above the site root if that holds a _config.yml, else
the repository).

Each page is loaded once, served from a loopback HTTP server; any request to another host is aborted and
recorded, so a page that needs the network (a CDN script, font or widget module) fails here.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.site

REPO = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("BNCOURSE_SITE", REPO / "_build" / "html")).resolve()
# the book's sources: the folder the site was built from (<src>/_build/html) if it has _config.yml
SOURCE = Path(
    os.environ.get("BNCOURSE_SOURCE", SITE.parents[1] if (SITE.parents[1] / "_config.yml").is_file() else REPO)
).resolve()
BUILD_HINT = (
    f"no built website at {SITE}: build the book first, from the repository root:\n"
    "    bash scripts/build_book.sh\n"
    "(or point BNCOURSE_SITE at a built _build/html)"
)

# Pages Sphinx writes that do not come from a source file.
GENERATED_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", "jupyter_execute"}
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # a widget shown as a live view (not a static view)
# Rendered widgets that html-manager (which reads ipywidgets 7 and 8 state) inserts before each view script.
WIDGET_SELECTOR = ".widget-subarea .jupyter-widgets, .jupyter-widgets.widget-slider, .widget-inline-hbox"
TEX_LEFT_OVER = re.compile(
    r"\\(frac|sqrt|sum|prod|hat|bar|mu|sigma|gamma|beta|epsilon|varepsilon|partial|mathbf|mathrm|"
    r"mathcal|left|right|begin|end|cdot|times|top|in|to|ldots|dots)\b|\$[^$\n]*[\\^_{}][^$\n]*\$|\\\(|\\\["
)
# A laptop screen: the book's code column then holds 93 characters of code (81 at 1280 px wide), so the
# sources' 88-character limit (tests/test_page_code.py) keeps code from scrolling sideways.
VIEWPORT = {"width": 1440, "height": 900}
PAGE_TIMEOUT_MS = 30_000  # loading a page
WAIT_MS = 15_000  # MathJax typesetting, widget rendering, network idle
# Console errors from the pinned theme stack that do not affect the page, each with its reason.
KNOWN_CONSOLE_ERRORS = {
    # sphinx-thebe 0.3.1 adds its inline config script (`const THEBE_JS_URL = ...`) twice on every page;
    # the second copy throws, the first already defined the same constants.
    "Identifier 'THEBE_JS_URL' has already been declared": "sphinx-thebe duplicate inline script",
    # pydata-sphinx-theme reads localStorage.mode ("" on a first visit), logs this, then uses "auto".
    "Got invalid theme mode: . Resetting to auto.": "pydata-sphinx-theme first visit (empty localStorage)",
}


def _is_redirect(html: str) -> bool:
    return 'http-equiv="Refresh"' in html or 'http-equiv="refresh"' in html


def source_pages() -> list[str]:
    """Built pages (paths relative to the site root) that come from source files."""
    if not SITE.is_dir():
        return []
    pages = []
    for path in sorted(SITE.rglob("*.html")):
        rel = path.relative_to(SITE)
        if rel.parts[0] in SKIP_DIRS or rel.as_posix() in GENERATED_PAGES:
            continue
        if _is_redirect(path.read_text(encoding="utf-8")):  # e.g. the root index.html -> book/intro.html
            continue
        pages.append(rel.as_posix())
    return pages


def notebook_pages() -> list[str]:
    """Pages built from ``book/**.md`` notebooks that have a paired ``.ipynb`` (what Colab opens)."""
    return sorted(
        md.relative_to(SOURCE).with_suffix(".html").as_posix()
        for md in (SOURCE / "book").rglob("*.md")
        if md.with_suffix(".ipynb").exists() and not any(p.startswith((".", "_")) for p in md.parts)
    )


def _html(page: str) -> str:
    return (SITE / page).read_text(encoding="utf-8")


PAGES = source_pages()
MATH_PAGES = [p for p in PAGES if 'class="math' in _html(p)]
WIDGET_PAGES = [p for p in PAGES if WIDGET_VIEW in _html(p)]
NOTEBOOK_PAGES = notebook_pages()
MISSING = "<site not built>"  # a parameter that makes the page tests fail (not skip) without a build


def _params(pages: list[str]) -> list[str]:
    return pages if SITE.is_dir() else [MISSING]


# ----------------------------------------------------------------------------------------------- fixtures


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@pytest.fixture(scope="session")
def site_url():
    """Base URL of a loopback HTTP server serving the built site."""
    if not (SITE / "index.html").is_file():
        pytest.fail(BUILD_HINT, pytrace=False)
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


# the session-wide Chromium (`browser`) lives in conftest.py, shared with test_static_views.py


@dataclass
class PageReport:
    """What one page load saw."""

    page: str
    console_errors: list[str] = field(default_factory=list)
    offsite_requests: list[str] = field(default_factory=list)
    bad_responses: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    math: dict = field(default_factory=dict)
    widgets: dict = field(default_factory=dict)
    colab_links: list[str] = field(default_factory=list)
    mathjax_scripts: list[str] = field(default_factory=list)
    mathjax_status: str = "not on the page"
    timeouts: list[str] = field(default_factory=list)
    code_cells: list[dict] = field(default_factory=list)


# Resolves to "typeset" once MathJax 3 has typeset the page, else says why not.
_MATHJAX_WAIT_JS = """(ms) => {
  const mj = window.MathJax;
  if (!mj || !mj.startup || !mj.startup.promise) return Promise.resolve('MathJax 3 did not load');
  const late = new Promise(ok => setTimeout(() => ok(`MathJax did not finish within ${ms} ms`), ms));
  return Promise.race([mj.startup.promise.then(() => 'typeset', e => `MathJax failed: ${e}`), late]);
}"""

# Evaluated in the page once everything has settled.
_MATH_JS = """() => {
  const maths = [...document.querySelectorAll('.math')];
  const leftovers = maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.trim());
  const errors = [...document.querySelectorAll('mjx-merror, mjx-container [data-mjx-error]')]
      .map(e => e.getAttribute('data-mjx-error') || e.textContent);
  // visible article text outside code, rendered math and scripts: no raw TeX should be left there
  const art = (document.querySelector('article') || document.body).cloneNode(true);
  art.querySelectorAll('pre, code, script, style, mjx-container, .math, .highlight').forEach(e => e.remove());
  return {n_math: maths.length, n_mjx: document.querySelectorAll('mjx-container').length,
          unrendered: leftovers, errors: errors, text: art.textContent};
}"""

_IMAGES_JS = """() => [...(document.querySelector('article') || document.body).querySelectorAll('img')].map(i => ({
  src: i.getAttribute('src') || '', alt: i.getAttribute('alt'), loaded: i.complete && i.naturalWidth > 0,
  in_widget: !!i.closest('.jupyter-widgets, .widget-subarea'), in_output: !!i.closest('.cell_output, .output')
}))"""

_WIDGETS_JS = """() => {
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  const empty = views.filter(v => {
    const area = v.previousElementSibling;
    return !(area && area.classList.contains('widget-subarea') && area.querySelector('.jupyter-widgets'));
  }).map(v => v.textContent.trim());
  return {n_views: views.length, empty_views: empty,
          n_rendered: document.querySelectorAll('.widget-subarea .jupyter-widgets').length,
          errors: [...document.querySelectorAll('.jupyter-widgets.jp-ErrorWidget, .widget-error')]
              .map(e => e.textContent.trim())};
}"""


# Every code cell whose input is on the page: its lines, whether it is folded (hide-input, a closed dropdown),
# tagged as a deliberate listing, how far its widest line overflows the column (px), and plumbing left visible.
_CODE_JS = """() => [...document.querySelectorAll('div.cell')].map(c => {
  const pre = c.querySelector('.cell_input pre');
  if (!pre) return null;
  const text = pre.textContent.replace(/\\s+$/, '');
  const details = pre.closest('details');
  return {first: text.split('\\n')[0].slice(0, 70), lines: text.split('\\n').length,
          folded: c.classList.contains('tag_hide-input') || !!(details && !details.open),
          listing: c.classList.contains('tag_listing'), overflow: pre.scrollWidth - pre.clientWidth,
          plumbing: /(^|[^\\w.])(glue\\(|assert\\b)/m.test(text.split('\\n').filter(
              l => !l.trim().startsWith('#')).join('\\n'))};
}).filter(c => c)"""


@pytest.fixture(scope="session")
def visit(request):
    """``visit(page) -> PageReport``: load a page once per session and record what happened.

    The browser and server start on the first real visit, so that without a build the page tests fail
    with BUILD_HINT (rather than erroring in a fixture).
    """
    reports: dict[str, PageReport] = {}

    def _visit(page: str) -> PageReport:
        if page == MISSING or not SITE.is_dir():
            pytest.fail(BUILD_HINT, pytrace=False)
        if page not in reports:
            reports[page] = _load(request.getfixturevalue("browser"), request.getfixturevalue("site_url"), page)
        return reports[page]

    return _visit


def _load(browser, site_url: str, page: str) -> PageReport:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    report = PageReport(page)
    html = _html(page)
    context = browser.new_context(service_workers="block", viewport=VIEWPORT)

    def route(r):
        if urlsplit(r.request.url).hostname == "127.0.0.1":
            r.continue_()
        else:
            report.offsite_requests.append(r.request.url)
            r.abort("blockedbyclient")

    def console_error(text: str) -> None:
        if not any(known in text for known in KNOWN_CONSOLE_ERRORS):
            report.console_errors.append(text)

    context.route("**/*", route)
    tab = context.new_page()
    tab.on("console", lambda m: m.type == "error" and console_error(f"{m.text} @ {m.location.get('url')}"))
    tab.on("pageerror", lambda e: console_error(f"uncaught: {e}"))

    def response(r) -> None:
        # the site has no favicon; browsers ask for /favicon.ico on their own
        if r.status >= 400 and not urlsplit(r.url).path.endswith("/favicon.ico"):
            report.bad_responses.append(f"{r.status} {r.url}")

    tab.on("response", response)
    try:
        tab.goto(site_url + page, wait_until="load", timeout=PAGE_TIMEOUT_MS)
        if 'class="math' in html:
            # MathJax is a deferred script, so it has run by the load event; wait for its typesetting
            report.mathjax_status = tab.evaluate(_MATHJAX_WAIT_JS, WAIT_MS)
        if WIDGET_VIEW in html:
            # html-manager renders on window load, asynchronously: wait for the first widget view
            try:
                tab.wait_for_selector(".widget-subarea .jupyter-widgets", timeout=WAIT_MS)
                tab.wait_for_timeout(500)  # let the remaining views (and their images) attach
            except PlaywrightTimeout:
                report.timeouts.append(f"no widget rendered within {WAIT_MS} ms")
        try:
            tab.wait_for_load_state("networkidle", timeout=WAIT_MS)
        except PlaywrightTimeout:
            report.timeouts.append(f"network not idle within {WAIT_MS} ms")
        report.math = tab.evaluate(_MATH_JS)
        report.images = tab.evaluate(_IMAGES_JS)
        report.widgets = tab.evaluate(_WIDGETS_JS)
        report.code_cells = tab.evaluate(_CODE_JS)
        report.colab_links = tab.eval_on_selector_all('a[href*="colab.research.google.com"]', "a => a.map(e => e.href)")
        report.mathjax_scripts = tab.eval_on_selector_all(
            'script[src*="_static/mathjax/"]', "els => els.map(e => e.getAttribute('src'))"
        )
    finally:
        context.close()
    return report


# ------------------------------------------------------------------------------------------------- tests


def test_site_is_built():
    assert SITE.is_dir(), BUILD_HINT
    assert (SITE / "index.html").is_file(), BUILD_HINT
    assert PAGES, f"no pages found under {SITE}"


def test_vendored_assets_are_in_the_site():
    assert SITE.is_dir(), BUILD_HINT
    static = SITE / "_static"
    for asset in ("mathjax/tex-chtml.js", "mathjax/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff"):
        assert (static / asset).is_file(), f"{asset} missing from the site: run scripts/vendor_assets.sh and rebuild"
    if any(WIDGET_STATE in _html(p) for p in PAGES):
        for asset in ("require.js", "html-manager/embed-amd.js"):
            assert (static / asset).is_file(), f"{asset} missing: run scripts/vendor_assets.sh and rebuild"


@pytest.mark.parametrize("page", _params(PAGES))
def test_page_is_offline_and_error_free(visit, page):
    report = visit(page)
    assert not report.offsite_requests, (
        f"{page} requested other hosts (the site must work offline): {report.offsite_requests}"
    )
    assert not report.bad_responses, f"{page}: failed loads: {report.bad_responses}"
    assert not report.console_errors, f"{page}: console errors: {report.console_errors}"
    assert not report.timeouts, f"{page}: {report.timeouts}"
    # JB1 injects every .js of a root _static/ folder into every page: if the vendored MathJax tree ever
    # ends up there, every page loads hundreds of scripts. Only the entry point may be a <script>.
    assert all("tex-chtml.js" in s for s in report.mathjax_scripts), report.mathjax_scripts


@pytest.mark.parametrize("page", _params(PAGES))
def test_images_load_and_have_alt_text(visit, page):
    report = visit(page)
    broken = [i["src"][:120] for i in report.images if not i["loaded"]]
    assert not broken, f"{page}: images not loaded: {broken}"
    # Images drawn by widgets (an Output widget's figure) come from the widget state via html-manager,
    # which sets no alt text: only the page's own images are held to it.
    own = [i for i in report.images if not i["in_widget"]]
    no_alt = [i["src"][:120] for i in own if not (i["alt"] or "").strip()]
    assert not no_alt, f"{page}: images without alt text: {no_alt}"
    # myst-nb's default alt text for a cell's figure is the image's own path: say what the figure shows.
    path_alt = [i["src"] for i in own if Path(i["alt"]).name == Path(i["src"]).name]
    assert not path_alt, (
        f"{page}: {len(path_alt)} figure(s) whose alt text is their file name: {path_alt[:3]}; give the cell "
        "`mystnb: {image: {alt: ...}}` metadata (or use a {figure}/{glue:figure} with a caption)"
    )


@pytest.mark.parametrize("page", _params(MATH_PAGES))
def test_math_is_rendered_by_mathjax(visit, page):
    report = visit(page)
    math = report.math
    assert report.mathjax_status == "typeset", f"{page}: {report.mathjax_status}"
    assert math["n_math"] > 0, f"{page}: expected .math elements"
    assert math["n_mjx"] > 0, f"{page}: MathJax rendered nothing (is _static/mathjax/tex-chtml.js there?)"
    assert not math["unrendered"], f"{page}: math left as TeX: {math['unrendered'][:5]}"
    assert not math["errors"], f"{page}: MathJax errors: {math['errors'][:5]}"


@pytest.mark.parametrize("page", _params(PAGES))
def test_no_raw_tex_in_text(visit, page):
    """Math that the parser did not pick up (a missing extension, a typo'd delimiter) shows as raw TeX."""
    report = visit(page)
    text = report.math["text"]
    leftovers = sorted({text[max(m.start() - 30, 0) : m.end() + 30] for m in TEX_LEFT_OVER.finditer(text)})
    assert not leftovers, f"{page}: raw TeX in the text: {leftovers[:5]}"


@pytest.mark.parametrize("page", _params(NOTEBOOK_PAGES))
def test_notebook_pages_link_to_colab(visit, page):
    assert (SITE / page).is_file(), f"{page} was not built (its source has a paired .ipynb)"
    report = visit(page)
    assert report.colab_links, f"{page}: no Colab launch link"
    assert all(h.endswith(".ipynb") for h in report.colab_links), report.colab_links
    stem = Path(page).with_suffix(".ipynb").as_posix()
    assert any(h.endswith("/" + stem) for h in report.colab_links), f"{page}: Colab link is not {stem}"


@pytest.mark.parametrize("page", _params(WIDGET_PAGES))
def test_widgets_render(visit, page):
    report = visit(page)
    widgets = report.widgets
    assert widgets["n_rendered"] > 0, f"{page}: has widget state but no widget rendered"
    assert not widgets["empty_views"], f"{page}: widget views not rendered: {widgets['empty_views'][:3]}"
    assert not widgets["errors"], f"{page}: widget errors: {widgets['errors'][:3]}"


MAX_CODE_LINES = 15  # tests/test_page_code.py holds the same rules on the sources


@pytest.mark.parametrize("page", _params(PAGES))
def test_code_on_the_page_is_readable(visit, page):
    """No code wall, no sideways-scrolling code, no glue( or assert plumbing among the visible cells."""
    cells = visit(page).code_cells
    shown = [c for c in cells if not c["folded"]]
    walls = [f"{c['first']!r} ({c['lines']} lines)" for c in shown if c["lines"] > MAX_CODE_LINES and not c["listing"]]
    wide = [f"{c['first']!r} (+{c['overflow']} px)" for c in shown if c["overflow"] > 1]
    plumbing = [repr(c["first"]) for c in cells if c["plumbing"]]
    found = [f"longer than {MAX_CODE_LINES} lines: {walls}"] if walls else []
    found += [f"scrolling sideways: {wide}"] if wide else []
    found += [f"glue( or assert on the page (tag the cell remove-input): {plumbing}"] if plumbing else []
    assert not found, f"{page}: code cells " + "; ".join(found)
