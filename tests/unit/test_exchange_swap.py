"""The swap state machine against a small model of both chains, for every moment either side vanishes.

The model: a ledger lock that the claimant may claim with the secret before its expiry and the
payer may refund after it; a Dogecoin HTLC output that the claimant may spend with the secret
while it is unspent and the payer may refund once its locktime has passed (as CHECKLOCKTIMEVERIFY
allows). Each side is offline during one window of time (or from some moment on, for ever); the
test runs every pair of windows on a grid and checks that every side that is online at the end
either traded or kept what it had, and that a side that vanished after locking costs the other
nothing but time."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from borgusb.exchange.swap import (
    Action,
    BuyerSwap,
    ClaimDoge,
    ClaimShells,
    DogeLocked,
    Event,
    LockDoge,
    LockShells,
    RefundShells,
    Resolved,
    SecretSeen,
    SellerSwap,
    ShellsLocked,
    SwapTimes,
    Terms,
    secret_hash,
)

TIMES = SwapTimes(shell_lock_ms=100, doge_lock_ms=40, margin_ms=30, lock_wait_ms=20, confirmations=2)
TERMS = Terms(fill="f" * 64, seller="S", buyer="B", amount=5 * 10**8, koinu=12_500_000_000)
SECRET = bytes(range(32))
END = 260
NEVER = 10**9


@dataclass
class Lock:
    payer: str
    claimant: str
    amount: int
    hash: str
    expiry: int
    at: int
    spent: str = ""  # "", "claim" or "refund"
    secret: bytes = b""
    spent_at: int = NEVER


class World:
    """Both chains, with their rules; a side's action that the rules refuse does nothing."""

    def __init__(self) -> None:
        self.shells: Lock | None = None
        self.doge: Lock | None = None

    def act(self, now: int, who: str, a: Action) -> str | None:
        if isinstance(a, LockShells) and who == "S" and self.shells is None:
            self.shells = Lock("S", a.to, a.amount, a.hash, a.expiry, now)
            return "lock"
        if isinstance(a, LockDoge) and who == "B" and self.doge is None:
            self.doge = Lock("B", a.claimant, a.koinu, a.hash, a.expiry, now)
            return "lock"
        lock = self.shells if isinstance(a, (ClaimShells, RefundShells)) else self.doge
        if lock is None or lock.spent:
            return None
        if isinstance(a, (ClaimShells, ClaimDoge)):
            if lock.claimant != who or secret_hash(a.secret) != lock.hash:
                return None
            if isinstance(a, ClaimShells) and now >= lock.expiry:  # the ledger's holders refuse late claims
                return None
            lock.spent, lock.secret, lock.spent_at = "claim", a.secret, now
            return "claim"
        if lock.payer != who or now < lock.expiry:
            return None
        lock.spent = "refund"
        return "refund"

    def seen_by(self, now: int, who: str) -> list[Event]:
        out: list[Event] = []
        s, d = self.shells, self.doge
        if s is not None:
            out.append(ShellsLocked("L", s.payer, s.claimant, s.amount, s.hash, s.expiry))
        if d is not None:
            out.append(DogeLocked("O:0", d.claimant, d.amount, d.hash, d.expiry, now - d.at))
            if who == "B" and d.spent == "claim":
                out.append(SecretSeen(d.secret))
        return out


def run(seller_off: tuple[int, int], buyer_off: tuple[int, int]) -> tuple[World, SellerSwap, BuyerSwap]:
    world = World()
    seller = SellerSwap(TERMS, TIMES, SECRET, 0)
    buyer = BuyerSwap(TERMS, TIMES, 0)
    queue: dict[str, list[Action]] = {"S": seller.begin(), "B": []}
    for now in range(END):
        for who, side, off in (("S", seller, seller_off), ("B", buyer, buyer_off)):
            if off[0] <= now < off[1]:
                continue
            actions = queue[who] + [a for ev in world.seen_by(now, who) for a in side.on_event(now, ev)]
            actions += side.on_tick(now)
            queue[who] = []
            for a in actions:
                done = world.act(now, who, a)
                if done is not None:
                    queue[who] += side.on_event(now, Resolved(done))  # type: ignore[arg-type]
    return world, seller, buyer


GRID = [0, 1, 5, 10, 25, 45, 60, 90, 105, 140]
WINDOWS = [(NEVER, NEVER)] + [(a, b) for a, b in itertools.product(GRID, [*GRID, NEVER]) if a < b]


def outcome(world: World, who: str) -> str:
    s, d = world.shells, world.doge
    if who == "S":
        gave = s is not None and s.spent != "refund"
        got = d is not None and d.spent == "claim"
    else:
        gave = d is not None and d.spent != "refund"
        got = s is not None and s.spent == "claim"
    return {(True, True): "traded", (False, False): "kept", (True, False): "LOST", (False, True): "gained"}[(gave, got)]


@pytest.mark.parametrize("seller_off", WINDOWS, ids=str)
def test_a_side_present_when_it_must_be_never_loses(seller_off: tuple[int, int]) -> None:
    """The seller must come back at some time (its refund has no deadline); the buyer must be online
    at some moment between the seller's claim of the Doge and the Shell lock's expiry ``t1``."""
    for buyer_off in WINDOWS:
        world, seller, buyer = run(seller_off, buyer_off)
        s, b = outcome(world, "S"), outcome(world, "B")
        where = (seller_off, buyer_off, s, b)
        assert "gained" not in (s, b), where  # nobody takes both legs
        if seller_off[1] < NEVER:
            assert s != "LOST", where
        claimed = world.doge.spent_at if world.doge is not None else NEVER
        buyer_absent = buyer_off[0] <= claimed and buyer_off[1] >= seller.t1
        if not buyer_absent:
            assert b != "LOST", where
        if seller_off[1] < NEVER and not buyer_absent and buyer_off[1] < NEVER:
            assert (s, b) in (("traded", "traded"), ("kept", "kept")), where  # both legs or neither


def test_both_online_the_swap_completes() -> None:
    world, seller, buyer = run((NEVER, NEVER), (NEVER, NEVER))
    assert (seller.state, buyer.state) == ("done", "done")
    assert world.shells is not None and world.shells.spent == "claim"
    assert world.doge is not None and world.doge.spent == "claim"
    assert world.doge.expiry + TIMES.margin_ms <= world.shells.expiry  # the shorter timeout is the Doge's


def test_a_seller_who_vanishes_after_the_buyer_locked_leaves_both_refunded() -> None:
    world, seller, buyer = run(
        (2, 120), (NEVER, NEVER)
    )  # gone from before the Doge lock had its confirmations until after t1
    assert world.doge is not None and world.doge.spent == "refund" and buyer.state == "refunded"
    assert world.shells is not None and world.shells.spent == "refund" and seller.state == "refunded"


def test_a_buyer_who_never_locks_costs_the_seller_only_time() -> None:
    world, seller, buyer = run((NEVER, NEVER), (0, NEVER))
    assert world.doge is None
    assert world.shells is not None and world.shells.spent == "refund" and seller.state == "refunded"


def test_a_buyer_does_not_lock_on_a_shell_lock_that_expires_too_soon() -> None:
    buyer = BuyerSwap(TERMS, TIMES, 0)
    ev = ShellsLocked("L", "S", "B", TERMS.amount, "h" * 64, TIMES.doge_lock_ms + TIMES.margin_ms - 1)
    assert buyer.on_event(0, ev) == [] and buyer.state == "abandoned"
    other = ShellsLocked("L", "S", "B", TERMS.amount + 1, "h" * 64, 10**6)  # not this fill's amount
    assert BuyerSwap(TERMS, TIMES, 0).on_event(0, other) == []


def test_a_seller_does_not_claim_a_doge_lock_with_other_terms() -> None:
    seller = SellerSwap(TERMS, TIMES, SECRET, 0)
    seller.on_event(0, ShellsLocked("L", "S", "B", TERMS.amount, seller.hash, seller.t1))
    short = DogeLocked("O:0", "S", TERMS.koinu - 1, seller.hash, 50, 5)
    assert seller.on_event(1, short) == []
    good = DogeLocked("O:0", "S", TERMS.koinu, seller.hash, 50, 5)
    assert seller.on_event(1, good) == [ClaimDoge("O:0", SECRET)]


def test_times_must_nest() -> None:
    with pytest.raises(ValueError):
        SwapTimes(shell_lock_ms=100, doge_lock_ms=60, margin_ms=30, lock_wait_ms=20)
