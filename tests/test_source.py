"""bncourse.source.excerpt: the lines of the package's code that a page discusses."""

import pytest

from bncourse.norms import batchnorm_backward
from bncourse.source import excerpt


def test_excerpt_from_first_to_last_marker_dedented():
    text = excerpt(batchnorm_backward, "dbeta = dout.sum", "dx = dxc + dmu / m")
    lines = text.splitlines()
    assert lines[0].startswith("dbeta = dout.sum(axis=axes)")
    assert lines[-1].startswith("dx = dxc + dmu / m")
    assert "dvar = " in text and '"""' not in text  # the body, not the docstring
    assert all(not s.startswith(" ") for s in lines if s and not s.startswith("#"))


def test_excerpt_one_line_and_comments_dropped():
    assert excerpt(batchnorm_backward, "dstd =") == "dstd = -dinv_std / std**2  # inv_std = 1 / std"
    assert excerpt(batchnorm_backward, "dstd =", drop_comments=True) == "dstd = -dinv_std / std**2"


def test_excerpt_rejects_missing_markers():
    with pytest.raises(ValueError, match="not in the source"):
        excerpt(batchnorm_backward, "no such line")
    with pytest.raises(ValueError, match="after"):
        excerpt(batchnorm_backward, "dx = dxc", "dbeta = ")  # last before first
