"""Root pointers: only the owner's signature counts, a higher seq wins, holders stay bounded."""

from __future__ import annotations

import hashlib

import pytest

from borgusb import canonical
from borgusb.files.errors import BadSignature, Malformed, TooLarge
from borgusb.files.root import Full, RateLimited, RootStore, Stale, holders, make_root, newest, parse_root, quorum
from borgusb.keys import SigningKey

OWNER = SigningKey(hashlib.sha256(b"root owner").digest())
EVE = SigningKey(hashlib.sha256(b"root eve").digest())
F, R1, R2 = "aa" * 32, "bb" * 32, "cc" * 32


def test_roundtrip_and_forgery() -> None:
    p = make_root(OWNER, seq=1, folder=F, root=R1, ts=5)
    assert parse_root(p.encode()) == p
    doc = canonical.loads(p.encode())
    with pytest.raises(BadSignature):  # the owner field means nothing without the owner's signature
        parse_root(canonical.dumps(dict(doc, root=R2)))
    eve = make_root(EVE, seq=9, folder=F, root=R2, ts=5)
    with pytest.raises(BadSignature):
        parse_root(canonical.dumps(dict(canonical.loads(eve.encode()), owner=OWNER.public_key_hex)))
    for bad in (dict(doc, seq=0), dict(doc, root="x"), dict(doc, v=2), {**doc, "extra": 1}):
        with pytest.raises(Malformed):
            parse_root(canonical.dumps(bad))
    with pytest.raises(TooLarge):
        parse_root(b" " * 2000)


def test_higher_seq_wins_and_a_second_write_at_one_seq_is_refused() -> None:
    store = RootStore()
    p1 = make_root(OWNER, seq=1, folder=F, root=R1, ts=5)
    p2 = make_root(OWNER, seq=2, folder=F, root=R2, ts=6)
    store.offer(0, p2.encode())
    with pytest.raises(Stale):
        store.offer(1, p1.encode())
    assert store.get(OWNER.public_key_hex) == p2
    assert store.offer(2, p2.encode()) == p2  # the same write again: kept, not refused
    a = make_root(OWNER, seq=3, folder=F, root=R1, ts=7)
    b = make_root(OWNER, seq=3, folder=F, root=R2, ts=7)
    store.offer(3, a.encode())
    with pytest.raises(Stale):  # a second write at the same seq never replaces the first silently
        store.offer(4, b.encode())
    assert store.get(OWNER.public_key_hex) == a
    assert store.refused["stale"] == 2
    # readers: the highest seq; at an equal seq the pointer most holders keep, the id last
    assert newest([a, b, b]) == b and newest([a, a, b]) == a and newest([a, p2, b]) == max(a, b, key=lambda p: p.id)
    assert newest([]) is None and quorum(3) == 2 and quorum(2) == 2 and quorum(5) == 3


def test_bounds_rate_limit_and_counts() -> None:
    store = RootStore(max_owners=1, burst=2, refill_ms=1000)
    store.offer(0, make_root(OWNER, seq=1, folder=F, root=R1, ts=0).encode())
    store.offer(0, make_root(OWNER, seq=2, folder=F, root=R1, ts=0).encode())
    with pytest.raises(RateLimited):
        store.offer(10, make_root(OWNER, seq=3, folder=F, root=R1, ts=0).encode())
    store.offer(1010, make_root(OWNER, seq=3, folder=F, root=R1, ts=0).encode())  # one more after refill_ms
    with pytest.raises(Full):
        store.offer(2000, make_root(EVE, seq=1, folder=F, root=R1, ts=0).encode())
    with pytest.raises(Malformed):
        store.offer(2000, b"{")
    assert store.refused == {"rate_limited": 1, "full": 1, "malformed": 1}
    assert len(store) == 1 and store.get(OWNER.public_key_hex).seq == 3  # type: ignore[union-attr]
    fresh = RootStore()
    for data in store.dump():
        fresh.offer(0, data)
    assert fresh.get(OWNER.public_key_hex) == store.get(OWNER.public_key_hex)


def test_holders_are_the_lottery_winners_for_the_key() -> None:
    members = [f"127.0.0.{i}" for i in range(1, 12)]
    h = holders(OWNER.public_key_hex, members, 3)
    assert len(h) == 3 and set(h) <= set(members)
    assert holders(OWNER.public_key_hex, reversed(members), 3) == h  # same from any view of the same members
    assert holders(EVE.public_key_hex, members, 11) != holders(OWNER.public_key_hex, members, 11)
