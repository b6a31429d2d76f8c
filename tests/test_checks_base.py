"""The checker kit (bncourse.checks.base): each helper accepts what is right and names what is wrong."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bncourse.checks import base as kit


def test_fail_raises_a_check_error_that_is_an_assertion_error():
    with pytest.raises(AssertionError, match=r"^check_x: broken$") as info:
        kit.fail("check_x", "broken")
    assert isinstance(info.value, kit.CheckError)


def test_call_returns_the_result_and_wraps_the_students_exceptions():
    assert kit.call(lambda a, b: a + b, "check_x", 1, 2) == 3

    def shapes(*_):
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    with pytest.raises(
        kit.CheckError, match=r"check_x raised ValueError: operands.*\(a shape mismatch: use axis=0\)"
    ) as e:
        kit.call(shapes, "check_x", shape_hint="use axis=0")
    assert isinstance(e.value.__cause__, ValueError)
    with pytest.raises(kit.CheckError, match=r"raised ValueError: operands.*shapes \(3,\) \(4,\)$"):
        kit.call(shapes, "check_x")  # no hint given: none added
    with pytest.raises(kit.CheckError, match=r"raised NotImplementedError: todo \(the exercise is not filled in yet\)"):
        kit.call(lambda: (_ for _ in ()).throw(NotImplementedError("todo")), "check_x")
    with pytest.raises(kit.CheckError, match=r"check_x raised AssertionError: mine"):
        kit.call(lambda: (_ for _ in ()).throw(AssertionError("mine")), "check_x")  # the student's own assert


def test_call_passes_a_check_error_raised_by_a_helper_unchanged():
    def student():
        kit.fail("check_x", "bn2d got the wrong shape")

    with pytest.raises(kit.CheckError, match=r"^check_x: bn2d got the wrong shape$"):
        kit.call(student, "check_x")


def test_as_tuple_accepts_tuples_and_lists_and_names_the_rest():
    assert kit.as_tuple([1, 2], "check_x", "f", "(a, b)", 2) == (1, 2)
    with pytest.raises(kit.CheckError, match=r"f must return a pair: return a tuple \(a, b\); got ndarray"):
        kit.as_tuple(np.zeros(2), "check_x", "f", "(a, b)", 2)
    with pytest.raises(kit.CheckError, match=r"must return 3 values.*got a tuple of length 2.*`return a, b, c`"):
        kit.as_tuple((1, 2), "check_x", "f", "(a, b, c)", 3)
    with pytest.raises(kit.CheckError, match=r"got None"):
        kit.as_tuple(None, "check_x", "f", "(a, b)", 2)


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (None, r"out is None: fill in the exercise"),
        ("abc", r"out is a str \('abc'\)"),
        ([[1.0, 2.0], [3.0]], r"out \(a list\) is not an array of numbers \(a ragged list"),
        ({"a": 1}, r"out \(a dict\) is not an array of numbers"),
        (np.ones(3) + 1j, r"out has complex values.*np.linalg.eigh"),
        (np.array(["a", "b", "c"]), r"out must hold numbers; got an array of dtype <U1"),
        (np.ones(4), r"out has the wrong shape: expected \(3,\), got \(4,\); one per feature"),
        (np.array([1.0, np.nan, 2.0]), r"out contains NaN or inf: a division by zero\?"),
        (np.array([1.0, np.inf, 2.0]), r"out contains NaN or inf"),
    ],
)
def test_as_array_names_each_bad_value(value, pattern):
    with pytest.raises(kit.CheckError, match=rf"^check_x: {pattern}"):
        kit.as_array(value, "check_x", "out", (3,), shape_hint=lambda got: "one per feature")


def test_as_array_converts_what_is_right():
    a = kit.as_array([1, 2, 3], "check_x", "out", (3,))
    assert a.dtype == np.float64 and a.tolist() == [1.0, 2.0, 3.0]
    assert kit.as_array(np.ones(3, np.float32), "check_x", "out", (3,)).dtype == np.float32  # the dtype sets tol
    t = torch.ones(2, 3, requires_grad=True) * 2
    assert kit.as_array(t, "check_x", "out", (2, 3)).tolist() == [[2.0] * 3] * 2
    assert kit.as_array(np.array([True, False]), "check_x", "mask").dtype == np.float64
    with pytest.raises(kit.CheckError, match=r"wrong shape: expected \(2,\), got \(3,\); reduce it$"):
        kit.as_array(np.ones(3), "check_x", "out", (2,), shape_hint="reduce it")
    with pytest.raises(kit.CheckError, match=r"NaN or inf: use integers"):
        kit.as_array([np.nan], "check_x", "idx", nan_hint="use integers")


def test_as_number():
    assert kit.as_number(np.float32(2.5), "check_x", "l2") == 2.5
    assert kit.as_number(np.array([[3.0]]), "check_x", "l2") == 3.0
    assert kit.as_number(torch.tensor(1.5), "check_x", "l2") == 1.5
    with pytest.raises(kit.CheckError, match=r"return one number as l2; got an array of shape \(2,\)\. sum it"):
        kit.as_number(np.ones(2), "check_x", "l2", "sum it")
    with pytest.raises(kit.CheckError, match=r"l2 is None"):
        kit.as_number(None, "check_x", "l2")
    with pytest.raises(kit.CheckError, match=r"l2 has complex values"):
        kit.as_number(1 + 2j, "check_x", "l2")


def test_tol_for_follows_the_dtype():
    assert kit.tol_for(np.ones(2), np.ones(3)) == 1e-7
    assert kit.tol_for(np.ones(2), np.ones(3, np.float32)) == 1e-3
    assert kit.tol_for(np.ones(2, np.float16), narrow=1e-4) == 1e-4
    assert kit.tol_for(np.float64(1.0)) == 1e-7


def test_rel_err():
    ref = np.array([1.0, -4.0])
    assert kit.rel_err(ref, ref) == 0.0
    assert kit.rel_err(ref + [0.0, 0.4], ref) == pytest.approx(0.1)  # of the largest |ref|
    assert kit.rel_err(ref + [0.1, 0.0], ref, scale=np.array([1.0, 4.0])) == pytest.approx(0.1)
    assert kit.rel_err(np.ones(3), ref) == np.inf  # shapes differ
    assert kit.rel_err([np.nan, 1.0], ref) == np.inf
    assert kit.rel_err(np.full(2, 1e-13), np.zeros(2), atol=1e-12) == 0.0
    assert kit.rel_err(np.full(2, 1e-3), np.zeros(2)) > 1e6  # an all-zero reference: floored scale, no division by 0


_CASES = [SimpleNamespace(label="N=2", x=np.array([1.0, 2.0])), SimpleNamespace(label="N=2, eps=0.1", x=np.ones(2))]
_VARIANTS = [
    ("undefined here", lambda c: None),
    ("raises", lambda c: np.ones((2, 2)) @ np.ones(3)),
    ("doubled: do not multiply by 2", lambda c: 2 * c.x),
    ("also doubled (never reached)", lambda c: c.x + c.x),
]


def test_match_finds_the_first_variant_reproduced_in_every_case():
    assert kit.match([2 * c.x for c in _CASES], _CASES, _VARIANTS, 1e-7) == "doubled: do not multiply by 2"
    assert kit.match([2 * _CASES[0].x, 3 * _CASES[1].x], _CASES, _VARIANTS, 1e-7) is None  # one case differs


def test_verdict_and_judge():
    refs = [c.x for c in _CASES]
    assert kit.verdict("out", refs, refs, _CASES, _VARIANTS, 1e-7) is None
    assert kit.verdict("out", [2 * r for r in refs], refs, _CASES, _VARIANTS, 1e-7) == (
        "out is wrong: doubled: do not multiply by 2"
    )
    msg = kit.verdict("out", [refs[0], refs[1] + 0.5], refs, _CASES, _VARIANTS, 1e-7, hint="out = x")
    assert msg.startswith("out is wrong in 1 of 2 cases (N=2, eps=0.1): max error 5.00e-01")
    assert "only the eps=0.1 case fails" in msg and msg.endswith(
        "Hint: only the eps=0.1 case fails: is the eps argument used, not a hard-coded value? out = x"
    )
    scale = lambda c, r: 10.0 * np.abs(r)  # noqa: E731
    assert kit.verdict("out", [refs[0], refs[1] + 0.5], refs, _CASES, [], 0.1, scale=scale) is None
    assert kit.errors([refs[0] + 1.0, refs[1]], refs, _CASES, scale) == [pytest.approx(0.1), 0.0]
    assert kit.judge("check_x", "out", refs, refs, _CASES, _VARIANTS, 1e-7) == 0.0
    with pytest.raises(kit.CheckError, match=r"^check_x: out is wrong: doubled"):
        kit.judge("check_x", "out", [2 * r for r in refs], refs, _CASES, _VARIANTS, 1e-7)


def test_forward_first_blames_the_forward():
    assert kit.forward_first(lambda: 5, "check_back", "check_fwd") == 5
    with pytest.raises(kit.CheckError, match=r"(?s)^check_back: your forward is wrong; fix your forward first \(run "
                       r"check_fwd\)\.\nIt reports: check_fwd: out is None"):  # fmt: skip
        kit.forward_first(lambda: kit.as_array(None, "check_fwd", "out"), "check_back", "check_fwd")
