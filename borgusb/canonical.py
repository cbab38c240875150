"""Canonical JSON: the one byte form that signatures cover.

Two nodes must turn the same message into the same bytes, so the form is
strict: keys sorted, no insignificant whitespace, UTF-8, integers only within
the range every JSON implementation represents exactly (±2**53), and no
floats, NaN, Infinity or duplicate keys (each of those has more than one
spelling or none at all). Parsing refuses what encoding would refuse, so a
message that parses is one that re-encodes to a single canonical form.

`loads_canonical`, the hot path of every received envelope, tries msgspec's C
decoder and encoder first (about 1.3 µs instead of 7 for this module's json
round trip) and hands anything that path does not accept, unchanged, to the
json reference path, which alone decides a refusal and its reason. The fast
path accepts a value only when msgspec re-encodes it to exactly the received
bytes, and msgspec's encoding agrees with `encode_unchecked` on every code
point and key order (tests/unit/test_canonical_fast.py), so both paths accept
the same bytes as the same value.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

MAX_SAFE_INT = 2**53 - 1
MAX_DEPTH = 32

JSONValue = Any


class CanonicalError(ValueError):
    """The value or text is not canonical BorgUSB JSON."""


def _reject_constant(name: str) -> Any:
    raise CanonicalError(f"{name} is not allowed")


def reject_float(text: str) -> Any:
    raise CanonicalError(f"floats are not allowed ({text[:20]})")


def _parse_int(text: str) -> int:
    if len(text) > 17:
        raise CanonicalError("integer out of range")
    value = int(text)
    if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        return value
    raise CanonicalError("integer out of range")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise CanonicalError(f"duplicate key {key[:40]!r}")
        result[key] = value
    return result


_fast_decoder = json.JSONDecoder(parse_float=reject_float, parse_constant=_reject_constant)
# an integer token of 16+ digits: after a separator, or the whole document's first token. Two patterns,
# because an alternation with ^ defeats the regex engine's fast scan (8 µs a message instead of 1)
_LONG_DIGITS = re.compile(rb"[:,\[]-?[0-9]{16}")
_LEADING_LONG_DIGITS = re.compile(rb"-?[0-9]{16}")

_decoder = json.JSONDecoder(
    object_pairs_hook=_no_duplicates,
    parse_float=reject_float,
    parse_int=_parse_int,
    parse_constant=_reject_constant,
)


def check(value: JSONValue, depth: int = 0) -> None:
    """Raise CanonicalError unless value holds only canonical JSON types."""
    if depth > MAX_DEPTH:
        raise CanonicalError("nesting too deep")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        _check_text(value)
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise CanonicalError("integer out of range")
        return
    if isinstance(value, float):
        raise CanonicalError("floats are not allowed")
    if isinstance(value, (list, tuple)):
        for item in value:
            check(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError("object keys must be strings")
            _check_text(key)
            check(item, depth + 1)
        return
    raise CanonicalError(f"{type(value).__name__} is not a JSON type")


def _check_text(text: str) -> None:
    """A lone surrogate (from a \\ud800 escape, or a file name read with surrogateescape) has no
    UTF-8 form: refused here, not as a UnicodeEncodeError out of the encoder."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise CanonicalError("a lone surrogate is not text") from None


def dumps(value: JSONValue) -> bytes:
    """Encode value in canonical form (checked first)."""
    check(value)
    return encode_unchecked(value)


def encode_unchecked(value: JSONValue) -> bytes:
    """Encode a value already known to be canonical (the hot path skips check)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def loads(data: bytes | str) -> JSONValue:
    """Parse canonical-compatible JSON; raises CanonicalError on anything else."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else data
        value = _decoder.decode(text)
    except CanonicalError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise CanonicalError(f"not valid JSON: {str(exc)[:80]}") from None
    check(value)
    return value


def loads_canonical(data: bytes) -> JSONValue:
    """Parse bytes that must already be in canonical form (the wire form).

    Faster than `loads` for the hot path: a C decoder parses, and re-encoding
    must give back exactly the same bytes, which at once rules out duplicate
    keys, unsorted keys, whitespace and alternative escapes.
    """
    if type(data) is not bytes:
        data = bytes(data)
    value = _loads_fast(data)
    if value is NOT_FAST:
        return _loads_reference(data)
    return value


def loads_refusing(data: bytes) -> JSONValue:
    """`loads_canonical` for bytes a fast path already turned down: straight to the reference
    path, which words the refusal (or accepts what that fast path did not cover) without a
    second fast pass over a body a hostile peer may have made large."""
    return _loads_reference(data if type(data) is bytes else bytes(data))


NOT_FAST: Any = object()  # the fast path's "ask the reference path", distinct from every JSON value
# an integer token of 16+ digits (maybe beyond ±2**53) follows one of ":,[-" or starts the document; mapped
# to ":" and "0", such a token is ":" + 16 "0" (strings may match too: they only take the reference path)
NUMBER_MARKS = bytes(48 if 48 <= b <= 57 else 58 if b in b":,[-" else 32 for b in range(256))
_LONG_RUN = b"0" * 16
LONG_TOKEN = b":" + _LONG_RUN
_strict_decoder = msgspec.json.Decoder(float_hook=reject_float)
sorted_encoder = msgspec.json.Encoder(order="sorted")  # encodes canonically what the decoders give


def _loads_fast(data: bytes) -> JSONValue:
    """The value, or NOT_FAST for anything the reference path must judge (every refusal)."""
    marks = data.translate(NUMBER_MARKS)
    if LONG_TOKEN in marks or marks.startswith(_LONG_RUN):  # before decoding: msgspec parses huge integers
        return NOT_FAST
    try:
        value = _strict_decoder.decode(data)
    except (msgspec.MsgspecError, RecursionError):
        return NOT_FAST
    if sorted_encoder.encode(value) != data:
        return NOT_FAST
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and too_deep(value):
        return NOT_FAST
    return value


def _loads_reference(data: bytes) -> JSONValue:
    """`loads_canonical` by json: the reference, and the one that words every refusal."""
    try:
        value = _fast_decoder.decode(data.decode("utf-8"))
    except CanonicalError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise CanonicalError(f"not valid JSON: {str(exc)[:80]}") from None
    try:
        again = encode_unchecked(value)
    except (ValueError, RecursionError):
        raise CanonicalError("not encodable") from None
    if again != data:
        raise CanonicalError("not in canonical form (sorted keys, no spaces, UTF-8, no duplicates)")
    if _LONG_DIGITS.search(data) or _LEADING_LONG_DIGITS.match(data):  # maybe beyond ±2**53: check properly
        check(value)
    elif data.count(b"[") + data.count(b"{") > MAX_DEPTH and too_deep(value):
        # k brackets nest at most k deep, so most messages skip the walk
        raise CanonicalError("nesting too deep")
    return value


def too_deep(value: JSONValue, at: int = 0) -> bool:
    """The depth limit of `check` for a value found at depth `at` (none deeper than MAX_DEPTH)."""
    if type(value) is not list and type(value) is not dict:
        return False
    stack: list[tuple[Any, int]] = [(value, at)]
    while stack:
        node, depth = stack.pop()
        items = node.values() if type(node) is dict else node
        if depth >= MAX_DEPTH and items:
            return True  # its members would sit deeper than MAX_DEPTH
        for item in items:
            if type(item) is list or type(item) is dict:
                stack.append((item, depth + 1))
    return False
