"""The order book: the same fills from any arrival order, the matching rules, the acceptance bounds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from borgusb.exchange import book as bk
from borgusb.exchange.book import FRESH_MS, RELAY_MS, SETTLE_MS, Book, match
from borgusb.exchange.order import Cancel, Order, sign_cancel, sign_order
from borgusb.keys import SigningKey
from borgusb.ledger.errors import LedgerError

SHELL = 10**8
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(3)]
T0 = 1_764_000_000_000


def order(k: int, side: str, shells: int, price: int, dt: int, life: int = 600_000, n: int = 0) -> Order:
    return sign_order(
        KEYS[k], side=side, amount=shells * SHELL, price=price, ts=T0 + dt, expiry=T0 + dt + life, nonce=bytes([n]) * 16
    )


def cancel(k: int, o: Order, dt: int) -> Cancel:
    return sign_cancel(KEYS[k], order=o.id, ts=T0 + dt, nonce=b"\x07" * 16)


def fills_of(events: list, now: int = T0 + 1000) -> list[dict]:
    b = Book()
    for ev in events:
        b.add(ev, now)
    return [f.to_dict() for f, _ in b.fills()]


events_strategy = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from(["buy", "sell"]),
        st.integers(1, 5),
        st.integers(95, 105),
        st.integers(0, 20),
        st.sampled_from([600_000, 5]),
        st.booleans(),
    ),
    min_size=1,
    max_size=14,
)


@given(events_strategy, st.randoms(use_true_random=False))
def test_same_fills_from_every_arrival_order(spec: list, rnd: random.Random) -> None:
    events: list = []
    for n, (k, side, shells, price, dt, life, cancelled) in enumerate(spec):
        o = order(k, side, shells, price, dt, life, n)
        events.append(o)
        if cancelled:
            events.append(cancel(k, o, dt + rnd.randint(-3, 10)))
    reference = [f.to_dict() for f in match(events)]
    for _ in range(4):
        shuffled = events[:]
        rnd.shuffle(shuffled)
        assert fills_of(shuffled) == reference


@given(events_strategy, st.randoms(use_true_random=False))
def test_checkpoints_change_no_fill(spec: list, rnd: random.Random) -> None:
    """A replica that folds settled events into its checkpoint as time passes has the same fills."""
    events: list = []
    for n, (k, side, shells, price, dt, life, cancelled) in enumerate(spec):
        o = order(k, side, shells, price, dt * 10_000, life, n)
        events.append(o)
        if cancelled:
            events.append(cancel(k, o, dt * 10_000 + rnd.randint(-3, 30_000)))
    b = Book()
    for ev in sorted(events, key=lambda e: e.ts):
        b.advance(ev.ts)
        b.add(ev, ev.ts)
    b.advance(T0 + 300_000 + SETTLE_MS)
    assert [f.to_dict() for f, _ in b.fills()] == [f.to_dict() for f in match(events)]
    assert all(final for _, final in b.fills()) and not b.pending


def test_price_time_priority_partial_fills_at_the_makers_price() -> None:
    a = order(0, "sell", 3, 100, 0)
    b = order(1, "sell", 2, 99, 1)
    c = order(0, "sell", 4, 100, 2, n=1)
    taker = order(2, "buy", 6, 101, 3)
    fills = match([taker, c, a, b])
    assert [(f.maker, f.amount, f.price) for f in fills] == [
        (b.id, 2 * SHELL, 99),
        (a.id, 3 * SHELL, 100),
        (c.id, SHELL, 100),
    ]
    assert [f.koinu for f in fills] == [198, 300, 100]
    assert all(f.buyer == KEYS[2].public_key_hex and f.taker == taker.id for f in fills)
    book = Book()
    for ev in (a, b, c, taker):
        book.add(ev, T0)
    assert [(o.id, left) for o, left in book.resting(T0)] == [(c.id, 3 * SHELL)]


def test_self_trade_prevention_drops_the_newer_remainder() -> None:
    mine = order(0, "sell", 2, 100, 0)
    other = order(1, "sell", 2, 101, 1)
    cross = order(0, "buy", 5, 105, 2)
    assert match([mine, other, cross]) == []
    book = Book()
    for ev in (mine, other, cross):
        book.add(ev, T0)
    assert {o.id for o, _ in book.resting(T0)} == {mine.id, other.id}


def test_expired_and_cancelled_orders_never_match() -> None:
    short = order(0, "sell", 1, 100, 0, life=5)
    gone = order(1, "sell", 1, 100, 1)
    early = order(1, "sell", 1, 100, 2, n=3)
    taker = order(2, "buy", 3, 100, 10)
    evs: list[Order | Cancel] = [short, gone, cancel(1, gone, 4), early, cancel(1, early, 1), taker]
    assert match(evs) == []
    forged = sign_cancel(KEYS[2], order=gone.id, ts=T0 + 4, nonce=b"\x01" * 16)  # not the owner's: ignored
    assert [f.maker for f in match([gone, forged, taker])] == [gone.id]


def test_an_owner_rests_at_most_its_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bk, "MAX_OPEN_PER_OWNER", 2)
    mine = [order(0, "sell", 1, 100 + i, i, n=i) for i in range(3)]
    taker = order(1, "buy", 3, 200, 10)
    assert [f.maker for f in match([*mine, taker])] == [mine[0].id, mine[1].id]


def test_acceptance_windows_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    b = Book()
    now = T0 + FRESH_MS + 1
    with pytest.raises(LedgerError) as info:
        b.add(order(0, "buy", 1, 1, 0), now)
    assert info.value.reason == "stale"
    assert b.add(order(0, "buy", 1, 1, 0), now, relayed=True)  # from a replica: within RELAY_MS
    assert not b.add(order(0, "buy", 1, 1, 0), now, relayed=True)  # known: not taken twice
    with pytest.raises(LedgerError) as info:
        b.add(order(0, "buy", 1, 1, 0, n=1), T0 + RELAY_MS + 1, relayed=True)
    assert info.value.reason == "stale"
    with pytest.raises(LedgerError) as info:
        b.add(order(0, "buy", 1, 1, FRESH_MS + 1, n=2), T0)
    assert info.value.reason == "future_dated"
    b.advance(T0 + SETTLE_MS + 5)  # the horizon passed T0: nothing dated before it is taken again
    with pytest.raises(LedgerError) as info:
        b.add(order(0, "buy", 1, 1, 0, n=3), T0 + 60_000, relayed=True)
    assert info.value.reason == "stale"
    monkeypatch.setattr(bk, "MAX_PENDING_PER_OWNER", 2)
    b = Book()
    b.add(order(0, "buy", 1, 1, 0), T0)
    b.add(order(0, "buy", 1, 1, 0, n=1), T0)
    with pytest.raises(LedgerError) as info:
        b.add(order(0, "buy", 1, 1, 0, n=2), T0)
    assert info.value.reason == "book_full"
    assert b.add(order(1, "buy", 1, 1, 0), T0)  # another owner is not held back
    assert b.digest() == sorted(b.pending)
