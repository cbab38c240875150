"""peerPaysCell's hash-time locks in-process: five holder cells, signed envelopes through verify and dispatch.

Time is each cell's own network clock (an `OffsetClock` per cell, moved by the test), so expiry and
the refund's grace are exercised without waiting, and holders whose clocks straddle the expiry race.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from borgusb.clock import OffsetClock
from borgusb.ledger import ZERO_HASH, Tx, hash_lock, sign_claim, sign_lock, sign_refund
from borgusb.ledger.htlc import signing_bytes
from borgusb.ledger.sim import fixed_key
from borgusb.net.peer import PeerRejected

from .test_peerpays_cell import ALICE, BOB, CLOCK, SHELL, Net, fund, make_cell, post, settings

SECRET = hashlib.sha256(b"peerpays htlc unit test secret").digest()
GRACE = 1_000
THIEF = fixed_key("thief")


class Clocked(Net):
    """Five cells, each with its own network clock (`clocks[i]`, an offset from this machine's)."""

    def __init__(self, tmp_path: Path, faulty: int = 1) -> None:
        self.clocks = [OffsetClock() for _ in range(5)]
        s = settings(htlc_grace_ms=str(GRACE), faulty=str(faulty))
        super().__init__([make_cell(i, tmp_path, settings=s, clock=self.clocks[i]) for i in range(5)])

    def shift(self, ms: int, cells: range = range(5)) -> None:
        for i in cells:
            self.clocks[i].set_offset(ms)

    async def call(self, entry: int, type: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await post(fixed_key("wallet"), self.cells[entry], type, payload)  # type: ignore[no-any-return]

    async def status(self, lock: Tx, entry: int = 0) -> dict[str, Any]:
        return await self.call(entry, "pay.lock_status", {"account": lock.account, "lock": lock.id})

    async def close(self) -> None:
        for c in self.cells:
            await c.peers.close()
            c.ledger.close()


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Clocked]:
    n = Clocked(tmp_path)
    try:
        yield n
    finally:
        await n.close()


async def locked(net: Net, shells: int = 4, expiry_in_ms: int = 5_000) -> tuple[Tx, dict[str, Any]]:
    """ALICE funded with 10 Shells, then `shells` of them locked for BOB under SECRET's hash."""
    funded = await fund(net, ALICE, 10)
    now = CLOCK.now_ms()
    lock = sign_lock(
        ALICE,
        seq=1,
        prev=ZERO_HASH,
        to=BOB.public_key_hex,
        amount=shells * SHELL,
        hash_lock=hash_lock(SECRET),
        expiry=now + expiry_in_ms,
        ts=now,
    )
    sent = await net.send(1, lock)
    assert sent["kind"] == "htlc-lock" and funded["delivered"] == funded["of"]
    assert sent["of"] == len(net.cells[0].sets.of(ALICE.public_key_hex))  # to the payer's holders only
    return lock, sent


async def balances(net: Net, entry: int = 0) -> tuple[int, int]:
    return (
        (await net.balance(ALICE.public_key_hex, entry))["balance"],
        (await net.balance(BOB.public_key_hex, entry))["balance"],
    )


async def refused(coro: Any) -> PeerRejected:
    with pytest.raises(PeerRejected) as err:
        await coro
    return err.value


async def test_a_lock_claimed_with_the_secret_credits_the_claimant(net: Clocked) -> None:
    lock, _ = await locked(net)
    assert await balances(net) == (6 * SHELL, 0)  # the locked units are nobody's
    st = await net.status(lock, 3)
    assert st["state"] == "open" and st["tx"] == lock.to_dict()  # the terms, read from the ledger
    claim = sign_claim(BOB, lock, SECRET)
    got = await net.call(2, "pay.claim", {"resolution": claim.to_dict()})
    assert (got["id"], got["beneficiary"], got["amount"]) == (claim.id, BOB.public_key_hex, 4 * SHELL)
    assert got["certificate"]["quorum"] == 4 and got["delivered"] == got["of"]
    assert await balances(net, 4) == (6 * SHELL, 4 * SHELL)
    bob = await net.call(3, "pay.history", {"account": BOB.public_key_hex})
    alice = await net.call(3, "pay.history", {"account": ALICE.public_key_hex})
    assert [(h["dir"], h["kind"], h["amount"]) for h in bob["history"]] == [("in", "htlc-claim", 4 * SHELL)]
    assert ("out", "htlc-lock", 4 * SHELL) in [(h["dir"], h["kind"], h["amount"]) for h in alice["history"]]
    st = await net.status(lock, 1)  # the payer learns the secret from the ledger
    assert (st["state"], st["resolution"], bytes.fromhex(st["preimage"])) == ("claimed", claim.id, SECRET)
    again = await net.call(0, "pay.claim", {"resolution": claim.to_dict()})  # the same bytes: nothing moves twice
    assert again["id"] == claim.id and await balances(net) == (6 * SHELL, 4 * SHELL)
    net.shift(10_000)
    err = await refused(net.call(3, "pay.refund", {"resolution": sign_refund(ALICE, lock).to_dict()}))
    assert (err.reason, err.status) == ("already_resolved", 409)


async def test_refusals_before_and_after_expiry(net: Clocked) -> None:
    lock, _ = await locked(net, expiry_in_ms=5_000)
    claim, refund = sign_claim(BOB, lock, SECRET), sign_refund(ALICE, lock)
    wrong = dict(claim.to_dict(), preimage=hashlib.sha256(b"guess").hexdigest())
    assert (await refused(net.call(0, "pay.claim", {"resolution": wrong}))).reason == "wrong_preimage"
    by_thief = dict(claim.to_dict(), by=THIEF.public_key_hex)
    assert (await refused(net.call(0, "pay.claim", {"resolution": by_thief}))).reason == "not_claimant"
    thief_refund = dict(refund.to_dict(), by=THIEF.public_key_hex)
    assert (await refused(net.call(0, "pay.refund", {"resolution": thief_refund}))).reason == "not_payer"
    forged = dict(claim.to_dict(), sig=THIEF.sign(signing_bytes("htlc-claim", lock.id, claim.by, claim.preimage)).hex())
    assert (await refused(net.call(0, "pay.claim", {"resolution": forged}))).reason == "bad_signature"
    async with asyncio.timeout(30):  # and offered to a holder directly
        err = await refused(post(THIEF, net.cells[2], "pay.resolve", {"resolution": forged, "view": ""}))
    assert err.reason == "bad_signature"
    err = await refused(net.call(0, "pay.claim", {"resolution": refund.to_dict()}))
    assert err.reason == "malformed"  # each receptor takes its own kind
    err = await refused(net.call(0, "pay.refund", {"resolution": refund.to_dict()}))
    assert (err.reason, err.status) == ("not_expired", 409)
    net.shift(5_000 + GRACE)  # past expiry and grace on every holder's clock
    assert (await refused(net.call(1, "pay.claim", {"resolution": claim.to_dict()}))).reason == "expired"
    got = await net.call(2, "pay.refund", {"resolution": refund.to_dict()})
    assert got["beneficiary"] == ALICE.public_key_hex and got["delivered"] == got["of"]
    assert await balances(net, 3) == (10 * SHELL, 0)
    st = await net.status(lock, 4)
    assert (st["state"], st["preimage"], st["cert"]["resolution"]["kind"]) == ("refunded", "", "htlc-refund")
    counters = sum((c.counters for c in net.cells), start=type(net.cells[0].counters)())
    assert counters["pay_refused:wrong_preimage"] >= 1 and counters["pay_refused:expired"] >= 1


async def test_holders_that_missed_the_lock_are_caught_up(net: Clocked) -> None:
    entry = net.cells[1].key.public_key_hex
    others = [h for h in net.cells[1].sets.of(ALICE.public_key_hex) if h != entry]
    net.down["pay.confirm"] = {others[0]}  # one holder never gets the lock's certificate
    lock, sent = await locked(net)
    assert sent["delivered"] == sent["of"] - 1
    net.down.clear()
    got = await net.call(0, "pay.claim", {"resolution": sign_claim(BOB, lock, SECRET).to_dict()})
    assert len(got["certificate"]["signers"]) == 5  # the lagging holder voted once it had the lock
    assert sum(c.counters["pay_refused:unknown_lock"] for c in net.cells) == 1


async def test_a_lock_status_without_a_quorum_is_a_disagreement(net: Clocked) -> None:
    lock, _ = await locked(net)
    entry = net.cells[0].key.public_key_hex
    others = [h for h in net.cells[0].sets.of(ALICE.public_key_hex) if h != entry]
    net.down["pay.settle"] = set(others[:2])  # two holders never hear of the claim: 3 say claimed, 2 open
    claim = sign_claim(BOB, lock, SECRET)
    await net.call(0, "pay.claim", {"resolution": claim.to_dict()})
    err = await refused(net.status(lock, 0))
    assert err.reason == "disagreement"
    net.down.clear()
    await net.call(0, "pay.claim", {"resolution": claim.to_dict()})  # resent: delivered to every holder
    assert (await net.status(lock, 0))["state"] == "claimed"
    unknown = await net.call(0, "pay.lock_status", {"account": ALICE.public_key_hex, "lock": "ab" * 32})
    assert unknown["state"] == "unknown"


async def test_a_claim_racing_a_refund_at_expiry_confirms_at_most_one(tmp_path: Path) -> None:
    """Two holders' clocks are still before the expiry, three already past it and the grace:
    claim and refund are sent at once through two entry cells; each holder votes once."""
    for faulty in (0, 1):
        net = Clocked(tmp_path / str(faulty), faulty=faulty)
        try:
            lock, _ = await locked(net, expiry_in_ms=5_000)
            net.shift(5_000 + GRACE, range(2, 5))
            claim, refund = sign_claim(BOB, lock, SECRET), sign_refund(ALICE, lock)
            results = await asyncio.gather(
                net.call(0, "pay.claim", {"resolution": claim.to_dict()}),
                net.call(4, "pay.refund", {"resolution": refund.to_dict()}),
                return_exceptions=True,
            )
            confirmed = [r for r in results if isinstance(r, dict)]
            assert len(confirmed) <= 1, results
            for r in results:
                if not isinstance(r, dict):
                    assert isinstance(r, PeerRejected), r
                    assert r.reason in ("already_resolved", "expired", "not_expired", "no_quorum"), r
            alice, bob = await balances(net)
            assert alice + bob + (0 if confirmed else 4 * SHELL) == 10 * SHELL
            if faulty == 0:  # quorum 3 of 5: the three holders past the grace refund
                assert [r["kind"] for r in confirmed] == ["htlc-refund"] and (alice, bob) == (10 * SHELL, 0)
        finally:
            await net.close()


async def test_a_claim_that_missed_two_holders_before_expiry_still_wins(net: Clocked) -> None:
    """Quorum 4: two holders are away while the claim is sent before the expiry (3 votes, no quorum); they
    come back after it and vote for the refund (2 votes, no quorum). The claim sent again carries its three
    votes, the two refund voters yield, and the claim is certified with five."""
    lock, _ = await locked(net)
    entry = net.cells[0].key.public_key_hex
    away = [h for h in net.cells[0].sets.of(ALICE.public_key_hex) if h != entry][:2]
    claim, refund = sign_claim(BOB, lock, SECRET), sign_refund(ALICE, lock)
    net.down["pay.resolve"] = set(away)
    err = await refused(net.call(0, "pay.claim", {"resolution": claim.to_dict()}))
    assert err.reason == "no_quorum"
    net.down.clear()
    net.shift(5_000 + GRACE)
    err = await refused(net.call(0, "pay.refund", {"resolution": refund.to_dict()}))
    assert err.reason == "already_resolved"  # three holders voted for the claim: the refund has two votes
    got = await net.call(3, "pay.claim", {"resolution": claim.to_dict()})
    assert len(got["certificate"]["signers"]) == 5 and await balances(net) == (6 * SHELL, 4 * SHELL)
    assert (await net.status(lock))["state"] == "claimed"
