"""The envelope door's typed fast path (`envelope._parse_fast`) against the reference path.

Whatever `_parse_fast` accepts, `canonical.loads_canonical` and `envelope._structure` accept as the
same envelope (payload types included: ``true`` is not ``1``); everything else it leaves to them,
and it decides the same with or without a verifier's addresses and already parsed keys (which
let a `to` or a signer skip its pattern),
so every refusal, its reason and its order stay theirs. Checked on the wire vectors and on the
structure-aware mutations and byte damage of the envelope fuzzer; every valid canonical envelope
without a 16-digit number must take the fast path (or the speed-up is silently gone).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hypothesis import example, given

from borgusb import canonical, envelope
from borgusb.envelope import Envelope, _parse_fast, _structure

from .strategies import JSON, fuzz_settings
from .test_envelope_fuzz import KEY, ME, NONCES, PORTS, SIGNED_TO, T0, mutated_forms, raw_wire, valid_doc

WIRE = Path(__file__).resolve().parents[1] / "vectors" / "wire"


def reference(wire: bytes) -> Envelope | Exception:
    try:
        return _structure(canonical.loads_canonical(wire))
    except (canonical.CanonicalError, envelope.Malformed) as exc:
        return exc


ADDRESSES = frozenset(envelope.address(ME.public_key_hex, port) for port in PORTS)
KEYS = frozenset((KEY.public_key_hex,))  # a verifier's cache holds only keys that parsed


def parse_fast(wire: bytes) -> Envelope | None:
    return _parse_fast(wire, (), ())


def assert_agrees(wire: bytes) -> Envelope | None:
    fast = parse_fast(wire)
    assert repr(_parse_fast(wire, ADDRESSES, KEYS)) == repr(fast)
    if fast is not None:
        ref = reference(wire)
        assert isinstance(ref, Envelope), (wire[:120], ref)
        assert repr(fast) == repr(ref)
    return fast


def digit_run(wire: bytes) -> bool:
    return re.search(rb"[0-9]{16}", wire) is not None


def test_wire_vectors() -> None:
    for case in json.loads((WIRE / "envelope.json").read_text())["cases"]:
        wire = case["wire"].encode("utf-8")
        assert assert_agrees(wire) is not None or digit_run(wire), case["name"]
    for case in json.loads((WIRE / "envelope_invalid.json").read_text())["cases"]:
        if isinstance(case.get("wire"), str):
            assert_agrees(case["wire"].encode("utf-8", "surrogatepass"))


@fuzz_settings(600)
@given(JSON, SIGNED_TO, NONCES)
def test_valid_envelopes_take_the_fast_path(payload: Any, to: str, nonce: str) -> None:
    wire = envelope.encode(valid_doc(payload, to, nonce, T0))
    fast = assert_agrees(wire)
    assert fast is not None or digit_run(wire) or wire.count(b"[") + wire.count(b"{") > canonical.MAX_DEPTH


@fuzz_settings(2500)
@given(mutated_forms())
@example((["float payload"], b'{"nonce":"' + b"0" * 32 + b'","payload":1.5,' + b'"sender":{"ip":"","port":1,'))
def test_mutated_envelopes_never_split_the_paths(case: tuple[list[str], Any]) -> None:
    _ops, form = case
    if isinstance(form, dict):
        try:
            form = raw_wire(form)
        except (TypeError, ValueError):
            return
    elif isinstance(form, str):
        form = form.encode("utf-8", "surrogatepass")
    assert_agrees(form)


def test_each_wrong_member_leaves_the_fast_path() -> None:
    """A valid envelope with one member wrong in a way only a value check catches is not taken."""
    to = envelope.address("02" + "ab" * 32, 13350)
    doc = valid_doc({"n": [1, True, None]}, to, "0" * 32, T0)
    assert assert_agrees(envelope.encode(doc)) is not None
    wrong: list[tuple[str, Any]] = [
        ("v", 3),
        ("v", True),
        ("type", ""),
        ("type", "t" * 65),
        ("ts", -1),
        ("ts", True),
        ("ts", 2**53),  # outside the payload, past the scan for long numbers: the typed bound refuses it
        ("nonce", "0" * 31 + "A"),
        ("sig", "00"),
        ("to", "*:123456"),
        ("payload", 1.5),
        ("payload", {"n": 2**53}),
        ("payload", {"a": {"sender": {"ip": ""}}, "z": 2**53}),  # the scan runs to the last sender
        ("payload", canonical_nested(canonical.MAX_DEPTH + 1)),
    ]
    sender_wrong: list[tuple[str, Any]] = [("ip", "1" * 65), ("port", 65536), ("port", False), ("pubkey", "04" * 33)]
    for member, value in wrong:
        bad = dict(doc, **{member: value})
        assert parse_fast(raw_wire(bad)) is None, (member, value)
    for member, value in sender_wrong:
        bad = dict(doc, sender=dict(doc["sender"], **{member: value}))
        assert parse_fast(raw_wire(bad)) is None, (member, value)
    assert parse_fast(raw_wire(dict(doc, extra=1))) is None
    assert parse_fast(raw_wire({k: v for k, v in doc.items() if k != "ts"})) is None


def canonical_nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value
