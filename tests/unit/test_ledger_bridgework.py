"""The bridge reward's work record (`borgusb.ledger.bridgework`): a pinned vector, the voucher, every
refusal of a record, of a claim and of a Dogecoin transaction's shape (real transactions, built and
signed here); a reserve holder's check (`cells.peerpays.bridgecheck`) up to where it needs the
ledger and a dogeNodeCell (no node runs at its address); and the bridge's voucher book
(`cells.dogenode.earnings`, its SQLite store) with its intake refusals, bounds and a reopen."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from bitcoin.core import CTransaction, b2lx, x

from borgusb.cells.dogenode.earnings import MAX_WAITING_PER_PARTY, PER_KEY_BURST, BridgeEarnings
from borgusb.cells.dogenode.store import BridgeStore, Voucher
from borgusb.cells.kit import RequestError
from borgusb.cells.peerpays.bridgecheck import MAX_OPS_PER_DAY, BridgeChecks
from borgusb.clock import SystemClock
from borgusb.doge.address import p2pkh_address
from borgusb.doge.htlc import build_htlc_claim, build_htlc_refund, htlc_address, htlc_script
from borgusb.doge.tx import Utxo, build_payment
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.ledger import ZERO_HASH, sign_reward
from borgusb.ledger.bridgework import (
    MAX_CLAIM_AGE_MS,
    MAX_SKEW_MS,
    VOUCHER_DOMAIN,
    BridgeRecord,
    bridge_ref,
    check_bridge,
    check_bridge_claim,
    check_bridge_tx,
    check_voucher,
    make_bridge,
    sign_voucher,
)
from borgusb.ledger.rules import amount
from borgusb.ledger.sim import fixed_key
from borgusb.ledger.work import BadWork
from borgusb.net.peer import PeerClient
from borgusb.signed import SignedDocError, sign_doc

BRIDGE = fixed_key("borgusb.ledger.vector.bridge")
SELLER, BUYER = fixed_key("borgusb.ledger.vector.seller"), fixed_key("borgusb.ledger.vector.buyer")
STRANGER = fixed_key("borgusb.ledger.vector.stranger")
SECRET = hashlib.sha256(b"swap secret").digest()
HASH = hashlib.sha256(SECRET).digest()
SCRIPT = htlc_script(HASH, SELLER.public_key, BUYER.public_key, 1_000)
LOCK = hashlib.sha256(b"the seller's lock").hexdigest()
FUNDING_IN = hashlib.sha256(b"the buyer's coins").hexdigest()
NET = "regtest"
TS = 1_800_000_000_000
KOINU, FEE = 1_250_000_000, 1_000_000

# source: this file, make_bridge(BRIDGE, sign_voucher(BUYER, BRIDGE, SELLER's account, LOCK, "deposit",
# the funding's txid, TS), SCRIPT); signatures are deterministic (RFC 6979), so the bytes are fixed;
# they are checked below against json.dumps (not borgusb.canonical)
VECTOR_DIGEST = "271a6f435afd6de4b66b52fb159fef5194ee5076dd9611c86b49cb82cfde0587"


def funding() -> str:
    """The buyer's payment into the HTLC (hex): a deposit."""
    utxo = Utxo(FUNDING_IN, 0, KOINU + FEE)
    return build_payment([utxo], [(htlc_address(SCRIPT, NET), KOINU)], BUYER, NET, FEE)


def txid_of(raw: str) -> str:
    return str(b2lx(CTransaction.deserialize(x(raw)).GetTxid()))


def claim_tx() -> str:
    """The seller's claim of the HTLC (hex): a withdrawal."""
    to = p2pkh_address(SELLER.public_key, NET)
    return build_htlc_claim(txid_of(funding()), 0, KOINU, SCRIPT, SECRET, SELLER, to, FEE, NET)


def voucher(party: SigningKey = BUYER, op: str = "deposit", txid: str = "", ts: int = TS) -> dict[str, Any]:
    return sign_voucher(party, BRIDGE.public_key_hex, SELLER.public_key_hex, LOCK, op, txid or txid_of(funding()), ts)


def record(**kw: Any) -> BridgeRecord:
    return make_bridge(BRIDGE.public_key_hex, voucher(**kw), SCRIPT.hex())


def refused(d: Any) -> str:
    with pytest.raises(BadWork) as err:
        check_bridge(d)
    return err.value.reason


def test_vector_and_independent_ref() -> None:
    rec = record()
    by_hand = {
        "amount": 100_000_000,
        "claimant": BRIDGE.public_key_hex,
        "d": "borgusb.ledger.bridge",
        "lock": {"account": SELLER.public_key_hex, "id": LOCK},
        "op": "deposit",
        "rule": "bridge",
        "script": SCRIPT.hex(),
        "txid": txid_of(funding()),
        "v": 1,
        "voucher": voucher(),
    }
    raw = json.dumps(by_hand, sort_keys=True, separators=(",", ":")).encode()
    assert rec.to_bytes() == raw
    assert hashlib.sha256(raw).hexdigest() == VECTOR_DIGEST
    assert rec.ref == hashlib.sha256(f"borgusb.ledger.bridge|{rec.txid}".encode()).hexdigest() == bridge_ref(rec.txid)
    assert rec.amount == amount("bridge", 1) == 10**8 and rec.party == BUYER.public_key_hex
    assert rec.secret_hash == HASH.hex() and check_bridge(rec.to_dict()) == rec


def test_voucher_checks() -> None:
    v = voucher()
    assert check_voucher(v) == v
    for change, reason in (({"txid": "ab" * 32}, "bad_signature"), ({"extra": 1}, "malformed")):
        with pytest.raises(SignedDocError) as err:
            check_voucher({**v, **change})
        assert err.value.reason == reason, change
    body = {k: v[k] for k in ("party", "bridge", "account", "lock", "op", "txid", "ts")}
    for change in ({"op": "swap"}, {"txid": "X" * 64}, {"bridge": "nobody"}, {"ts": -1}, {"lock": "ab"}):
        with pytest.raises(SignedDocError) as err:  # signed by its party, but not a voucher
            check_voucher(sign_doc(BUYER, body | change, VOUCHER_DOMAIN))
        assert err.value.reason == "malformed", change


def test_record_refusals() -> None:
    d = record().to_dict()
    assert refused({**d, "extra": 1}) == "bad_work"
    assert refused({**d, "rule": "hold"}) == "bad_work"
    assert refused({**d, "op": "swap"}) == "bad_work"
    assert refused({**d, "txid": "AB" * 32}) == "bad_work"
    assert refused({**d, "lock": {"account": SELLER.public_key_hex}}) == "bad_work"
    assert refused({**d, "script": "00" * 40}) == "bad_work"  # not an HTLC
    assert refused({**d, "script": "ab" * 200}) == "bad_work"  # too long
    assert refused({**d, "script": SCRIPT.hex().upper()}) == "bad_work"
    assert refused({**d, "voucher": {**d["voucher"], "ts": TS + 1}}) == "bad_voucher"  # signature
    assert refused({**d, "claimant": STRANGER.public_key_hex}) == "bad_voucher"  # another bridge's voucher
    assert refused({**d, "op": "withdrawal"}) == "bad_voucher"
    assert refused({**d, "txid": "ab" * 32}) == "bad_voucher"
    assert refused({**d, "lock": {"account": SELLER.public_key_hex, "id": "cd" * 32}}) == "bad_voucher"
    for wrong in (99_999_999, 100_000_001, 0, 100_000_000.0, True, "100000000"):
        assert refused({**d, "amount": wrong}) == "wrong_amount", wrong


def test_claim_checks() -> None:
    rec = record()

    def claim(**change: Any) -> Any:
        args = {"seq": 1, "prev": ZERO_HASH, "amount": rec.amount, "ref": rec.ref, "ts": TS} | change
        return sign_reward(BRIDGE, **args)

    check_bridge_claim(rec, claim(), TS)
    check_bridge_claim(rec, claim(), TS + MAX_CLAIM_AGE_MS)
    check_bridge_claim(rec, claim(), TS - MAX_SKEW_MS)
    other = sign_reward(STRANGER, seq=1, prev=ZERO_HASH, amount=rec.amount, ref=rec.ref, ts=TS)
    for tx, now, reason in (
        (claim(ref="ab" * 32), TS, "work_ref_mismatch"),
        (other, TS, "wrong_claimant"),
        (claim(amount=rec.amount + 1), TS, "wrong_amount"),
        (claim(), TS - MAX_SKEW_MS - 1, "future_voucher"),
        (claim(), TS + MAX_CLAIM_AGE_MS + 1, "too_old"),
    ):
        with pytest.raises(BadWork) as err:
            check_bridge_claim(rec, tx, now)
        assert err.value.reason == reason


def test_the_transaction_is_the_operation() -> None:
    deposit, claimed = record(), record(party=SELLER, op="withdrawal", txid=txid_of(claim_tx()))
    check_bridge_tx(deposit, funding())
    check_bridge_tx(claimed, claim_tx())
    to = p2pkh_address(BUYER.public_key, NET)
    refund = build_htlc_refund(txid_of(funding()), 0, KOINU, SCRIPT, BUYER, to, FEE, NET)
    check_bridge_tx(record(op="withdrawal", txid=txid_of(refund)), refund)
    # a payment elsewhere, a claim of another HTLC, bytes that are no transaction
    elsewhere = build_payment([Utxo(FUNDING_IN, 0, KOINU + FEE)], [(to, KOINU)], BUYER, NET, FEE)
    other = htlc_script(HASH, SELLER.public_key, BUYER.public_key, 2_000)
    foreign = build_htlc_claim(txid_of(funding()), 0, KOINU, other, SECRET, SELLER, to, FEE, NET)
    for rec, raw in ((deposit, elsewhere), (claimed, foreign), (deposit, claim_tx()), (claimed, funding())):
        with pytest.raises(BadWork) as err:
            check_bridge_tx(rec, raw)
        assert err.value.reason == "not_htlc_tx"
    for raw in ("zz", "00", "ab" * 200_000):
        with pytest.raises(BadWork) as err:
            check_bridge_tx(deposit, raw)
        assert err.value.reason == "not_htlc_tx"


async def test_holder_check_refusals_before_and_without_the_ledger_and_bridge() -> None:
    """`BridgeChecks` on a holder whose cells are not there (127.0.0.250 runs no node): the record's
    refusals are counted; a bridge's daily cap; a transaction approved for one bridge is refused to
    another; with no ledger or dogeNodeCell to ask, nothing is refused (503, not counted)."""
    clock = SystemClock()
    counters: Counter[str] = Counter()
    async with PeerClient(SigningKey.generate(), clock, Verifier(clock), timeout_s=2) as peers:
        checks = BridgeChecks(peers, "127.0.0.250", counters)
        rec = record()

        def reward(r: BridgeRecord, key: SigningKey = BRIDGE) -> Any:
            return sign_reward(key, seq=1, prev=ZERO_HASH, amount=r.amount, ref=r.ref, ts=TS)

        for work, tx, now, reason in (
            ({**rec.to_dict(), "amount": 1}, reward(rec), TS, "wrong_amount"),
            (rec.to_dict(), reward(rec, STRANGER), TS, "wrong_claimant"),
            (rec.to_dict(), reward(rec), TS + MAX_CLAIM_AGE_MS + 1, "too_old"),
            ({**rec.to_dict(), "voucher": {**voucher(), "ts": TS + 1}}, reward(rec), TS, "bad_voucher"),
        ):
            with pytest.raises(RequestError) as err:
                await checks.check(tx, work, now)
            assert (err.value.reason, err.value.status) == (reason, 403)

        with pytest.raises(RequestError) as err:  # nobody to ask about the lock: the claim waits
            await checks.check(reward(rec), rec.to_dict(), TS)
        assert (err.value.reason, err.value.status) == ("bridge_unverifiable", 503)
        assert counters["pay_work_bridge_unverifiable"] == 1 and not checks.approves(reward(rec))

        checks.verified[rec.ref] = (STRANGER.public_key_hex, rec.amount)  # approved for another bridge
        with pytest.raises(RequestError) as err:
            await checks.check(reward(rec), rec.to_dict(), TS)
        assert err.value.reason == "already_claimed"
        checks.verified[rec.ref] = (BRIDGE.public_key_hex, rec.amount)  # a resend of an approved claim
        await checks.check(reward(rec), rec.to_dict(), TS)
        assert checks.approves(reward(rec))

        checks.per_day[TS // (24 * 3_600_000)][BRIDGE.public_key_hex] = MAX_OPS_PER_DAY
        late = record(party=SELLER, op="withdrawal", txid=txid_of(claim_tx()))
        with pytest.raises(RequestError) as err:
            await checks.check(reward(late), late.to_dict(), TS)
        assert (err.value.reason, err.value.status) == ("daily_cap", 429)
    assert {k: v for k, v in counters.items() if k.startswith("pay_work_refused:")} == {
        f"pay_work_refused:{r}": 1
        for r in ("wrong_amount", "wrong_claimant", "too_old", "bad_voucher", "already_claimed", "daily_cap")
    }


async def test_voucher_book_refusals_bounds_and_reopen(tmp_path: Path) -> None:
    """The bridge's intake (`BridgeEarnings.take`): what it keeps, each refusal counted, the per-key
    rate and the per-party bound; the vouchers are read back from SQLite after a reopen."""
    clock = SystemClock()
    counters: Counter[str] = Counter()
    db = BridgeStore(tmp_path / "bridge.sqlite")

    async def confirmations(txid: str) -> int:
        return 0

    async with PeerClient(BRIDGE, clock, Verifier(clock), timeout_s=2) as peers:
        now = clock.now_ms()
        book = BridgeEarnings(db, BRIDGE, peers, "127.0.0.250", counters, clock.now_ms, confirmations, 1)
        good = voucher(ts=now)
        assert book.take(BUYER.public_key_hex, {"voucher": good, "script": SCRIPT.hex()})["new"] is True
        assert book.take(BUYER.public_key_hex, {"voucher": good, "script": SCRIPT.hex()})["new"] is False
        seller = SELLER.public_key_hex
        stranger_bridge = sign_voucher(BUYER, STRANGER.public_key_hex, seller, LOCK, "deposit", "ab" * 32, now)
        ahead, old = voucher(SELLER, ts=now + MAX_SKEW_MS + 60_000), voucher(SELLER, ts=now - MAX_CLAIM_AGE_MS - 1)
        for signer, payload, reason in (
            (BUYER, {"voucher": {**good, "ts": now + 1}, "script": SCRIPT.hex()}, "bad_signature"),
            (BUYER, {"voucher": good}, "bad_script"),
            (BUYER, {"voucher": good, "script": "00"}, "bad_script"),
            (BUYER, {"voucher": stranger_bridge, "script": SCRIPT.hex()}, "not_mine"),
            (SELLER, {"voucher": good, "script": SCRIPT.hex()}, "not_party"),
            (SELLER, {"voucher": ahead, "script": SCRIPT.hex()}, "future_voucher"),
            (SELLER, {"voucher": old, "script": SCRIPT.hex()}, "too_old"),
            (SELLER, [], "malformed"),
        ):
            with pytest.raises(RequestError) as err:
                book.take(signer.public_key_hex, payload)
            assert err.value.reason == reason, payload
        for i in range(PER_KEY_BURST):  # a burst, then the key's rate
            theirs = voucher(STRANGER, txid=f"{i:064x}", ts=now)
            assert book.take(STRANGER.public_key_hex, {"voucher": theirs, "script": SCRIPT.hex()})["kept"]
        with pytest.raises(RequestError) as err:
            book.take(STRANGER.public_key_hex, {"voucher": good, "script": SCRIPT.hex()})
        assert (err.value.reason, err.value.status) == ("rate_limited", 429)
        for i in range(MAX_WAITING_PER_PARTY):
            db.add_voucher(Voucher(f"{i + 100:064x}", SELLER.public_key_hex, "deposit", "{}", "", now))
        with pytest.raises(RequestError) as err:
            book.take(SELLER.public_key_hex, {"voucher": voucher(SELLER, ts=now), "script": SCRIPT.hex()})
        assert err.value.reason == "vouchers_full"
        # nothing is claimed before its transaction has its confirmations
        got = await book.earn()
        assert {(r["state"], r["reason"]) for r in got["results"]} == {("waiting", "unconfirmed")}
        async with book._claiming:  # a round under way: another request is refused, not queued
            with pytest.raises(RequestError) as err:
                await book.earn()
            assert (err.value.reason, err.value.status) == ("busy", 429)
    db.close()
    again = BridgeStore(tmp_path / "bridge.sqlite")
    kept = again.waiting(500)
    assert len(kept) == 1 + PER_KEY_BURST + MAX_WAITING_PER_PARTY
    assert [json.loads(v.doc) for v in kept if v.party == BUYER.public_key_hex] == [good]
    again.close()
