"""The msgspec fast path of `canonical.loads_canonical` against the json reference path.

The fast path may only ever accept bytes that the reference path accepts, as the same value (types
included: ``true`` is not ``1``); everything else it hands over unchanged, so every refusal and its
wording stay the reference path's. That rests on msgspec's sorted encoder writing what
`canonical.encode_unchecked` writes, checked here for every Unicode scalar value and for key order.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from borgusb import canonical
from borgusb.canonical import NOT_FAST, _loads_fast, _loads_reference

from ..fuzz.strategies import JSON, fuzz_settings, json_values

WIRE = Path(__file__).resolve().parents[1] / "vectors" / "wire"
ENCODER = msgspec.json.Encoder(order="sorted")


def reference(data: bytes) -> object:
    """The reference path's value, or the CanonicalError it raises."""
    try:
        return _loads_reference(data)
    except canonical.CanonicalError as exc:
        return exc


def assert_agrees(data: bytes) -> object:
    """Whatever the fast path accepts, the reference path accepts as the same value."""
    fast = _loads_fast(data)
    if fast is not NOT_FAST:
        ref = reference(data)
        assert not isinstance(ref, canonical.CanonicalError), (data[:80], ref)
        assert repr(fast) == repr(ref)  # repr tells True from 1 and keeps member order
    return fast


def long_number(data: bytes) -> bool:
    """An integer token of 16+ digits (the reference path's own test)."""
    return bool(canonical._LONG_DIGITS.search(data) or canonical._LEADING_LONG_DIGITS.match(data))


def digit_run(data: bytes) -> bool:
    """16 digits in a row anywhere: what may send bytes to the reference path (besides depth)."""
    return re.search(rb"[0-9]{16}", data) is not None


def test_encoders_agree_on_every_unicode_scalar_value() -> None:
    scalars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(scalars), 64):
        chunk = scalars[start : start + 64]
        for text in ("".join(chunk), {"".join(chunk): chunk}):
            assert ENCODER.encode(text) == canonical.encode_unchecked(text), hex(ord(chunk[0]))


def test_encoders_agree_on_key_order() -> None:
    rng = random.Random(20)
    planes = ((0x20, 0x7F), (0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF))

    def key() -> str:
        return "".join(chr(rng.randint(*rng.choice(planes))) for _ in range(rng.randint(0, 3)))

    for _ in range(50):
        value = {key(): [key(), {key(): None, key(): True}] for _ in range(200)}
        assert ENCODER.encode(value) == canonical.encode_unchecked(value)


def test_wire_vectors_take_the_fast_path_or_are_refused_by_the_reference() -> None:
    valid = json.loads((WIRE / "envelope.json").read_text())["cases"]
    for case in valid:
        wire = case["wire"].encode("utf-8")
        fast = assert_agrees(wire)
        assert fast is not NOT_FAST or digit_run(wire), case["name"]
        assert fast is NOT_FAST or not long_number(wire), case["name"]
    for path in sorted(WIRE.glob("*_invalid.json")):
        for case in json.loads(path.read_text())["cases"]:
            if isinstance(case.get("wire"), str):
                assert_agrees(case["wire"].encode("utf-8"))


@fuzz_settings(600)
@given(json_values(20).map(canonical.dumps))
def test_every_canonical_encoding_is_taken_fast_unless_it_has_a_long_number(data: bytes) -> None:
    if assert_agrees(data) is NOT_FAST:
        assert digit_run(data) or data.count(b"[") + data.count(b"{") > canonical.MAX_DEPTH


INSERTS = [b" ", b".5", b"e1", b"E-1", b"\\u0041", b"-", b"0", b'"', b",", b"\xff", b"\xed\xa0\x80", b"\\/", b"1" * 16]


@fuzz_settings(1500)
@given(JSON.map(canonical.dumps), st.integers(0, 10_000), st.sampled_from(INSERTS), st.booleans())
@example(b'{"a":1}', 6, b".0", False)  # a float that re-encodes to its own bytes
@example(b'{"a":1,"b":2}', 7, b'"a":3,', False)  # a duplicate key
@example(b"[9007199254740991]", 1, b"-", False)
@example(b'{"a":true}', 5, b"1", True)
def test_damaged_encodings_never_split_the_paths(data: bytes, at: int, insert: bytes, replace: bool) -> None:
    at %= len(data) + 1
    damaged = data[:at] + insert + data[at + (len(insert) if replace else 0) :]
    assert_agrees(damaged)


@fuzz_settings(1500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_split_the_paths(data: bytes) -> None:
    assert_agrees(data)


@pytest.mark.parametrize(
    "data",
    [
        b"[1.5]",
        b"1.0",
        b"[9007199254740992]",
        b"-9007199254740992",
        b"9" * 1_000_000,
        b"[" + b"9" * 1_000_000 + b"]",
        b'{"a":-' + b"1" * 1_000_000 + b"}",
        b"[" * 40 + b"]" * 40,
    ],
)
def test_what_the_fast_path_refuses_to_judge_is_refused_by_the_reference(data: bytes) -> None:
    assert _loads_fast(data) is NOT_FAST
    with pytest.raises(canonical.CanonicalError):
        canonical.loads_canonical(data)


def test_huge_numbers_never_reach_the_c_decoder() -> None:
    """msgspec would parse a 1 MB integer; the digit scan sends it to json, which refuses it cheaply."""
    for data in (b"[" + b"7" * 1_000_000 + b"]", b"-" + b"7" * 17):
        marks = data.translate(canonical.NUMBER_MARKS)
        assert canonical.LONG_TOKEN in marks or marks.startswith(canonical._LONG_RUN)
    assert canonical.loads_canonical(b'["' + b"7" * 100 + b'"]') == ["7" * 100]  # digits in a string are fine
    assert canonical.loads_canonical(b"[9007199254740991,-9007199254740991]") == [2**53 - 1, -(2**53 - 1)]
