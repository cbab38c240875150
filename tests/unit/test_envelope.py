"""The one door: every way a message can be wrong is rejected, typed and counted."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from borgusb import canonical, envelope
from borgusb.clock import ManualClock
from borgusb.envelope import (
    BadSignature,
    EnvelopeError,
    FutureDated,
    Malformed,
    Replay,
    ReplayCache,
    Stale,
    TooLarge,
    Verifier,
    WrongSigner,
    WrongType,
    sign_bytes,
)
from borgusb.keys import SigningKey

KEY = SigningKey.generate()
OTHER = SigningKey.generate()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def verifier(clock: ManualClock) -> Verifier:
    return Verifier(clock)


def wire(doc) -> str:
    """Canonical-looking text even for values canonical.dumps would refuse (so each check is reached)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def make(clock: ManualClock, payload=None, key: SigningKey = KEY, type: str = "app.test") -> dict:
    return envelope.sign(key, type, {"n": 1} if payload is None else payload, clock, ip="127.0.0.2", port=13350)


def test_valid_envelope_round_trip(clock, verifier) -> None:
    env = verifier.verify(envelope.encode(make(clock, {"x": [1, "two"]})))
    assert env.payload == {"x": [1, "two"]}
    assert env.type == "app.test"
    assert env.signer == KEY.public_key_hex
    assert env.sender.ip == "127.0.0.2" and env.sender.port == 13350
    assert verifier.counters["accepted"] == 1


def test_accepts_dict_str_and_bytes(clock, verifier) -> None:
    verifier.verify(make(clock))
    verifier.verify(envelope.encode(make(clock)).decode())
    verifier.verify(envelope.encode(make(clock)))
    assert verifier.counters["accepted"] == 3


TAMPERS = {
    "type": lambda d: d.__setitem__("type", "app.other"),
    "payload": lambda d: d["payload"].__setitem__("n", 2),
    "payload-added-key": lambda d: d["payload"].__setitem__("evil", True),
    "sender.ip": lambda d: d["sender"].__setitem__("ip", "10.6.6.6"),
    "sender.port": lambda d: d["sender"].__setitem__("port", 1),
    "sender.pubkey": lambda d: d["sender"].__setitem__("pubkey", OTHER.public_key_hex),
    "ts": lambda d: d.__setitem__("ts", d["ts"] + 1),
    "nonce": lambda d: d.__setitem__("nonce", "0" * 32),
    "sig": lambda d: d.__setitem__("sig", KEY.sign(b"something else").hex()),
}


@pytest.mark.parametrize("field", sorted(TAMPERS))
def test_each_field_tampered_is_rejected(clock, verifier, field) -> None:
    doc = make(clock)
    TAMPERS[field](doc)
    with pytest.raises(BadSignature):
        verifier.verify(envelope.encode(doc))
    assert verifier.counters["bad_signature"] == 1
    assert verifier.counters["accepted"] == 0


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("nonce"),
        lambda d: d.__setitem__("extra", 1),
        lambda d: d.__setitem__("v", 1),
        lambda d: d.pop("to"),
        lambda d: d.__setitem__("to", "someone"),
        lambda d: d.__setitem__("to", "*:123456"),
        lambda d: d.__setitem__("ts", "now"),
        lambda d: d.__setitem__("sender", "me"),
        lambda d: d["sender"].__setitem__("pubkey", "zz" * 33),
        lambda d: d.__setitem__("sig", "not hex"),
        lambda d: d.__setitem__("type", ""),
    ],
)
def test_structural_damage_is_malformed(clock, verifier, mutate) -> None:
    doc = make(clock)
    mutate(doc)
    with pytest.raises(Malformed):
        verifier.verify(wire(doc))
    assert verifier.counters["malformed"] == 1


def test_non_canonical_text_is_malformed(clock, verifier) -> None:
    doc = make(clock)
    with pytest.raises(Malformed, match="canonical"):
        verifier.verify(json.dumps(doc))  # spaces after separators
    dup = envelope.encode(doc).replace(b'{"nonce"', b'{"nonce":"' + b"0" * 32 + b'","nonce"', 1)
    with pytest.raises(Malformed):
        verifier.verify(dup)


def test_replay_rejected(clock, verifier) -> None:
    wire = envelope.encode(make(clock))
    verifier.verify(wire)
    with pytest.raises(Replay):
        verifier.verify(wire)
    assert verifier.counters["replay"] == 1


def test_stale_and_future(clock, verifier) -> None:
    old = make(clock)
    clock.advance(30_001)
    with pytest.raises(Stale):
        verifier.verify(old)
    future = make(clock)
    clock.advance(-30_001)
    with pytest.raises(FutureDated):
        verifier.verify(future)
    assert verifier.counters["stale"] == 1 and verifier.counters["future_dated"] == 1


def test_edges_of_the_window_accepted(clock) -> None:
    verifier = Verifier(clock, window_ms=5_000)
    early = make(clock)
    clock.advance(5_000)
    verifier.verify(early)
    late = make(clock)
    clock.advance(-5_000)
    verifier.verify(late)


def test_wrong_signer_and_wrong_type(clock, verifier) -> None:
    with pytest.raises(WrongSigner):
        verifier.verify(make(clock, key=OTHER), expected_signer=KEY.public_key_hex)
    with pytest.raises(WrongType):
        verifier.verify(make(clock), expected_type={"tree.join", "tree.hb"})
    env = verifier.verify(make(clock), expected_signer=[OTHER.public_key_hex, KEY.public_key_hex])
    assert env.signer == KEY.public_key_hex


def test_too_large(clock) -> None:
    verifier = Verifier(clock, max_bytes=1000)
    with pytest.raises(TooLarge):
        verifier.verify(envelope.encode(make(clock, {"blob": "x" * 2000})))
    with pytest.raises(TooLarge):
        verifier.verify(make(clock, {"blob": "x" * 2000}))
    assert verifier.counters["too_large"] == 2


def test_floats_cannot_be_signed(clock) -> None:
    with pytest.raises(canonical.CanonicalError):
        make(clock, {"price": 1.5})


def test_rejections_summary_lists_every_reason(clock, verifier) -> None:
    with pytest.raises(Malformed):
        verifier.verify(b"{")
    summary = verifier.rejected()
    assert summary["malformed"] == 1
    assert set(summary) == set(envelope.REASONS)


def test_replay_cache_stays_bounded_and_never_accepts_a_replay(clock) -> None:
    verifier = Verifier(clock, replay_capacity=50)
    sent = []
    for _ in range(200):
        clock.advance(1)
        wire = envelope.encode(make(clock))
        verifier.verify(wire)
        sent.append(wire)
        assert len(verifier.replay) <= 50
    for wire in sent:  # every one of them, evicted or not, is refused the second time
        with pytest.raises(Replay):
            verifier.verify(wire)


def test_replay_cache_forgets_expired_entries() -> None:
    cache = ReplayCache(capacity=10)
    cache.admit("a", "n", 100, 100, window_ms=1000)
    assert cache.entries() == 1
    cache.expire(older_than_ms=101)
    assert cache.entries() == 0


# --- fuzzing: nothing but the typed errors, ever ---

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=1000)
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400)))
def test_fuzz_bytes_and_text(data) -> None:
    verifier = Verifier(ManualClock())
    with pytest.raises(EnvelopeError):
        verifier.verify(data)


@settings(max_examples=1000)
@given(json_values)
def test_fuzz_json_values(value) -> None:
    verifier = Verifier(ManualClock())
    for form in (value, json.dumps(value), wire(value)):
        try:
            verifier.verify(form)
        except EnvelopeError:
            pass
    assert verifier.counters["accepted"] == 0


ENVELOPE_KEYS = st.sampled_from(["v", "type", "payload", "sender", "ts", "nonce", "sig", "ip", "port", "pubkey"])


@settings(max_examples=1000)
@given(st.data())
def test_fuzz_mutated_valid_envelopes(data) -> None:
    clock = ManualClock()
    verifier = Verifier(clock)
    doc = make(clock)
    target = data.draw(st.sampled_from(["top", "sender", "payload"]))
    where = doc if target == "top" else doc[target]
    key = data.draw(ENVELOPE_KEYS)
    if data.draw(st.booleans()):
        where[key] = data.draw(json_values)
    else:
        where.pop(key, None)
    try:
        env = verifier.verify(wire(doc))
    except EnvelopeError:
        return
    # only an untouched signed content may pass
    assert env.payload == {"n": 1} and env.signer == KEY.public_key_hex


# --- issue 15 item 4: the replay cache cannot be turned against other senders ---

ATTACKER = SigningKey.generate()


def test_future_dated_flood_from_one_key_does_not_refuse_honest_fresh_messages(clock) -> None:
    """The attack: fill the cache with envelopes dated +30 s; every honest fresh message was a 'Replay'."""
    verifier = Verifier(clock, replay_capacity=1000)
    clock.advance(29_000)  # the attacker signs with a clock up to 30 s ahead, inside the window
    flood = []
    for i in range(3000):
        clock.advance(0 if i % 3 else 1)
        flood.append(envelope.encode(make(clock, {"i": i}, key=ATTACKER)))
    clock.advance(-30_000)
    for wire in flood:
        try:
            verifier.verify(wire)  # each one is valid, and future-dated within the window
        except Replay:
            pass  # the attacker's own floor rose: it may refuse only the attacker's messages
    assert verifier.counters["accepted"] >= 1000  # the cache was filled far past its capacity
    for _ in range(20):
        clock.advance(5)
        verifier.verify(make(clock))  # honest and fresh: accepted (was Replay: the global floor)
        verifier.verify(make(clock, key=OTHER))
    assert verifier.counters["accepted"] >= 1040
    assert verifier.replay.entries() <= 1000
    for wire in flood:  # and the flood itself can never be replayed
        with pytest.raises(Replay):
            verifier.verify(wire)


def test_sybil_flood_does_not_refuse_known_senders_and_never_accepts_a_replay(clock) -> None:
    verifier = Verifier(clock, replay_capacity=1000)
    honest_old = envelope.encode(make(clock))  # the honest key is known before the flood
    verifier.verify(honest_old)
    clock.advance(30_000)
    keys = [SigningKey.generate() for _ in range(600)]  # far more keys than buckets + floors (125 + 250)
    flood = [envelope.encode(make(clock, {"k": i}, key=k)) for k in keys for i in range(2)]
    clock.advance(-30_000)
    accepted = [honest_old]
    for wire in flood:
        try:
            verifier.verify(wire)
            accepted.append(wire)
        except (Replay, envelope.ReplayCacheFull):
            pass  # an attacker key's own floor, or past the bounds a newcomer refused: typed, counted
    assert verifier.counters["replay_cache_full"] > 0  # the bounds were reached
    clock.advance(10)
    for _ in range(5):
        clock.advance(1)
        verifier.verify(make(clock))  # the known honest key still gets through, fresh every time
    assert verifier.replay.entries() <= 1000
    assert verifier.replay.signers() <= verifier.replay.max_signers
    assert verifier.replay.floors() <= verifier.replay.max_floors
    for wire in accepted:  # evicted or not, nothing accepted is accepted twice
        with pytest.raises(Replay):
            verifier.verify(wire)


def test_replays_refused_after_pressure_from_many_keys(clock) -> None:
    """Each signer evicted under pressure keeps a floor: its old envelopes stay refused."""
    verifier = Verifier(clock, replay_capacity=200)
    sent = []
    keys = [SigningKey.generate() for _ in range(60)]  # more than the 25 buckets, fewer than buckets + floors
    for k in keys:
        for _ in range(3):
            clock.advance(1)
            wire = envelope.encode(make(clock, key=k))
            verifier.verify(wire)
            sent.append(wire)
        assert verifier.replay.entries() <= 200
    assert verifier.counters["replay_cache_full"] == 0
    assert verifier.replay.signers() < 60 and verifier.replay.floors() > 0  # evicted signers kept as floors
    for wire in sent:
        with pytest.raises(Replay):
            verifier.verify(wire)


def test_replay_cache_memory_bound_holds(clock) -> None:
    cache = ReplayCache(capacity=100, per_signer=10, max_signers=8, max_floors=8)
    now = clock.now_ms()
    for i in range(5000):
        signer = f"s{i % 40}"
        try:
            cache.admit(signer, f"n{i}", now + (i % 7) * 1000, now, window_ms=30_000)
        except (Replay, envelope.ReplayCacheFull):
            pass
        assert cache.entries() <= 100
        assert cache.signers() <= 8 and cache.floors() <= 8
        assert max((len(b.seen) for b in cache._buckets.values()), default=0) <= 10
        assert cache.garbage() <= 2 * 8 + 16


def test_one_signer_over_its_cap_raises_only_its_own_floor(clock) -> None:
    cache = ReplayCache(capacity=1000, per_signer=4, max_signers=10, max_floors=10)
    now = clock.now_ms()
    for i in range(10):
        cache.admit("attacker", f"a{i}", now + 29_990 + i, now, window_ms=30_000)
    with pytest.raises(Replay):  # its own floor rose to +30 s
        cache.admit("attacker", "fresh", now, now, window_ms=30_000)
    cache.admit("honest", "h1", now, now, window_ms=30_000)


def test_an_expired_signer_is_forgotten(clock) -> None:
    cache = ReplayCache(capacity=10)
    cache.admit("a", "n", 100, 100, window_ms=1000)
    cache.expire(older_than_ms=101)
    assert cache.entries() == 0 and cache.signers() == 0


# --- issue 15 item 10: the depth limit holds on the wire path ---


def _signed_unchecked(clock: ManualClock, payload) -> bytes:
    """A validly signed envelope whose payload sign() itself would refuse (an attacker's own signer)."""
    body = {
        "v": envelope.VERSION,
        "type": "app.test",
        "payload": payload,
        "sender": {"ip": "127.0.0.2", "port": 13350, "pubkey": ATTACKER.public_key_hex},
        "to": "",
        "ts": clock.now_ms(),
        "nonce": "ab" * 16,
    }
    body["sig"] = ATTACKER.sign(canonical.encode_unchecked(body)).hex()
    return canonical.encode_unchecked(body)


@pytest.mark.parametrize("depth", [34, 400])
def test_deep_payload_refused_on_the_wire_path(clock, verifier, depth) -> None:
    deep: object = 1
    for _ in range(depth):
        deep = [deep]
    with pytest.raises(Malformed, match="deep"):
        verifier.verify(_signed_unchecked(clock, deep))
    assert verifier.counters["accepted"] == 0


def test_payload_at_the_depth_limit_accepted(clock, verifier) -> None:
    deep: object = 1
    for _ in range(canonical.MAX_DEPTH - 2):  # envelope -> payload -> ... -> 1 at depth MAX_DEPTH
        deep = [deep]
    canonical.check({"payload": deep})
    verifier.verify(_signed_unchecked(clock, deep))


# ------------------------------------------------------------------ recipients (issue 15, item 4)

NODE_X, NODE_Y = SigningKey.generate().public_key_hex, SigningKey.generate().public_key_hex


def cell_verifier(clock: ManualClock, node: str, port: int) -> Verifier:
    """A cell's verifier: its own replay cache, answering to its node key on its port."""
    v = Verifier(clock)
    v.answer_to(node, (port,))
    return v


def test_a_message_for_one_cell_cannot_be_replayed_to_another(clock) -> None:
    """The capture-and-replay attack: each cell has its own replay cache, so before the signed
    ``to`` a message accepted by one cell was fresh for every other cell and node."""
    shard_x, registry_x, shard_y = (
        cell_verifier(clock, NODE_X, 13355),
        cell_verifier(clock, NODE_X, 13421),
        cell_verifier(clock, NODE_Y, 13355),
    )
    captured = sign_bytes(KEY, "app.test", {"n": 1}, clock, to=envelope.address(NODE_X, 13355))
    assert shard_x.verify(captured).to == envelope.address(NODE_X, 13355)
    for other in (registry_x, shard_y):
        with pytest.raises(envelope.WrongRecipient):
            other.verify(captured)
        assert other.counters["wrong_recipient"] == 1 and other.counters["accepted"] == 0
    with pytest.raises(envelope.Replay):
        shard_x.verify(captured)


def test_a_cell_refuses_an_unaddressed_message_unless_told(clock) -> None:
    v = cell_verifier(clock, NODE_X, 13355)
    with pytest.raises(envelope.Unaddressed):
        v.verify(sign_bytes(KEY, "app.test", {}, clock))
    assert v.verify(sign_bytes(KEY, "net.hello", {}, clock), unaddressed=True).to == ""
    assert v.rejected()["unaddressed"] == 1


def test_a_refused_recipient_does_not_use_up_the_nonce(clock) -> None:
    """The recipient is checked before the replay cache admits the nonce."""
    v = cell_verifier(clock, NODE_X, 13355)
    body = make(clock)
    body["to"] = envelope.address(NODE_Y, 13355)
    with pytest.raises(envelope.WrongRecipient):
        v.verify(envelope.encode(_resign(body)))
    assert v.replay.entries() == 0


def test_broadcasts_only_for_the_types_a_caller_names_and_only_on_our_ports(clock) -> None:
    v = cell_verifier(clock, NODE_X, 13361)
    to_all = sign_bytes(KEY, "tree.broadcast", {"k": "x"}, clock, to=envelope.everyone(13361))
    with pytest.raises(envelope.WrongRecipient):
        v.verify(to_all)  # a broadcast where the caller takes none
    assert v.verify(to_all, broadcast_types=("tree.broadcast",)).to == "*:13361"
    elsewhere = sign_bytes(KEY, "tree.broadcast", {"k": "x"}, clock, to=envelope.everyone(13355))
    with pytest.raises(envelope.WrongRecipient):
        v.verify(elsewhere, broadcast_types=("tree.broadcast",))  # every cell of another type


def test_an_offline_verifier_checks_no_recipient(clock) -> None:
    """The CLI's ``envelope verify`` answers to no address: it checks signatures, not routing."""
    assert Verifier(clock).verify(sign_bytes(KEY, "app.test", {}, clock, to=envelope.address(NODE_Y, 1))).type


def test_sign_refuses_a_recipient_that_is_not_one(clock) -> None:
    for bad in ("someone", "02ab:1", "*:", "*:123456", envelope.address(NODE_X, 1) + " "):
        with pytest.raises(ValueError):
            envelope.sign(KEY, "app.test", {}, clock, to=bad)


def _resign(body: dict) -> dict:
    body = {k: v for k, v in body.items() if k != "sig"}
    body["sig"] = KEY.sign(canonical.encode_unchecked(body)).hex()
    return body
