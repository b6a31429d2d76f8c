"""Hand a value computed in a notebook cell to the text of the page (MyST-NB's ``glue``).

On the website, ``{glue:text}`name``` in the text shows the value the cell computed, so no number in the
prose is typed by hand. Where MyST-NB is not installed (Colab, a plain Jupyter), the value is printed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["glue"]


def glue(name: str, value: Any, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the page text; print it when MyST-NB is absent.

    Args:
        name: the key used in the text as ``{glue:text}`name```.
        value: a number, string or figure.
        display: also show the value in the cell output.
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:
        print(f"{name} = {value}")
        return
    _glue(name, value, display=display)
