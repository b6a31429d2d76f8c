"""Static interactive views: precomputed figures switched by plain JavaScript, no kernel needed."""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from pathlib import Path

import ipywidgets
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from bncourse.static_views import LiveOrStatic, book_build, figure_grid_html, widget_bundle

SITE = Path(os.environ.get("BNCOURSE_SITE", Path(__file__).resolve().parents[1] / "_build" / "html")).resolve()


def _render(a, b):
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, a if b == "up" else -a])
    ax.set(xlabel="x", ylabel="y")
    return fig


def test_grid_html_has_every_frame_and_controls():
    html = figure_grid_html(_render, {"a": [1, 2, 3], "b": ["up", "down"]}, {"a": 2, "b": "down"}, alt="lines")
    assert html.count('"0,0"') == 1 and '"2,1"' in html and 'type="range"' in html and "<select" in html
    assert 'value="1"' in html and "selected" in html and 'alt="lines"' in html
    with pytest.raises(ValueError, match="default"):
        figure_grid_html(_render, {"a": [1, 2]}, {"a": 5}, alt="x")
    assert 'class="bncourse-caption"' not in html and "data-captions>" not in html
    plt.close("all")


def test_grid_html_keeps_a_caption_per_point():
    html = figure_grid_html(lambda a: (_render(a, "up"), f"a is {a} </script>"), {"a": [1, 2]}, {"a": 2}, alt="x")
    captions = html.split("data-captions>")[1].split("</script>")[0]
    assert json.loads(captions.replace("<\\/", "</")) == {"0": "a is 1 </script>", "1": "a is 2 </script>"}
    assert 'class="bncourse-caption"' in html and html.count("</script>") == 3
    plt.close("all")


def test_live_or_static_bundle_has_the_static_html_only_when_given():
    slider = ipywidgets.IntSlider()
    live = LiveOrStatic(slider, None)._repr_mimebundle_()
    assert live["application/vnd.jupyter.widget-view+json"]["model_id"] == slider.model_id and "text/html" not in live
    both = LiveOrStatic(slider, "<p>grid</p>")._repr_mimebundle_()
    assert both["text/html"] == "<p>grid</p>" and "application/vnd.jupyter.widget-view+json" in both


def test_book_build_reads_the_environment(monkeypatch):
    monkeypatch.delenv("BNCOURSE_BOOK_BUILD", raising=False)
    assert not book_build()
    monkeypatch.setenv("BNCOURSE_BOOK_BUILD", "0")
    assert not book_build()
    monkeypatch.setenv("BNCOURSE_BOOK_BUILD", "1")
    assert book_build()


class _Widget7:
    """Stands in for an ipywidgets 7 widget: no _repr_mimebundle_, displayed through its model id."""

    model_id = "abc123"
    displayed = 0

    def _handle_displayed(self):
        self.displayed += 1


def test_widget_bundle_for_ipywidgets_7_and_8():
    w7 = _Widget7()
    data = widget_bundle(w7)
    assert data["application/vnd.jupyter.widget-view+json"] == {
        "version_major": 2,
        "version_minor": 0,
        "model_id": "abc123",
    }
    assert w7.displayed == 1 and "text/plain" in data
    w8 = ipywidgets.IntSlider()
    assert widget_bundle(w8)["application/vnd.jupyter.widget-view+json"]["model_id"] == w8.model_id


def _serve(root: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _exercise_views(page) -> list[str]:
    """Move every control of every static view on the page; return what did not respond.

    Each move must change the view's key and show a loaded image; the image itself may stay the same (a control
    can have no effect in some states, e.g. the noise toggle with BN off), but some move of the view must change
    it."""
    problems = []
    views = page.locator(".bncourse-static-view")
    for i in range(views.count()):
        view = views.nth(i)
        img = view.locator("img")
        controls = view.locator("[data-control]")
        assert controls.count() > 0
        images = {img.get_attribute("src")}
        for j in range(controls.count()):
            before = (img.get_attribute("src"), view.get_attribute("data-key"))
            control = controls.nth(j)
            if control.evaluate("e => e.tagName") == "SELECT":
                n = control.locator("option").count()
                control.select_option(str((int(control.input_value()) + 1) % n))
            else:
                hi = int(control.get_attribute("max"))
                control.fill(str((int(control.input_value()) + 1) % (hi + 1)))
            after = (img.get_attribute("src"), view.get_attribute("data-key"))
            loaded = img.evaluate("e => e.complete && e.naturalWidth > 0")
            images.add(after[0])
            if after[1] == before[1] or not loaded:
                problems.append(f"view {i}, control {j}: key {before[1]} -> {after[1]}, image loaded={loaded}")
        if len(images) < 2:
            problems.append(f"view {i}: no control changed the image")
    return problems


def test_view_responds_in_chromium(browser, tmp_path):
    html = figure_grid_html(_render, {"a": [1, 2, 3], "b": ["up", "down"]}, {"a": 1, "b": "up"}, alt="lines")
    html += figure_grid_html(lambda a: (_render(a, "up"), f"a is {a}"), {"a": [1, 2]}, {"a": 1}, alt="captioned")
    (tmp_path / "index.html").write_text(f"<html><body>{html}</body></html>")
    server = _serve(tmp_path)
    try:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        assert page.locator("img").first.evaluate("e => e.naturalWidth") > 0
        assert page.locator(".bncourse-caption").text_content() == "a is 1"
        assert not _exercise_views(page) and not errors
        alt = page.locator("img").first.get_attribute("alt")
        assert "a = 3" in alt or "a = 2" in alt
        assert page.locator(".bncourse-caption").text_content() == "a is 2"
    finally:
        server.shutdown()


@pytest.mark.site
def test_book_static_views_respond(browser):
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built website at {SITE}: run scripts/build_book.sh first")
    pages = [p for p in SITE.rglob("*.html") if "bncourse-static-view" in p.read_text(errors="replace")]
    assert pages, "no page of the book has a static interactive view"
    server = _serve(SITE)
    try:
        for p in pages:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/{p.relative_to(SITE).as_posix()}")
            assert not _exercise_views(page), p
            page.close()
    finally:
        server.shutdown()
