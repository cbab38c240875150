"""Canonical JSON: one byte form per value, and refusal of everything ambiguous."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from borgusb import canonical
from borgusb.canonical import CanonicalError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def test_sorted_compact_utf8() -> None:
    assert canonical.dumps({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1.5}',
        '{"a":NaN}',
        '{"a":Infinity}',
        '{"a":1,"a":2}',
        '{"a":9007199254740993}',
        "[" * 100 + "]" * 100,
        "\xff",
    ],
)
def test_ambiguous_input_refused(text: str) -> None:
    with pytest.raises(CanonicalError):
        canonical.loads(text.encode("latin-1") if text == "\xff" else text)


@pytest.mark.parametrize("value", [1.0, float("nan"), {1: "a"}, b"bytes", 2**60, {"a": object()}])
def test_unencodable_values_refused(value) -> None:
    with pytest.raises(CanonicalError):
        canonical.dumps(value)


@pytest.mark.parametrize("value", ["\ud800", ["a\udcffb"], {"\ud87f": 1}, {"a": {"b\udc80": None}}])
def test_a_lone_surrogate_is_refused_as_not_canonical(value) -> None:
    """It has no UTF-8 form; check, dumps and loads refuse it as CanonicalError (a UnicodeEncodeError
    out of dumps escaped callers that catch CanonicalError: found by tests/fuzz/atheris_receptors.py)."""
    with pytest.raises(CanonicalError):
        canonical.check(value)
    with pytest.raises(CanonicalError):
        canonical.dumps(value)
    with pytest.raises(CanonicalError):
        canonical.loads(json.dumps(value))  # spelled as \\ud800 escapes


@given(json_values)
def test_round_trip_is_stable(value) -> None:
    once = canonical.dumps(value)
    assert canonical.dumps(canonical.loads(once)) == once


@pytest.mark.parametrize("depth", [canonical.MAX_DEPTH + 2, 400])  # 34 brackets: the innermost at depth 33
def test_wire_parser_applies_the_depth_limit(depth: int) -> None:
    text = ("[" * depth + "]" * depth).encode()
    with pytest.raises(CanonicalError, match="deep"):
        canonical.loads_canonical(text)
    nested = ('{"a":' * depth + "1" + "}" * depth).encode()
    with pytest.raises(CanonicalError, match="deep"):
        canonical.loads_canonical(nested)


def test_wire_parser_depth_limit_matches_check() -> None:
    """loads_canonical accepts exactly the depths check() accepts; brackets inside strings do not count."""
    for depth in range(canonical.MAX_DEPTH - 2, canonical.MAX_DEPTH + 3):
        value: object = "x"
        for _ in range(depth):
            value = [value]
        try:
            canonical.check(value)
            ok = True
        except CanonicalError:
            ok = False
        data = canonical.encode_unchecked(value)
        if ok:
            assert canonical.loads_canonical(data) == value
        else:
            with pytest.raises(CanonicalError):
                canonical.loads_canonical(data)
    many = {"s": "[" * 500, "t": "{" * 500, "l": [[1], [2], {"k": [3]}] * 50}
    assert canonical.loads_canonical(canonical.dumps(many)) == many
