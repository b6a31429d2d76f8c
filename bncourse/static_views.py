"""Interactive figures that need no kernel: every point of a control grid is drawn in advance and a few
lines of plain JavaScript show the one the controls select.

:func:`figure_grid_html` makes such a view. :class:`LiveOrStatic` pairs it with a live ipywidgets panel in
one output: Jupyter and Colab show the live panel (they prefer the widget mime type), while the website
(built with ``nb_mime_priority_overrides`` preferring ``text/html``) shows the static view, which still
responds to its controls. :func:`bncourse.panels.show` builds both from one panel spec.

The static grid costs a figure per grid point, so it is drawn only while the book is built: where the
environment variable ``BNCOURSE_BOOK_BUILD`` is ``1`` (``scripts/build_book.sh`` sets it). Elsewhere (Colab,
Jupyter, VS Code) the panel is shown alone. Panels work with ipywidgets 7 (Colab's 7.7.1) and 8.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["LiveOrStatic", "book_build", "figure_grid_html", "widget_bundle"]

_SCRIPT = """
(function () {
  var root = document.getElementById("%(id)s");
  var frames = JSON.parse(root.querySelector("script[data-frames]").textContent);
  var captionData = root.querySelector("script[data-captions]");
  var captions = captionData ? JSON.parse(captionData.textContent) : null;
  var caption = root.querySelector(".bncourse-caption");
  var inputs = root.querySelectorAll("[data-control]");
  var img = root.querySelector("img");
  function update() {
    var key = [], names = [];
    inputs.forEach(function (el) {
      key.push(el.value);
      var values = JSON.parse(el.getAttribute("data-values"));
      var out = root.querySelector("[data-value-of='" + el.getAttribute("data-control") + "']");
      if (out) { out.textContent = values[+el.value]; }
      names.push(el.getAttribute("data-control") + " = " + values[+el.value]);
    });
    var frame = frames[key.join(",")];
    img.src = "data:image/png;base64," + frame;
    if (captions) { caption.textContent = captions[key.join(",")]; }
    img.alt = root.getAttribute("data-alt") + " (" + names.join(", ") + ")";
    root.setAttribute("data-key", key.join(","));
  }
  inputs.forEach(function (el) { el.addEventListener("input", update); el.addEventListener("change", update); });
  update();
})();
"""


def _png(fig: Figure, dpi: int) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figure_grid_html(
    render: Callable[..., Figure | tuple[Figure, str]],
    controls: dict[str, Sequence[Any]],
    defaults: dict[str, Any],
    alt: str,
    dpi: int = 60,
    title: str = "",
) -> str:
    """Draw ``render(**point)`` for every point of the grid and return a self-contained HTML view.

    Args:
        render: returns a matplotlib figure for keyword arguments named like ``controls``, or a figure and
            a line of text shown under it (a caption per point).
        controls: name -> the values a control offers (numbers become a slider, strings a drop-down).
        defaults: the value each control starts at (must be in its list).
        alt: alt text of the figure (the current control values are appended).
        dpi: resolution of the stored PNGs (the page size grows with dpi^2 times the grid size).
        title: a line above the controls.
    """
    names = list(controls)
    for name in names:
        if defaults.get(name) not in list(controls[name]):
            raise ValueError(f"default of {name!r} must be one of {list(controls[name])}; got {defaults.get(name)!r}")
    frames, captions = {}, {}
    for idx in itertools.product(*(range(len(controls[n])) for n in names)):
        point = {n: controls[n][i] for n, i in zip(names, idx, strict=True)}
        drawn = render(**point)
        fig, text = drawn if isinstance(drawn, tuple) else (drawn, None)
        frames[",".join(map(str, idx))] = _png(fig, dpi)
        if text is not None:
            captions[",".join(map(str, idx))] = text
    view_id = f"bnview-{uuid.uuid4().hex[:10]}"
    rows = []
    for name in names:
        values = list(controls[name])
        start = values.index(defaults[name])
        data = html.escape(json.dumps([str(v) for v in values]))
        if all(isinstance(v, str) for v in values):
            options = "".join(
                f'<option value="{i}"{" selected" if i == start else ""}>{html.escape(v)}</option>'
                for i, v in enumerate(values)
            )
            field = f'<select data-control="{html.escape(name)}" data-values="{data}">{options}</select>'
        else:
            field = (
                f'<input type="range" min="0" max="{len(values) - 1}" step="1" value="{start}" '
                f'data-control="{html.escape(name)}" data-values="{data}" aria-label="{html.escape(name)}">'
                f' <output data-value-of="{html.escape(name)}">{html.escape(str(values[start]))}</output>'
            )
        rows.append(f'<label style="margin-right:1.5em">{html.escape(name)} {field}</label>')
    payload, text = (json.dumps(d).replace("</", "<\\/") for d in (frames, captions))
    return (
        f'<div class="bncourse-static-view" id="{view_id}" data-alt="{html.escape(alt)}">'
        + (f"<p><strong>{html.escape(title)}</strong></p>" if title else "")
        + f'<div class="bncourse-controls">{"".join(rows)}</div>'
        + ('<p><small class="bncourse-caption"></small></p>' if captions else "")
        + f'<img style="max-width:100%" alt="{html.escape(alt)}">'
        + f'<script type="application/json" data-frames>{payload}</script>'
        + (f'<script type="application/json" data-captions>{text}</script>' if captions else "")
        + f"<script>{_SCRIPT % {'id': view_id}}</script></div>"
    )


def book_build() -> bool:
    """True while the website is being built (``BNCOURSE_BOOK_BUILD=1``): only then are static views drawn."""
    return os.environ.get("BNCOURSE_BOOK_BUILD", "") == "1"


def widget_bundle(widget) -> dict[str, Any]:
    """The display data of an ipywidgets widget, the same under ipywidgets 7 and 8.

    ipywidgets 8 widgets have ``_repr_mimebundle_``; ipywidgets 7 (Colab's 7.7.1) widgets display through
    ``_ipython_display_`` instead, so the view reference is built here from the widget's model id.
    """
    if hasattr(widget, "_repr_mimebundle_"):
        bundle = widget._repr_mimebundle_()
        return dict(bundle[0] if isinstance(bundle, tuple) else bundle)
    view = {"version_major": 2, "version_minor": 0, "model_id": widget.model_id}  # what 7.x itself sends
    data = {"text/plain": repr(widget)[:110], "application/vnd.jupyter.widget-view+json": view}
    displayed = getattr(widget, "_handle_displayed", None)  # 7.x: run the widget's on_displayed callbacks
    if displayed is not None:
        displayed()
    return data


class LiveOrStatic:
    """One output with two renderings: a live ipywidgets panel and, on the website, a static HTML view.

    ``static_html`` is None off the website: then only the live panel is displayed.
    """

    def __init__(self, widget, static_html: str | None) -> None:
        self.widget, self.static_html = widget, static_html

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        data = widget_bundle(self.widget)
        if self.static_html is not None:
            data["text/html"] = self.static_html
        return data
