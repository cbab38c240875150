"""The serve reward's work record: readers' receipts, a pinned vector, the rule's arithmetic (each
reader's shard once, capped), every refusal, and a claim checked against its record."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from borgusb.ledger import ZERO_HASH, sign_reward
from borgusb.ledger.rules import GIB, MIB, amount
from borgusb.ledger.servework import MAX_RECEIPTS, MAX_SERVE_BYTES, check_serve, check_serve_claim, make_serve
from borgusb.ledger.sim import fixed_key
from borgusb.ledger.work import HOLD_PERIOD_MS, MAX_CLAIM_AGE_MS, BadWork
from borgusb.shard.receipt import MAX_RECEIPT_SHARDS, check_receipt, receipt_id, sign_receipt
from borgusb.signed import SignedDocError

HOLDER = fixed_key("borgusb.ledger.vector.holder")
READER, OTHER = fixed_key("borgusb.ledger.vector.reader"), fixed_key("borgusb.ledger.vector.reader2")
START = 1_764_000_000_000 - 1_764_000_000_000 % HOLD_PERIOD_MS
A, B, C = (hashlib.sha256(x).hexdigest() for x in (b"a", b"b", b"c"))
H = HOLDER.public_key_hex

# source: this file, make_serve(HOLDER, START, [READER's receipt for A (3 MiB) and B (1 MiB) at
# START + 1000]); ECDSA signatures here are deterministic (RFC 6979), so the ref is fixed
VECTOR_REF = "54a05e20bbaeb94b14b1640f47c2b5e7a6e4163bd800d1bffb0c79102a6dbb69"


def receipt(reader=READER, shards: dict[str, int] | None = None, ts: int = START + 1000, holder: str = H):
    return sign_receipt(reader, holder, shards or {A: 3 * MIB, B: MIB}, ts)


def record() -> Any:
    return make_serve(H, START, [receipt()])


def test_vector_and_independent_ref() -> None:
    rec = record()
    raw = json.dumps(rec.to_dict(), sort_keys=True, separators=(",", ":")).encode()
    assert rec.to_bytes() == raw and rec.ref == hashlib.sha256(raw).hexdigest()
    assert rec.ref == VECTOR_REF
    assert rec.amount == amount("serve", 4 * MIB) == 4 * 10**6 // 1024 == 3906  # 0.01 Shell per GiB
    assert (rec.readers, rec.counted, rec.shards) == (1, 4 * MIB, tuple(sorted({A: 3 * MIB, B: MIB}.items())))


def test_receipts_check_their_reader() -> None:
    r = receipt()
    assert check_receipt(r) == r
    for change in ({"reader": OTHER.public_key_hex}, {"ts": r["ts"] + 1}, {"shards": [[A, 3 * MIB]]}):
        with pytest.raises(SignedDocError) as err:
            check_receipt({**r, **change})
        assert err.value.reason == "bad_signature"
    with pytest.raises(SignedDocError):
        sign_receipt(READER, H, {hashlib.sha256(bytes([i])).hexdigest(): 1 for i in range(MAX_RECEIPT_SHARDS + 1)}, 1)
    with pytest.raises(SignedDocError):
        sign_receipt(READER, H, {A: 0}, 1)


def test_each_readers_shard_counts_once_and_the_total_is_capped() -> None:
    twice = make_serve(H, START, [receipt(), receipt(ts=START + 2000), receipt(OTHER, {A: 3 * MIB})])
    assert twice.counted == 7 * MIB and twice.readers == 2  # READER's A and B once, OTHER's A once
    many = [receipt(fixed_key(f"r{i}"), {A: 4 * MIB, B: 4 * MIB, C: 4 * MIB}) for i in range(MAX_RECEIPTS + 5)]
    rec = make_serve(H, START, many)
    assert len(rec.to_dict()["receipts"]) == MAX_RECEIPTS
    assert rec.counted == min(MAX_RECEIPTS * 12 * MIB, MAX_SERVE_BYTES) and MAX_SERVE_BYTES == GIB


def test_make_serve_leaves_out_what_is_not_this_holders_in_this_period() -> None:
    kept = [receipt(), receipt(holder=OTHER.public_key_hex), receipt(HOLDER), receipt(ts=START - 1)]
    rec = make_serve(H, START, kept + [{**receipt(OTHER), "sig": "00"}])
    assert [r["reader"] for r in rec.to_dict()["receipts"]] == [READER.public_key_hex]
    with pytest.raises(BadWork) as err:
        make_serve(H, START, kept[1:])
    assert err.value.reason == "bad_work"  # no receipt left: nothing to claim


def doc(**change: Any) -> dict[str, Any]:
    return {**record().to_dict(), **change}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"receipts": [receipt(HOLDER)]}, "self_served"),
        ({"receipts": [receipt(holder=OTHER.public_key_hex)]}, "bad_work"),
        ({"receipts": [receipt(ts=START + HOLD_PERIOD_MS)]}, "bad_work"),
        ({"receipts": [{**receipt(), "ts": START + 5}]}, "bad_work"),  # signature broken
        ({"receipts": []}, "bad_work"),
        ({"receipts": [receipt(), receipt()]}, "bad_work"),  # listed twice
        ({"receipts": [receipt(OTHER, {A: MIB})] + [receipt()]}, "bad_work"),  # A with two sizes (or order)
        ({"amount": 3907}, "wrong_amount"),
        ({"amount": 0}, "wrong_amount"),
        ({"rule": "hold"}, "bad_work"),
        ({"start": START + 1, "end": START + 1 + HOLD_PERIOD_MS}, "bad_work"),
        ({"extra": 1}, "bad_work"),
    ],
)
def test_refusals(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadWork) as err:
        check_serve(doc(**change))
    assert err.value.reason == reason


def test_receipts_in_id_order_are_accepted() -> None:
    two = sorted([receipt(), receipt(OTHER, {C: MIB})], key=receipt_id)
    rec = check_serve(doc(receipts=two, amount=amount("serve", 5 * MIB)))
    assert rec.counted == 5 * MIB


def test_claim_matches_its_record_and_period() -> None:
    rec = record()
    end = rec.end

    def claim(**kw: Any):
        args = {"seq": 1, "prev": ZERO_HASH, "amount": rec.amount, "ref": rec.ref, "ts": end, **kw}
        return sign_reward(kw.pop("key", HOLDER), **{k: v for k, v in args.items() if k != "key"})

    check_serve_claim(rec, claim(), end)
    for tx, now, reason in [
        (claim(ref=hashlib.sha256(b"x").hexdigest()), end, "work_ref_mismatch"),
        (claim(key=READER), end, "wrong_claimant"),
        (claim(amount=rec.amount - 1), end, "wrong_amount"),
        (claim(), end - 1, "not_ended"),
        (claim(), end + MAX_CLAIM_AGE_MS + 1, "too_old"),
    ]:
        with pytest.raises(BadWork) as err:
            check_serve_claim(rec, tx, now)
        assert err.value.reason == reason
