"""The envelope parser and verifier under hostile input: no crash, every refusal typed and counted once.

* `canonical.loads_canonical` on arbitrary bytes: a value that re-encodes to exactly those bytes
  and passes `canonical.check`, or `CanonicalError`; nothing else.
* `Verifier.verify` on arbitrary bytes, text and JSON values, and on structure-aware mutations of
  a valid signed version-2 envelope (a member removed, added or retyped, deep nesting, huge
  numbers, unicode, the ``to`` recipient, a valid signature over a wrong structure, damaged wire
  bytes): it returns an `Envelope` or raises an `EnvelopeError` subclass whose reason is in
  `envelope.REASONS`, and exactly that reason's counter went up by one. An accepted envelope is
  one whose signature covers exactly what it says, addressed to this verifier, and never accepted
  twice.
* Memory: 12,000 hostile inputs (floods from 400 keys, replays, future-dated, stale, forged,
  misaddressed, junk) keep the replay cache within its documented bounds, and tracemalloc sees no
  growth past a small bound once the cache is full.
* Coverage-guided: atheris (libFuzzer) drives the same verifier from a copy of the kept corpus
  (tests/fuzz/corpus/envelope/, grown from valid envelopes by `./build.sh fuzz`), in a subprocess
  with a fixed seed and run count. atheris ships wheels for x86_64 only
  (it installs on a fresh Debian 12 amd64; elsewhere it would need clang and libFuzzer to build),
  so that one test is skipped where it is not installed; everything else is hypothesis.
"""

from __future__ import annotations

import json
import random
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from borgusb import canonical, envelope
from borgusb.clock import ManualClock
from borgusb.envelope import Envelope, EnvelopeError, Verifier
from borgusb.keys import verify_signature

from .libfuzzer import short_run
from .strategies import (
    HEX,
    HOSTILE,
    JSON,
    JSON_SMALL,
    fixed_key,
    fuzz_settings,
    hex_texts,
    json_values,
    nested,
    texts,
    unsafe_ints,
)

KEY = fixed_key("signer")
OTHER = fixed_key("other")
ME = fixed_key("verifier")  # the node the verifier answers to
PORTS = (13350, 13351, 13352)
T0 = 1_764_000_000_000
WINDOW = envelope.DEFAULT_WINDOW_MS


def verifier(clock: ManualClock | None = None, **kw: Any) -> Verifier:
    v = Verifier(clock or ManualClock(T0), **kw)
    v.answer_to(ME.public_key_hex, PORTS)
    return v


def raw_wire(doc: Any) -> bytes:
    """Canonical-looking bytes even for values canonical form refuses (so each check is reached)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


def checked_verify(v: Verifier, form: Any, **kw: Any) -> Envelope | EnvelopeError:
    """verify, with the property every call must meet: an Envelope and one "accepted", or a typed
    refusal and exactly its own reason counted once. Any other exception fails the test."""
    before = Counter(v.counters)
    try:
        env = v.verify(form, **kw)
    except EnvelopeError as exc:
        assert type(exc) is not EnvelopeError and exc.reason in envelope.REASONS, exc
        after = Counter(v.counters)
        after.subtract(before)
        assert +after == Counter({exc.reason: 1}), (exc.reason, +after)
        return exc
    assert isinstance(env, Envelope)
    after = Counter(v.counters)
    after.subtract(before)
    assert +after == Counter({"accepted": 1})
    # the signature covers exactly the envelope's own fields, re-encoded independently of the wire
    body = env.to_dict()
    del body["sig"]
    assert verify_signature(env.signer, bytes.fromhex(env.sig), canonical.dumps(body))
    assert abs(env.ts - v.clock.now_ms()) <= v.window_ms
    return env


# ------------------------------------------------------------------ the parser


@fuzz_settings(1500)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=200).map(lambda t: t.encode("utf-8"))))
@example(b"9999999999999999")  # a top-level integer past 2**53 was taken unchecked
@example(b"-99999999999999999")
@example(b"[" * 40 + b"]" * 40)
@example(b'{"a":1,"a":2}')
@example(b'"\\ud800"')
def test_loads_canonical_gives_a_canonical_value_or_canonical_error(data: bytes) -> None:
    try:
        value = canonical.loads_canonical(data)
    except canonical.CanonicalError:
        return
    canonical.check(value)  # what parses is what encoding accepts
    assert canonical.encode_unchecked(value) == data


@fuzz_settings(600)
@given(json_values(20).map(canonical.dumps))
def test_loads_canonical_takes_back_every_canonical_encoding(data: bytes) -> None:
    assert canonical.encode_unchecked(canonical.loads_canonical(data)) == data


# ------------------------------------------------------------------ the verifier: arbitrary input


@fuzz_settings(1500)
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400), st.text(max_size=100).map(str.encode)))
def test_arbitrary_bytes_and_text_are_refused_typed_and_counted(data: bytes | str) -> None:
    got = checked_verify(verifier(), data)
    assert isinstance(got, EnvelopeError)


envelope_shaped = st.fixed_dictionaries(
    {},
    optional={
        name: st.one_of(JSON_SMALL, unsafe_ints)
        for name in ("v", "type", "payload", "sender", "to", "ts", "nonce", "sig")
    },
)


@fuzz_settings(1000)
@given(st.one_of(HOSTILE, envelope_shaped, st.sets(st.integers(), max_size=3), st.floats()))
def test_arbitrary_values_are_refused_typed_and_counted(value: Any) -> None:
    v = verifier()
    forms: list[Any] = [value]
    try:
        forms.append(raw_wire(value))
    except (TypeError, ValueError):
        pass
    for form in forms:
        got = checked_verify(v, form)
        assert isinstance(got, EnvelopeError)


# ------------------------------------------------------------------ the verifier: mutated valid envelopes

RECIPIENTS = [
    envelope.address(ME.public_key_hex, PORTS[0]),
    envelope.address(ME.public_key_hex, PORTS[2]),
    envelope.address(ME.public_key_hex, 1),  # our key, a port we do not listen on
    envelope.address(OTHER.public_key_hex, PORTS[0]),
    envelope.everyone(PORTS[1]),
    envelope.everyone(9),
    "",
    "*:",
    "*:123456",
    ME.public_key_hex,
    ME.public_key_hex.upper() + f":{PORTS[0]}",
    f"{ME.public_key_hex}:{PORTS[0]}\n",
    "*:13350:13350",
]
FIELDS = ["v", "type", "payload", "sender", "to", "ts", "nonce", "sig"]
SENDER_FIELDS = ["ip", "port", "pubkey"]
OPS = st.sampled_from(
    [
        "remove",
        "add",
        "retype",
        "to",
        "ts",
        "version",
        "type",
        "sender",
        "nonce",
        "sig",
        "deep",
        "huge_number",
        "unicode",
    ]
)
WHERE = st.sampled_from(["top", "sender"])
TOP_FIELD = st.sampled_from(FIELDS)
SENDER_FIELD = st.sampled_from(SENDER_FIELDS)
ADDED_NAME = st.sampled_from(["d", "extra", "V", "sig2", " to", "to\x00"]) | texts
RETYPED = st.one_of(JSON_SMALL, unsafe_ints)
TO_VALUES = st.sampled_from(RECIPIENTS) | texts
TS_OFFSETS = st.sampled_from([-WINDOW - 1, -WINDOW, WINDOW, WINDOW + 1, -(10**9), 10**12]) | st.integers(
    -3 * WINDOW, 3 * WINDOW
)
TS_WRONG = st.sampled_from([True, False, -1, 0, 1.5, "1764000000000", None])
VERSIONS = st.sampled_from([1, 3, 0, -2, True, "2", [2], 2.0, None, 2**53])
TYPES = st.one_of(texts, st.sampled_from(["", "t" * 64, "t" * 65, "tree.hb", "tree.broadcast"]))
SENDER_VALUES = st.one_of(
    JSON_SMALL, st.sampled_from([OTHER.public_key_hex, -1, 65536, 2**53, True, "1" * 65, "é" * 64]), hex_texts
)
SIGS = st.one_of(hex_texts, st.just(OTHER.sign(b"something else").hex()))
DEPTHS = st.integers(canonical.MAX_DEPTH - 3, canonical.MAX_DEPTH + 8)
BIG_WHERE = st.sampled_from(["payload", "ts", "v", "sender"])
UNICODE_FIELD = st.sampled_from(["type", "nonce", "to", "payload"])
UNICODE = st.sampled_from(["tÿpe", "ａｐｐ", "a\u0000b", "💥" * 10, "0" * 31 + "٣", "\u2028"])
NONCES = st.text(alphabet=HEX, min_size=32, max_size=32)


def valid_doc(payload: Any, to: str, nonce: str, ts: int, type: str = "app.fuzz") -> dict[str, Any]:
    return envelope.sign(KEY, type, payload, ManualClock(ts), ip="127.0.0.91", port=PORTS[0], to=to, nonce=nonce)


def resign(doc: dict[str, Any], key: Any = KEY) -> None:
    """A valid signature over whatever the document now holds (a wrong structure, signed)."""
    body = {k: v for k, v in doc.items() if k != "sig"}
    try:
        doc["sig"] = key.sign(canonical.encode_unchecked(body)).hex()
    except (TypeError, ValueError, RecursionError):
        pass  # not encodable as JSON: nothing to sign


@st.composite
def mutation(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    """Apply one structure-aware change to doc; return its name (for the failure report)."""
    op = draw(OPS)
    if op == "remove":
        sender = doc.get("sender")
        if draw(WHERE) == "sender" and isinstance(sender, dict):
            sender.pop(draw(SENDER_FIELD), None)
        else:
            doc.pop(draw(TOP_FIELD), None)
    elif op == "add":
        doc[draw(ADDED_NAME)] = draw(JSON_SMALL)
    elif op == "retype":
        doc[draw(TOP_FIELD)] = draw(RETYPED)
    elif op == "to":
        doc["to"] = draw(TO_VALUES)
    elif op == "ts":
        doc["ts"] = draw(TS_WRONG) if draw(st.booleans()) else T0 + draw(TS_OFFSETS)
    elif op == "version":
        doc["v"] = draw(VERSIONS)
    elif op == "type":
        doc["type"] = draw(TYPES)
    elif op == "sender":
        sender = doc["sender"] if isinstance(doc.get("sender"), dict) else {}
        sender[draw(SENDER_FIELD)] = draw(SENDER_VALUES)
        doc["sender"] = sender
    elif op == "nonce":
        doc["nonce"] = draw(hex_texts)
    elif op == "sig":
        doc["sig"] = draw(SIGS)
    elif op == "deep":
        doc["payload"] = nested(draw(DEPTHS))
    elif op == "huge_number":
        where, big = draw(BIG_WHERE), draw(unsafe_ints)
        if where == "sender" and isinstance(doc.get("sender"), dict):
            doc["sender"]["port"] = big
        else:
            doc[where] = {"n": big} if where == "payload" else big
    else:
        doc[draw(UNICODE_FIELD)] = draw(UNICODE)
    return op


SIGNED_TO = st.sampled_from(RECIPIENTS[:2] + [envelope.everyone(PORTS[1])])
SIGNERS = st.sampled_from([KEY, OTHER])
FORMS = st.sampled_from(["bytes", "str", "dict", "damaged"])
DAMAGE = st.sampled_from(["flip", "insert", "delete", "truncate", "space"])


@st.composite
def mutated_forms(draw: st.DrawFn) -> tuple[list[str], Any]:
    nonce = draw(NONCES)
    to = draw(SIGNED_TO)
    payload = draw(JSON)
    doc = valid_doc(payload, to, nonce, T0 + draw(st.integers(-WINDOW, WINDOW)))
    ops = [draw(mutation(doc)) for _ in range(draw(st.integers(0, 3)))]
    if ops and draw(st.booleans()):
        resign(doc, draw(SIGNERS))
        ops.append("resigned")
    form = draw(FORMS)
    ops.append(form)
    if form == "dict":
        return ops, doc
    data = raw_wire(doc)
    if form == "str":
        return ops, data.decode("utf-8", "surrogatepass")
    if form == "damaged":
        at = draw(st.integers(0, max(0, len(data) - 1)))
        how = draw(DAMAGE)
        ops.append(how)
        if how == "flip":
            data = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]
        elif how == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
        elif how == "delete":
            data = data[:at] + data[at + 1 :]
        elif how == "truncate":
            data = data[:at]
        else:
            data = data[:at] + b" " + data[at:]
    return ops, data


@fuzz_settings(2500)
@given(
    mutated_forms(),
    st.sampled_from([None, "app.fuzz", ("tree.hb", "app.fuzz"), "other"]),
    st.sampled_from([None, KEY.public_key_hex, (OTHER.public_key_hex,)]),
    st.sampled_from([(), ("app.fuzz",), ("tree.broadcast",)]),
    st.booleans(),
)
def test_mutated_envelopes_are_accepted_or_refused_typed_and_counted(
    case: tuple[list[str], Any], expected_type: Any, expected_signer: Any, broadcast_types: Any, unaddressed: bool
) -> None:
    ops, form = case
    v = verifier()
    kw = dict(
        expected_type=expected_type,
        expected_signer=expected_signer,
        broadcast_types=broadcast_types,
        unaddressed=unaddressed,
    )
    got = checked_verify(v, form, **kw)
    if isinstance(got, EnvelopeError):
        return
    # accepted: addressed to us (or a broadcast type on one of our ports), and never twice
    assert (
        got.to in v._addresses
        or (got.to in v._everyone and got.type in broadcast_types)
        or (got.to == "" and unaddressed)
    ), ops
    again = checked_verify(v, form, **kw)
    assert isinstance(again, envelope.Replay), (ops, again)


def test_a_refused_message_spends_no_nonce() -> None:
    v = verifier()
    doc = valid_doc({"n": 1}, RECIPIENTS[0], "ab" * 16, T0)
    assert isinstance(checked_verify(v, envelope.encode(doc), expected_type="other"), envelope.WrongType)
    assert isinstance(checked_verify(v, envelope.encode(doc)), Envelope)


# ------------------------------------------------------------------ memory under a long hostile stream

FLOOD_KEYS = [fixed_key(f"flood {i}") for i in range(400)]
STEP_MS = 7


def hostile_stream(n: int, seed: int) -> list[bytes | str]:
    """n inputs, the i-th meant for a verifier whose clock reads T0 + i * STEP_MS."""
    rng = random.Random(seed)
    out: list[bytes | str] = []
    accepted: list[bytes] = []
    to = envelope.address(ME.public_key_hex, PORTS[0])
    for i in range(n):
        now = T0 + i * STEP_MS
        kind = rng.random()
        key = FLOOD_KEYS[rng.randrange(len(FLOOD_KEYS))]
        nonce = rng.getrandbits(128).to_bytes(16, "big").hex()
        payload = {"i": i, "pad": "x" * rng.randrange(64)}

        def make(ts: int, to: str = to, key: Any = key, payload: Any = payload, nonce: str = nonce) -> bytes:
            return envelope.encode(
                envelope.sign(key, "app.flood", payload, ManualClock(ts), ip="10.0.0.1", port=1, to=to, nonce=nonce)
            )

        if kind < 0.45:  # fresh, anywhere in the window (a flood dated +30 s included)
            wire = make(now + rng.randrange(-WINDOW + STEP_MS, WINDOW))
            accepted.append(wire)
        elif kind < 0.55 and accepted:  # a replay of something sent before
            wire = accepted[rng.randrange(len(accepted))]
        elif kind < 0.62:
            wire = make(now + WINDOW + 1 + rng.randrange(10**6))
        elif kind < 0.69:
            wire = make(now - WINDOW - 1 - rng.randrange(10**6))
        elif kind < 0.76:  # forged: signed by one key, claiming another
            doc = envelope.sign(key, "app.flood", payload, ManualClock(now), to=to, nonce=nonce)
            doc["sender"]["pubkey"] = FLOOD_KEYS[rng.randrange(len(FLOOD_KEYS))].public_key_hex
            wire = envelope.encode(doc)
        elif kind < 0.83:
            wire = make(now, to=envelope.address(OTHER.public_key_hex, PORTS[0]))
        elif kind < 0.90:
            wire = rng.randbytes(rng.randrange(1, 300))
        else:  # a valid envelope damaged in one byte
            good = bytearray(make(now))
            good[rng.randrange(len(good))] ^= 1 << rng.randrange(8)
            wire = bytes(good)
        out.append(wire)
    return out


def test_memory_stays_bounded_under_a_long_hostile_stream() -> None:
    warm, measured = 4_000, 8_000
    inputs = hostile_stream(warm + measured, seed=15)
    clock = ManualClock(T0)
    v = verifier(clock, replay_capacity=1_000)
    cache = v.replay

    def feed(start: int, stop: int) -> None:
        for i in range(start, stop):
            clock.ms = T0 + i * STEP_MS
            try:
                v.verify(inputs[i])
            except EnvelopeError as exc:
                assert exc.reason in envelope.REASONS
            if i % 250 == 0:
                assert cache.entries() <= cache.capacity
                assert cache.signers() <= cache.max_signers
                assert cache.floors() <= cache.max_floors
                assert len(cache._floor_heap) <= 2 * cache.max_floors + 16
                assert set(v.counters) <= {*envelope.REASONS, "accepted"}

    tracemalloc.start()
    try:
        feed(0, warm)
        settled = tracemalloc.get_traced_memory()[0]
        feed(warm, warm + measured)
        grown = tracemalloc.get_traced_memory()[0] - settled
    finally:
        tracemalloc.stop()
    assert v.counters["accepted"] > 2_000 and v.counters["replay"] > 500
    assert sum(v.counters[r] for r in envelope.REASONS) + v.counters["accepted"] == warm + measured
    # the cache was full before the measured part: what it holds is replaced, not added to
    assert grown < 256 * 1024, f"{grown} bytes more after {measured} further hostile inputs"


# ------------------------------------------------------------------ coverage-guided (atheris)


def test_coverage_guided_fuzzing_of_the_verifier(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris ships wheels for x86_64 only (see the module docstring)")
    short_run("atheris_envelope", tmp_path, runs=60_000)
