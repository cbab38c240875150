"""Settlement of one fill: the atomic swap as a pure state machine (events in, actions out).

The standard hash-time-locked swap, both legs locked by one secret's SHA-256:

1. The **seller** of Shells (the initiator) draws a 32-byte secret and locks the
   fill's Shells on the ledger to the buyer under its hash, refundable after
   ``t1 = now + shell_lock_ms`` (the longer timeout).
2. The **buyer** checks that lock (amount, hash, claimant, and that its expiry
   leaves ``doge_lock_ms + margin_ms``), then pays the fill's koinu into a P2SH
   HTLC claimable by the seller's key with the secret, refundable by the buyer
   after ``t2 = now + doge_lock_ms`` (the shorter timeout, ``t2 + margin_ms <= t1``).
3. The seller, once that output has `SwapTimes.confirmations`, claims it,
   which publishes the secret on the Dogecoin chain.
4. The buyer reads the secret from that claim and claims the Shells before ``t1``.

Timeouts: a buyer who never locks costs the seller only time (Shells refunded at
``t1``); a seller who vanishes after the buyer locked leaves the buyer refunded at
``t2`` and the seller's Shells refunded at ``t1`` if the seller comes back; a
seller who claims at the last moment before ``t2`` leaves the buyer ``margin_ms``
to claim on the ledger. An honest seller never refunds once it has claimed the
Doge, and an honest buyer never locks Doge on a lock that expires too soon.

`SellerSwap` and `BuyerSwap` take `now_ms` and observed events and return actions;
the cell carries the actions out (PayClient, DogeNodeClient) and feeds back what
it sees. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

HOUR_MS = 3600_000

State = Literal[
    "start", "shells_locked", "doge_locked", "doge_claimed", "shells_claimed", "refunded", "abandoned", "done"
]


@dataclass(frozen=True, slots=True)
class SwapTimes:
    """The swap's timeouts (network ms). Defaults: 48 h for the Shell lock, 24 h for the Doge lock,
    12 h between them, 6 confirmations (about 6 minutes of Dogecoin blocks)."""

    shell_lock_ms: int = 48 * HOUR_MS
    doge_lock_ms: int = 24 * HOUR_MS
    margin_ms: int = 12 * HOUR_MS
    lock_wait_ms: int = 2 * HOUR_MS  # how long a side waits for the other's lock before giving up
    confirmations: int = 6

    def __post_init__(self) -> None:
        if min(self.doge_lock_ms, self.margin_ms, self.lock_wait_ms) <= 0 or self.confirmations < 0:
            raise ValueError("timeouts are positive")
        if self.doge_lock_ms + self.margin_ms + self.lock_wait_ms > self.shell_lock_ms:
            raise ValueError("the Shell lock must outlast the wait, the Doge lock and the margin")


@dataclass(frozen=True, slots=True)
class Terms:
    """What both sides agreed in the fill: who, how much of each, and the fill's id."""

    fill: str
    seller: str
    buyer: str
    amount: int  # Shell units
    koinu: int


# ---------------------------------------------------------------- events (what the cell observed)


@dataclass(frozen=True, slots=True)
class ShellsLocked:
    """A certified ledger lock: `amount` units from `payer` to `claimant` under `hash`, refundable at `expiry`."""

    lock: str
    payer: str
    claimant: str
    amount: int
    hash: str
    expiry: int


@dataclass(frozen=True, slots=True)
class DogeLocked:
    """A P2SH HTLC output paying `koinu` to `claimant`'s key under `hash`, refundable at `expiry`."""

    outpoint: str
    claimant: str
    koinu: int
    hash: str
    expiry: int
    confirmations: int


@dataclass(frozen=True, slots=True)
class SecretSeen:
    """A secret read from a claim (on either chain)."""

    secret: bytes


@dataclass(frozen=True, slots=True)
class Resolved:
    """One of this side's own actions took effect (`what` names it: the lock, claim or refund)."""

    what: Literal["lock", "claim", "refund"]


Event = ShellsLocked | DogeLocked | SecretSeen | Resolved

# ---------------------------------------------------------------- actions (what the cell must do)


@dataclass(frozen=True, slots=True)
class LockShells:
    to: str
    amount: int
    hash: str
    expiry: int


@dataclass(frozen=True, slots=True)
class LockDoge:
    claimant: str
    koinu: int
    hash: str
    expiry: int


@dataclass(frozen=True, slots=True)
class ClaimDoge:
    outpoint: str
    secret: bytes


@dataclass(frozen=True, slots=True)
class ClaimShells:
    lock: str
    secret: bytes


@dataclass(frozen=True, slots=True)
class RefundShells:
    lock: str


@dataclass(frozen=True, slots=True)
class RefundDoge:
    outpoint: str


Action = LockShells | LockDoge | ClaimDoge | ClaimShells | RefundShells | RefundDoge


def secret_hash(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()


class SellerSwap:
    """The initiator: holds the secret, locks Shells first, claims the Doge."""

    def __init__(self, terms: Terms, times: SwapTimes, secret: bytes, now_ms: int) -> None:
        if len(secret) != 32:
            raise ValueError("the secret is 32 bytes")
        self.terms, self.times, self.secret = terms, times, secret
        self.hash = secret_hash(secret)
        self.state: State = "start"
        self.t1 = now_ms + times.shell_lock_ms
        self.lock = ""  # the ledger lock's id, once certified
        self.outpoint = ""
        self.why = ""

    def begin(self) -> list[Action]:
        return [LockShells(self.terms.buyer, self.terms.amount, self.hash, self.t1)]

    def on_event(self, now_ms: int, ev: Event) -> list[Action]:
        if isinstance(ev, ShellsLocked) and self.state == "start":
            t = self.terms
            if (ev.payer, ev.claimant, ev.amount, ev.hash) == (t.seller, t.buyer, t.amount, self.hash):
                self.state, self.lock, self.t1 = "shells_locked", ev.lock, ev.expiry
        elif isinstance(ev, DogeLocked) and self.state == "shells_locked":
            ok = (ev.claimant, ev.koinu, ev.hash) == (self.terms.seller, self.terms.koinu, self.hash)
            # claim only with time to spare before the buyer may refund (a race the seller could lose)
            if ok and ev.confirmations >= self.times.confirmations and now_ms < ev.expiry - self.times.margin_ms // 2:
                self.state, self.outpoint = "doge_locked", ev.outpoint
                return [ClaimDoge(ev.outpoint, self.secret)]
        elif isinstance(ev, Resolved):
            if ev.what == "claim" and self.state == "doge_locked":
                self.state = "done"
            elif ev.what == "refund" and self.state == "shells_locked":
                self.state = "refunded"
        return self.on_tick(now_ms)

    def on_tick(self, now_ms: int) -> list[Action]:
        """Timeouts: the Shells go back once the lock has expired and the Doge was never claimed."""
        if self.state == "shells_locked" and now_ms >= self.t1:
            self.why = "the buyer's Doge was not claimed before the Shell lock expired"
            return [RefundShells(self.lock)]
        return []


class BuyerSwap:
    """The responder: locks Doge on a good Shell lock, claims the Shells with the revealed secret."""

    def __init__(self, terms: Terms, times: SwapTimes, now_ms: int) -> None:
        self.terms, self.times = terms, times
        self.state: State = "start"
        self.give_up_at = now_ms + times.lock_wait_ms
        self.lock = ""
        self.outpoint = ""
        self.hash = ""
        self.t1 = 0
        self.t2 = 0
        self.why = ""

    def on_event(self, now_ms: int, ev: Event) -> list[Action]:
        t = self.terms
        if isinstance(ev, ShellsLocked) and self.state == "start":
            if (ev.payer, ev.claimant, ev.amount) != (t.seller, t.buyer, t.amount):
                return []  # another lock: not this fill's
            t2 = now_ms + self.times.doge_lock_ms
            if t2 + self.times.margin_ms > ev.expiry:
                self.state, self.why = "abandoned", "the Shell lock expires too soon to lock Doge safely"
                return []
            self.state, self.lock, self.hash, self.t1, self.t2 = "shells_locked", ev.lock, ev.hash, ev.expiry, t2
            return [LockDoge(t.seller, t.koinu, ev.hash, t2)]
        if isinstance(ev, DogeLocked) and self.state == "shells_locked" and ev.hash == self.hash:
            self.state = "doge_locked"
            self.outpoint = ev.outpoint
        elif isinstance(ev, SecretSeen) and self.state in ("shells_locked", "doge_locked"):
            if secret_hash(ev.secret) == self.hash and now_ms < self.t1:
                self.state = "doge_claimed"
                return [ClaimShells(self.lock, ev.secret)]
        elif isinstance(ev, Resolved):
            if ev.what == "claim" and self.state == "doge_claimed":
                self.state = "done"
            elif ev.what == "refund" and self.state == "doge_locked":
                self.state = "refunded"
        return self.on_tick(now_ms)

    def on_tick(self, now_ms: int) -> list[Action]:
        """Timeouts: give up on a seller who never locked; take the Doge back after ``t2``."""
        if self.state == "start" and now_ms >= self.give_up_at:
            self.state, self.why = "abandoned", "the seller did not lock the Shells in time"
        elif self.state == "doge_locked" and now_ms >= self.t2:
            self.why = "the seller did not claim the Doge before its lock expired"
            return [RefundDoge(self.outpoint)]
        return []
