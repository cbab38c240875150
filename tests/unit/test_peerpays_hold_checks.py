"""A reserve holder's checks of a hold claim that need no network: every refusal before the audit,
with its word and its counter, and what the core's `verify_work` then approves (`earn.HoldChecks`).

The audit itself (the shard cell fetching sampled shards from the claimant) runs on real processes:
tests/integration/test_hold_reward_cluster.py."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from borgusb.cells.kit import RequestError
from borgusb.cells.peerpays.earn import REFUSED_FOR_MS, HoldChecks
from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.ledger import ZERO_HASH, sign_reward
from borgusb.ledger.rules import MIB
from borgusb.ledger.sim import fixed_key
from borgusb.ledger.work import HOLD_PERIOD_MS, make_hold
from borgusb.net.peer import PeerClient

WORKER = fixed_key("hold checks worker")
START = 1_764_000_000_000 - 1_764_000_000_000 % HOLD_PERIOD_MS
END = START + HOLD_PERIOD_MS
SHARDS = {hashlib.sha256(str(i).encode()).hexdigest(): MIB for i in range(4)}


def checks() -> HoldChecks:
    clock = SystemClock()
    peers = PeerClient(SigningKey.generate(), clock, Verifier(clock), timeout_s=1)
    return HoldChecks(peers, "127.0.0.1", fixed_key("verifier").public_key_hex, Counter())


async def refused(hc: HoldChecks, tx, work, now: int = END + 1000) -> str:
    with pytest.raises(RequestError) as err:
        await hc.check(tx, work, now)
    assert hc.counters[f"pay_work_refused:{err.value.reason}"] >= 1
    return err.value.reason


async def test_refusals_before_the_audit() -> None:
    hc = checks()
    rec = make_hold(WORKER.public_key_hex, START, SHARDS)
    claim = sign_reward(WORKER, seq=1, prev=ZERO_HASH, amount=rec.amount, ref=rec.ref, ts=END + 500)
    assert await refused(hc, claim, {**rec.to_dict(), "amount": rec.amount + 1}) == "wrong_amount"
    assert await refused(hc, claim, {**rec.to_dict(), "start": START + 1}) == "bad_work"
    assert await refused(hc, claim, "not a record") == "bad_work"
    assert await refused(hc, claim, rec.to_dict(), now=END - 1) == "not_ended"
    other = make_hold(WORKER.public_key_hex, START, dict(list(SHARDS.items())[:2]))
    assert await refused(hc, claim, other.to_dict()) == "work_ref_mismatch"
    thief = sign_reward(fixed_key("thief"), seq=1, prev=ZERO_HASH, amount=rec.amount, ref=rec.ref, ts=END)
    assert await refused(hc, thief, rec.to_dict()) == "wrong_claimant"
    assert not hc.approves(claim)  # nothing verified: the core's verify_work says no

    # this holder already approved another record of the same (claimant, hour)
    hc.claimed[("hold", WORKER.public_key_hex, START)] = other.ref
    assert await refused(hc, claim, rec.to_dict()) == "already_claimed"
    del hc.claimed[("hold", WORKER.public_key_hex, START)]

    # a record whose audit failed is refused from memory, without a second audit, until it expires
    hc.refused[rec.ref] = ("not_held", "shard ab: refused: corrupt", END + REFUSED_FOR_MS)
    assert await refused(hc, claim, rec.to_dict()) == "not_held"
    assert hc.counters["pay_work_refused:not_held"] == 1
    await hc.peers.close()


async def test_a_verified_ref_is_approved_for_its_claimant_and_amount_only() -> None:
    hc = checks()
    rec = make_hold(WORKER.public_key_hex, START, SHARDS)
    claim = sign_reward(WORKER, seq=1, prev=ZERO_HASH, amount=rec.amount, ref=rec.ref, ts=END + 500)
    hc.verified[rec.ref] = (WORKER.public_key_hex, rec.amount)
    assert hc.approves(claim)
    await hc.check(claim, rec.to_dict(), END + 1000)  # verified already: no second audit
    more = sign_reward(WORKER, seq=1, prev=ZERO_HASH, amount=rec.amount + 1, ref=rec.ref, ts=END + 500)
    assert not hc.approves(more)
    await hc.peers.close()
