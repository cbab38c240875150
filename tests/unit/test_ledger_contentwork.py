"""The content reward's work record (`borgusb.ledger.contentwork`): a pinned vector, the read receipt,
every refusal of a record and of a claim on it; and a reserve holder's check of a claim
(`cells.peerpays.contentcheck`) up to where it needs a shard cell (no node runs at its address)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import pytest

from borgusb import canonical
from borgusb.cells.kit import RequestError
from borgusb.cells.peerpays.contentcheck import MAX_CLAIMANTS_PER_DAY, ContentChecks
from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.ledger import ZERO_HASH, sign_reward
from borgusb.ledger.contentwork import (
    DAY_MS,
    MAX_CLAIM_AGE_MS,
    MAX_READS,
    READ_DOMAIN,
    ContentRecord,
    check_content,
    check_content_claim,
    check_read,
    make_content,
    parse_content,
    read_id,
    sign_read,
)
from borgusb.ledger.rules import amount
from borgusb.ledger.sim import fixed_key
from borgusb.ledger.work import BadWork
from borgusb.net.peer import PeerClient
from borgusb.signed import SignedDocError, sign_doc

CREATOR = fixed_key("borgusb.ledger.vector.creator")
R1, R2 = fixed_key("borgusb.ledger.vector.reader1"), fixed_key("borgusb.ledger.vector.reader2")
MAP_A, MAP_B = (hashlib.sha256(x).hexdigest() for x in (b"map a", b"map b"))
DAY = 20_400
TS = DAY * DAY_MS + 12 * 3_600_000
OWNER = CREATOR.public_key_hex

# source: this file, make_content(CREATOR, DAY, [R1 read MAP_A at TS, R2 read MAP_A at TS + 1]);
# signatures are deterministic (RFC 6979), so the ref is fixed; the bytes are checked below against
# json.dumps (not borgusb.canonical)
VECTOR_REF = "5d04815fcb27f9869fd159bb92a85bbcd23f2bcd58bb176a95f28677c783ad0e"


def reads() -> list[dict[str, Any]]:
    return [sign_read(R1, MAP_A, OWNER, TS), sign_read(R2, MAP_A, OWNER, TS + 1)]


def record() -> ContentRecord:
    return make_content(OWNER, DAY, reads())


def doc(**change: Any) -> dict[str, Any]:
    return {**record().to_dict(), **change}


def refused(d: Any) -> str:
    with pytest.raises(BadWork) as err:
        check_content(d)
    return err.value.reason


def test_vector_and_independent_ref() -> None:
    rec = record()
    listed = sorted(reads(), key=read_id)
    by_hand = {
        "amount": 200_000,
        "claimant": OWNER,
        "d": "borgusb.ledger.content",
        "day": DAY,
        "reads": listed,
        "rule": "content",
        "v": 1,
    }
    raw = json.dumps(by_hand, sort_keys=True, separators=(",", ":")).encode()
    assert rec.to_bytes() == raw
    assert rec.ref == hashlib.sha256(raw).hexdigest() == VECTOR_REF
    assert parse_content(raw) == rec
    assert rec.amount == amount("content", 2) == 2 * 10**8 // 1000  # 0.001 Shell each
    assert rec.maps == (MAP_A,) and rec.end == (DAY + 1) * DAY_MS


def test_read_receipt_checks() -> None:
    r = sign_read(R1, MAP_A, OWNER, TS)
    assert r["day"] == DAY and check_read(r) == r
    for change, reason in (
        ({"map": MAP_B}, "bad_signature"),
        ({"day": DAY + 1}, "bad_signature"),
        ({"extra": 1}, "malformed"),
    ):
        with pytest.raises(SignedDocError) as err:
            check_read({**r, **change})
        assert err.value.reason == reason, change
    body = {k: r[k] for k in ("reader", "map", "owner", "day", "ts")}
    for change in ({"map": "X" * 64}, {"owner": "nobody"}, {"day": DAY - 1}, {"ts": -1}, {"day": True}):
        with pytest.raises(SignedDocError) as err:  # signed by its reader, but not a receipt
            check_read(sign_doc(R1, body | change, READ_DOMAIN))
        assert err.value.reason == "malformed", change


def test_record_refusals() -> None:
    listed = sorted(reads(), key=read_id)
    assert refused({**doc(), "extra": 1}) == "bad_work"
    assert refused(doc(rule="hold")) == "bad_work"
    assert refused(doc(reads=[])) == "bad_work"
    assert refused(doc(reads=listed[::-1])) == "bad_work"  # not in id order
    assert refused(doc(reads=[listed[0], listed[0]], amount=amount("content", 2))) == "bad_work"
    assert refused(doc(day=DAY + 1)) == "bad_work"  # receipts of another day
    for wrong in (199_999, 200_001, 0, 200_000.0, True, "200000"):
        assert refused(doc(amount=wrong)) == "wrong_amount", wrong
    # a receipt of another owner's map
    other = sign_read(R1, MAP_B, R2.public_key_hex, TS)
    assert refused(doc(reads=sorted([listed[0], other], key=read_id))) == "bad_work"
    # the creator reading its own media
    own = sign_read(CREATOR, MAP_B, OWNER, TS)
    assert refused(doc(reads=sorted([*listed, own], key=read_id), amount=amount("content", 3))) == "self_read"
    # one reader, one map, two receipts (two times of the same day): one read is paid
    again = sign_read(R1, MAP_A, OWNER, TS + 5)
    assert refused(doc(reads=sorted([*listed, again], key=read_id), amount=amount("content", 3))) == "bad_work"
    # the same reader's reads of two maps are two reads
    two = make_content(OWNER, DAY, [*reads(), sign_read(R1, MAP_B, OWNER, TS)])
    assert two.amount == amount("content", 3) and two.maps == tuple(sorted((MAP_A, MAP_B)))


def test_bounds_and_canonical_form() -> None:
    many = [sign_read(fixed_key(f"reader{i}"), MAP_A, OWNER, TS) for i in range(MAX_READS + 1)]
    full = make_content(OWNER, DAY, many[:MAX_READS])
    assert full.amount == amount("content", MAX_READS) and parse_content(full.to_bytes()) == full
    with pytest.raises(BadWork) as err:
        make_content(OWNER, DAY, many)
    assert err.value.reason == "bad_work"
    spaced = json.dumps(record().to_dict()).encode()
    with pytest.raises(BadWork) as err:
        parse_content(spaced)
    assert err.value.reason == "bad_work"
    with pytest.raises(BadWork):
        parse_content(b"{" * 10)
    assert canonical.loads(record().to_bytes()) == record().to_dict()


def test_claim_checks() -> None:
    rec = record()
    ended = rec.end

    def claim(**change: Any) -> Any:
        args = {"seq": 1, "prev": ZERO_HASH, "amount": rec.amount, "ref": rec.ref, "ts": ended + 1} | change
        return sign_reward(CREATOR, **args)

    check_content_claim(rec, claim(), ended)
    check_content_claim(rec, claim(), ended + MAX_CLAIM_AGE_MS)
    for tx, now, reason in (
        (claim(ref="ab" * 32), ended, "work_ref_mismatch"),
        (sign_reward(R1, seq=1, prev=ZERO_HASH, amount=rec.amount, ref=rec.ref, ts=ended), ended, "wrong_claimant"),
        (claim(amount=rec.amount + 1), ended, "wrong_amount"),
        (claim(), ended - 1, "not_ended"),
        (claim(), ended + MAX_CLAIM_AGE_MS + 1, "too_old"),
    ):
        with pytest.raises(BadWork) as err:
            check_content_claim(rec, tx, now)
        assert err.value.reason == reason


async def test_holder_check_refusals_before_and_without_the_shard_cell() -> None:
    """`ContentChecks` on a holder whose shard cell is not there (127.0.0.250 runs no node): the record's
    refusals are counted; one record per (creator, day) is approved; a creator-day table that is full
    makes a new creator wait; a shard cell that does not answer refuses nothing (503, not counted)."""
    clock = SystemClock()
    counters: Counter[str] = Counter()
    async with PeerClient(SigningKey.generate(), clock, Verifier(clock), timeout_s=2) as peers:
        checks = ContentChecks(peers, "127.0.0.250", counters)
        rec = record()
        now = rec.end + 1

        def reward(r: ContentRecord, key: Any = CREATOR) -> Any:
            return sign_reward(key, seq=1, prev=ZERO_HASH, amount=r.amount, ref=r.ref, ts=now)

        for work, tx, reason in (
            ({**rec.to_dict(), "amount": 1}, reward(rec), "wrong_amount"),
            (rec.to_dict(), reward(rec, R1), "wrong_claimant"),
        ):
            with pytest.raises(RequestError) as err:
                await checks.check(tx, work, now)
            assert (err.value.reason, err.value.status) == (reason, 403)
        with pytest.raises(RequestError) as err:
            await checks.check(reward(rec), rec.to_dict(), rec.end - 1)
        assert err.value.reason == "not_ended"

        with pytest.raises(RequestError) as err:  # the maps' owners cannot be asked: the claim waits
            await checks.check(reward(rec), rec.to_dict(), now)
        assert (err.value.reason, err.value.status) == ("audit_unavailable", 503)
        assert counters["pay_work_audit_unavailable"] == 1 and not checks.approves(reward(rec))

        checks.owners[MAP_A] = OWNER  # as the shard cell said once
        await checks.check(reward(rec), rec.to_dict(), now)
        assert checks.approves(reward(rec)) and counters["pay_work_verified"] == 1
        other = make_content(OWNER, DAY, [sign_read(R1, MAP_A, OWNER, TS)])
        with pytest.raises(RequestError) as err:
            await checks.check(reward(other), other.to_dict(), now)
        assert err.value.reason == "already_claimed"

        stranger = fixed_key("borgusb.ledger.vector.stranger")
        theirs = make_content(stranger.public_key_hex, DAY, [sign_read(R1, MAP_A, stranger.public_key_hex, TS)])
        with pytest.raises(RequestError) as err:  # MAP_A was stored by the creator
            await checks.check(reward(theirs, stranger), theirs.to_dict(), now)
        assert err.value.reason == "not_owner"

        checks.claimed[DAY].update({f"filler{i}": "ab" * 32 for i in range(MAX_CLAIMANTS_PER_DAY)})
        checks.owners[MAP_B] = stranger.public_key_hex
        late = make_content(stranger.public_key_hex, DAY, [sign_read(R1, MAP_B, stranger.public_key_hex, TS)])
        with pytest.raises(RequestError) as err:
            await checks.check(reward(late, stranger), late.to_dict(), now)
        assert (err.value.reason, err.value.status) == ("claims_full", 503)
    assert {k: v for k, v in counters.items() if k.startswith("pay_work_refused:")} == {
        f"pay_work_refused:{r}": 1
        for r in ("wrong_amount", "wrong_claimant", "not_ended", "already_claimed", "not_owner", "claims_full")
    }
