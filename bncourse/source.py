"""Short excerpts of the package's own source, for the pages: a few lines that the text discusses.

A page that shows ``inspect.getsource(f)`` dumps a whole function, docstring and argument checks included.
:func:`excerpt` shows only the lines from one marker to another, dedented, so the page shows the code it
talks about and the excerpt still follows the package when the code changes.
"""

from __future__ import annotations

import inspect
import re
import textwrap

__all__ = ["excerpt"]

_COMMENT = re.compile(r"\s+#[^'\"]*$")


def excerpt(obj, first: str, last: str | None = None, drop_comments: bool = False) -> str:
    """The lines of ``obj``'s source from the first line containing ``first`` to the next containing ``last``.

    Args:
        obj: a function, class or method (anything :func:`inspect.getsource` accepts).
        first: text on the first line to show.
        last: text on the last line to show (searched from the first line on); only the first line if None.
        drop_comments: remove trailing ``# ...`` comments (for a narrow column).

    Returns:
        The lines, dedented, joined by newlines.

    Raises:
        ValueError: ``first`` or ``last`` is not found.
    """
    lines = inspect.getsource(obj).splitlines()
    start = next((i for i, s in enumerate(lines) if first in s), None)
    if start is None:
        raise ValueError(f"{first!r} is not in the source of {getattr(obj, '__qualname__', obj)!r}")
    stop = start
    if last is not None:
        stop = next((i for i in range(start, len(lines)) if last in lines[i]), None)
        if stop is None:
            raise ValueError(f"{last!r} is not in the source of {getattr(obj, '__qualname__', obj)!r} after {first!r}")
    chosen = lines[start : stop + 1]
    if drop_comments:
        chosen = [_COMMENT.sub("", s) for s in chosen]
    return textwrap.dedent("\n".join(chosen))
