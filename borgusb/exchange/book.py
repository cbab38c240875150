"""The replicated order book: deterministic price-time matching of a set of signed events.

**Determinism.** The fills are a pure function of the *set* of accepted orders and
cancels, whatever order they arrived in: events are processed sorted by ``(ts, id)``
(the owner's signed network time, then the event's id), each against the book as the
earlier events left it. An incoming order matches the best opposite price first (the
lowest ask for a buy, the highest bid for a sell), and among equal prices the earliest
``(ts, id)``; a fill is at the resting (maker) order's price. Partial fills leave the
remainder resting; a remainder below `MIN_AMOUNT` is dropped (it could not be matched
on its own). **Self-trade prevention**: an order that reaches a resting order of its own
owner stops there and its remainder is dropped ("cancel newest"), so the book never
crosses. An order expires at its ``expiry``: from then on it neither matches nor rests.
A cancel takes its owner's order out of the book from the cancel's ``ts`` on (a cancel
dated before its order cancels it before it rests); a cancel signed by anyone else is
ignored. An owner has at most `MAX_OPEN_PER_OWNER` orders resting: a further order
dated while the owner has that many is dropped (a rule of the book, so every replica
drops the same one).

**Why a late event cannot rewrite history, with the numbers.** A replica takes an
order or cancel from its owner only if it is dated within `FRESH_MS` (30 s, the
envelope window the cronoTreeCell keeps clocks within) of its own network time, and
from another replica (broadcast, anti-entropy sync) only within `RELAY_MS` = 2 x
`FRESH_MS` (60 s): one window for the owner's clock, one to spread (a broadcast takes
well under a second; a replica that missed it syncs every 2 s). A fill is **final**
only once its ``ts`` is `SETTLE_MS` = 3 x `FRESH_MS` (90 s) in the past: the third
window covers the difference between two replicas' clocks, so when one replica calls
a fill final no honest replica still takes an event dated before it. The book then
folds the events behind that horizon into a checkpoint and forgets them (`advance`),
so memory stays bounded; swaps start on final fills only (`borgusb.exchange.swap`).
"""

from __future__ import annotations

import hashlib
import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..ledger.errors import Stale
from .errors import BookFull
from .order import MIN_AMOUNT, Cancel, Order, check_fresh, koinu_for

FRESH_MS = 30_000
RELAY_MS = 2 * FRESH_MS
SETTLE_MS = 3 * FRESH_MS
MAX_OPEN_PER_OWNER = 20  # resting orders an owner may have (a matching rule)
MAX_PENDING = 5000  # events a replica keeps inside the settle window (a storage bound)
MAX_PENDING_PER_OWNER = 100  # of which one owner's
MAX_FINAL_FILLS = 1000  # final fills remembered for the pages and swaps

Event = Order | Cancel


@dataclass(frozen=True, slots=True)
class Fill:
    """`amount` Shell units from `seller` to `buyer` for `koinu` koinu, at the maker's `price`."""

    id: str
    maker: str
    taker: str
    buyer: str
    seller: str
    amount: int
    price: int
    koinu: int
    ts: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "maker": self.maker,
            "taker": self.taker,
            "buyer": self.buyer,
            "seller": self.seller,
            "amount": self.amount,
            "price": self.price,
            "koinu": self.koinu,
            "ts": self.ts,
        }


def fill_id(maker: str, taker: str) -> str:
    """A fill's id: one taker meets one maker at most once."""
    return hashlib.sha256(f"borgusb.exchange.fill:{maker}:{taker}".encode()).hexdigest()


def _key(ev: Event) -> tuple[int, str]:
    return (ev.ts, ev.id)


@dataclass
class _State:
    """The book after every event up to some time: resting orders, what is left of each, fills."""

    orders: dict[str, Order] = field(default_factory=dict)  # resting, by id
    left: dict[str, int] = field(default_factory=dict)
    bids: list[tuple[int, int, str]] = field(default_factory=list)  # (-price, ts, id), lazily cleaned
    asks: list[tuple[int, int, str]] = field(default_factory=list)  # (price, ts, id)
    by_owner: dict[str, set[str]] = field(default_factory=dict)
    early_cancels: dict[str, str] = field(default_factory=dict)  # order id -> owner, for orders not seen yet
    fills: list[Fill] = field(default_factory=list)

    def copy(self) -> _State:
        return _State(
            dict(self.orders),
            dict(self.left),
            list(self.bids),
            list(self.asks),
            {k: set(v) for k, v in self.by_owner.items()},
            dict(self.early_cancels),
            [],
        )

    def compact(self) -> None:
        """Drop the heaps' entries of orders no longer resting (they are cleaned lazily otherwise)."""
        for heap in (self.bids, self.asks):
            heap[:] = [e for e in heap if e[2] in self.orders]
            heapq.heapify(heap)

    def _remove(self, oid: str) -> None:
        order = self.orders.pop(oid)
        del self.left[oid]
        mine = self.by_owner[order.owner]
        mine.discard(oid)
        if not mine:
            del self.by_owner[order.owner]

    def apply(self, ev: Event) -> None:
        if isinstance(ev, Cancel):
            target = self.orders.get(ev.order)
            if target is None:
                self.early_cancels[ev.order] = ev.owner
            elif target.owner == ev.owner:
                self._remove(ev.order)
            return
        if self.early_cancels.pop(ev.id, None) == ev.owner:
            return
        mine = [o for o in self.by_owner.get(ev.owner, ()) if self.orders[o].expiry > ev.ts]
        if len(mine) >= MAX_OPEN_PER_OWNER:
            return
        self._match(ev)

    def _match(self, taker: Order) -> None:
        buy = taker.side == "buy"
        heap = self.asks if buy else self.bids
        left = taker.amount
        while left >= MIN_AMOUNT and heap:
            _, _, mid = heap[0]
            maker = self.orders.get(mid)
            if maker is None:
                heapq.heappop(heap)  # cancelled or filled earlier
                continue
            if maker.expiry <= taker.ts:
                heapq.heappop(heap)
                self._remove(mid)
                continue
            if (maker.price > taker.price) if buy else (maker.price < taker.price):
                break
            if maker.owner == taker.owner:
                return  # self-trade prevention: the newer order's remainder is dropped
            qty = min(left, self.left[mid])
            self.fills.append(
                Fill(
                    id=fill_id(mid, taker.id),
                    maker=mid,
                    taker=taker.id,
                    buyer=taker.owner if buy else maker.owner,
                    seller=maker.owner if buy else taker.owner,
                    amount=qty,
                    price=maker.price,
                    koinu=koinu_for(qty, maker.price),
                    ts=taker.ts,
                )
            )
            left -= qty
            self.left[mid] -= qty
            if self.left[mid] < MIN_AMOUNT:
                heapq.heappop(heap)
                self._remove(mid)
        if left >= MIN_AMOUNT:
            self.orders[taker.id] = taker
            self.left[taker.id] = left
            self.by_owner.setdefault(taker.owner, set()).add(taker.id)
            entry = (-taker.price, taker.ts, taker.id) if buy else (taker.price, taker.ts, taker.id)
            heapq.heappush(self.bids if buy else self.asks, entry)


def match(events: list[Event]) -> list[Fill]:
    """The fills of a set of events (any order): the reference the replicas agree on."""
    state = _State()
    for ev in sorted(events, key=_key):
        state.apply(ev)
    return state.fills


class Book:
    """One replica's book: a checkpoint at the settle horizon plus the events after it."""

    def __init__(self) -> None:
        self.horizon = 0  # events dated at or before it are folded into the checkpoint
        self._checkpoint = _State()
        self._final: deque[Fill] = deque(maxlen=MAX_FINAL_FILLS)
        self.pending: dict[str, Event] = {}
        self._per_owner: dict[str, int] = {}
        self._view: _State | None = None

    def add(self, ev: Event, now_ms: int, *, relayed: bool = False) -> bool:
        """Take a checked event; False if already known. Refuses `Stale`/`FutureDated` events (outside
        `FRESH_MS`, or `RELAY_MS` when `relayed`, or behind the horizon) and `BookFull`."""
        if ev.id in self.pending:
            return False
        check_fresh(ev.ts, now_ms, RELAY_MS if relayed else FRESH_MS)
        if ev.ts <= self.horizon:
            raise Stale("dated behind this replica's settled horizon")
        if len(self.pending) >= MAX_PENDING:
            raise BookFull(f"this replica keeps {MAX_PENDING} recent orders and cancels")
        if self._per_owner.get(ev.owner, 0) >= MAX_PENDING_PER_OWNER:
            raise BookFull(f"an owner has at most {MAX_PENDING_PER_OWNER} recent orders and cancels")
        self.pending[ev.id] = ev
        self._per_owner[ev.owner] = self._per_owner.get(ev.owner, 0) + 1
        self._view = None
        return True

    def advance(self, now_ms: int) -> list[Fill]:
        """Fold the events dated `SETTLE_MS` or more before `now_ms` into the checkpoint; the fills that
        became final."""
        horizon = now_ms - SETTLE_MS
        if horizon <= self.horizon:
            return []
        old = sorted((e for e in self.pending.values() if e.ts <= horizon), key=_key)
        self.horizon = horizon
        if not old:
            return []
        for ev in old:
            self._checkpoint.apply(ev)
            del self.pending[ev.id]
            n = self._per_owner[ev.owner] - 1
            if n:
                self._per_owner[ev.owner] = n
            else:
                del self._per_owner[ev.owner]
        self._checkpoint.compact()
        final = self._checkpoint.fills
        self._checkpoint.fills = []
        self._final.extend(final)
        self._view = None
        return final

    def _state(self) -> _State:
        if self._view is None:
            state = self._checkpoint.copy()
            for ev in sorted(self.pending.values(), key=_key):
                state.apply(ev)
            self._view = state
        return self._view

    def fills(self) -> list[tuple[Fill, bool]]:
        """Every fill this replica remembers, oldest first, each with whether it is final."""
        return [(f, True) for f in self._final] + [(f, False) for f in self._state().fills]

    def resting(self, now_ms: int) -> list[tuple[Order, int]]:
        """The orders resting now (not expired) with what is left of each: bids best first, then asks."""
        state = self._state()
        live = [(o, state.left[i]) for i, o in state.orders.items() if o.expiry > now_ms]
        bids = sorted((x for x in live if x[0].side == "buy"), key=lambda x: (-x[0].price, x[0].ts, x[0].id))
        asks = sorted((x for x in live if x[0].side == "sell"), key=lambda x: (x[0].price, x[0].ts, x[0].id))
        return bids + asks

    def digest(self) -> list[str]:
        """The ids of the events inside the settle window, sorted: what anti-entropy compares."""
        return sorted(self.pending)
