"""Hand a value computed in a notebook cell to the text of the page (MyST-NB's ``glue``).

On the website, ``{glue:text}`name``` in the text shows the value the cell computed, so no number in the
prose is typed by hand. While the book is built (``BNCOURSE_BOOK_BUILD=1``), or wherever MyST-NB is installed,
the value is displayed as the record that MyST-NB reads from the executed notebook: a display whose metadata
names it (``scrapbook``) and, unless it is also shown, whose MIME types carry the
``application/papermill.record/`` prefix. The kernel that runs the pages is the Colab-like environment, where
MyST-NB is not installed, so the record is written here rather than by ``myst_nb.glue``. Elsewhere (Colab, a
plain Jupyter) the value is printed.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from IPython.core.formatters import format_display_data
from IPython.display import display as ipy_display

from bncourse.static_views import book_build

__all__ = ["RECORD_PREFIX", "glue"]

RECORD_PREFIX = "application/papermill.record/"


def glue(name: str, value: Any, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the page text in the book build (or with MyST-NB); else print it.

    Args:
        name: the key used in the text as ``{glue:text}`name```.
        value: a number, string or figure.
        display: also show the value in the cell output (book build only).
    """
    if not (book_build() or importlib.util.find_spec("myst_nb") is not None):
        print(f"{name} = {value}")
        return
    bundle, metadata = format_display_data(value)
    prefix = "" if display else RECORD_PREFIX
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    ipy_display({prefix + mime: data for mime, data in bundle.items()}, raw=True, metadata=metadata)
