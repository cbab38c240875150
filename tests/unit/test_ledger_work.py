"""The hold reward's work record: a pinned vector, the rule's arithmetic, the period grid, the bounds,
a claim checked against its record, the verifiers' sample, the shard cell's claim schedule."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest

from borgusb.cells.shard.earn import CLAIM_SPREAD_MS, RETRY_MS, next_wait_ms
from borgusb.ledger import ZERO_HASH, sign_reward, sign_transfer
from borgusb.ledger.rules import HOUR_MS, MIB, amount, mib_hours
from borgusb.ledger.sim import fixed_key
from borgusb.ledger.work import (
    HOLD_PERIOD_MS,
    MAX_CLAIM_AGE_MS,
    MAX_SHARDS,
    MAX_WORK_BYTES,
    BadWork,
    HoldRecord,
    check_claim,
    check_work,
    hold_amount,
    make_hold,
    parse_work,
    period_start,
    sample,
)
from borgusb.shard.model import MAX_SHARD

WORKER = fixed_key("borgusb.ledger.vector.worker")
START = 1_764_000_000_000 - 1_764_000_000_000 % HOLD_PERIOD_MS
A, B, C = (hashlib.sha256(x).hexdigest() for x in (b"a", b"b", b"c"))

# source: this file, make_hold(WORKER, START, {A: 3 MiB, B: 1 MiB}); the ref is checked below over
# bytes built by hand with json.dumps (not borgusb.canonical)
VECTOR_REF = "ab13231e79cddfd6f34dca70ad7e5cc0b1e0dd641cca7a66b974a5fc6b0066e7"


def record(shards: dict[str, int] | None = None) -> HoldRecord:
    return make_hold(WORKER.public_key_hex, START, shards or {A: 3 * MIB, B: MIB})


def doc(**change: Any) -> dict[str, Any]:
    return {**record().to_dict(), **change}


def test_vector_and_independent_ref() -> None:
    rec = record()
    by_hand = {
        "amount": 162,
        "claimant": WORKER.public_key_hex,
        "d": "borgusb.ledger.work",
        "end": START + 3_600_000,
        "rule": "hold",
        "shards": [{"h": A, "n": 3 * MIB}, {"h": B, "n": MIB}]
        if A < B
        else [{"h": B, "n": MIB}, {"h": A, "n": 3 * MIB}],
        "start": START,
        "v": 1,
    }
    raw = json.dumps(by_hand, sort_keys=True, separators=(",", ":")).encode()
    assert rec.to_bytes() == raw
    assert rec.ref == hashlib.sha256(raw).hexdigest() == VECTOR_REF
    assert parse_work(raw) == rec


def test_amount_is_the_hold_rule_exactly() -> None:
    # 4 MiB for one hour = 4 MiB-hours; 0.01 Shell per GiB-day = 10^6 units / 24576 MiB-hours
    assert record().amount == amount("hold", mib_hours(4 * MIB, HOUR_MS)) == 4 * 10**6 // 24576 == 162
    assert hold_amount(1024 * MIB) == amount("hold", 1024) == 41666
    for wrong in (161, 163, 0, -162, 162.0, True, "162"):
        with pytest.raises(BadWork) as err:
            check_work(doc(amount=wrong))
        assert err.value.reason == "wrong_amount"
    with pytest.raises(BadWork) as err:  # under one MiB-hour: owed nothing, so no record
        make_hold(WORKER.public_key_hex, START, {A: MIB - 1})
    assert err.value.reason == "wrong_amount"


@pytest.mark.parametrize(
    "change",
    [
        {"start": START + 1, "end": START + 1 + HOLD_PERIOD_MS},  # off the grid
        {"end": START + 2 * HOLD_PERIOD_MS},  # two periods in one record
        {"end": START},
        {"start": -HOLD_PERIOD_MS, "end": 0},
        {"rule": "serve"},
        {"v": 2},
        {"d": "borgusb.ledger.tx"},
        {"claimant": "02" + "zz" * 32},
        {"shards": []},
        {"shards": [{"h": B, "n": MIB}, {"h": A, "n": 3 * MIB}] if A < B else [{"h": A, "n": 3 * MIB}]},  # order
        {"shards": [{"h": A, "n": MIB}, {"h": A, "n": MIB}]},  # twice
        {"shards": [{"h": A.upper(), "n": 4 * MIB}]},
        {"shards": [{"h": A, "n": MAX_SHARD + 1}]},
        {"shards": [{"h": A, "n": 0}]},
        {"shards": [{"h": A, "n": 4 * MIB, "x": 1}]},
        {"extra": 1},
    ],
)
def test_malformed_records_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(BadWork) as err:
        check_work(doc(**change))
    assert err.value.reason in ("bad_work", "wrong_amount")


def test_bounds() -> None:
    many = {hashlib.sha256(str(i).encode()).hexdigest(): MAX_SHARD for i in range(MAX_SHARDS)}
    rec = make_hold(WORKER.public_key_hex, START, many)
    assert len(rec.to_bytes()) <= MAX_WORK_BYTES  # the most a record may list fits the wire bound
    assert rec.amount == hold_amount(MAX_SHARDS * MAX_SHARD)
    with pytest.raises(BadWork):
        make_hold(WORKER.public_key_hex, START, {**many, A: MIB})
    with pytest.raises(BadWork):
        parse_work(b" " + record().to_bytes())  # not canonical
    with pytest.raises(BadWork):
        parse_work(b"[" * (MAX_WORK_BYTES + 1))


def test_grid() -> None:
    assert period_start(START) == START == period_start(START + HOLD_PERIOD_MS - 1)
    assert period_start(START + HOLD_PERIOD_MS) == START + HOLD_PERIOD_MS


def test_claim_matches_its_record_and_period() -> None:
    rec = record()
    end = rec.end

    def claim(**kw: Any):
        args = {"seq": 1, "prev": ZERO_HASH, "amount": rec.amount, "ref": rec.ref, "ts": end + 1000, **kw}
        return sign_reward(kw.pop("key", WORKER), **{k: v for k, v in args.items() if k != "key"})

    check_claim(rec, claim(), end)  # the period just ended
    check_claim(rec, claim(), end + MAX_CLAIM_AGE_MS)
    cases = [
        (claim(ref=hashlib.sha256(b"other").hexdigest()), end, "work_ref_mismatch"),
        (claim(key=fixed_key("someone else")), end, "wrong_claimant"),
        (claim(amount=rec.amount + 1), end, "wrong_amount"),
        (claim(), end - 1, "not_ended"),
        (claim(), end + MAX_CLAIM_AGE_MS + 1, "too_old"),
    ]
    for tx, now, reason in cases:
        with pytest.raises(BadWork) as err:
            check_claim(rec, tx, now)
        assert err.value.reason == reason
    transfer = sign_transfer(WORKER, seq=1, prev=ZERO_HASH, to=fixed_key("x").public_key_hex, amount=1, ts=end)
    with pytest.raises(BadWork):
        check_claim(rec, transfer, end)


def test_sample_is_fixed_per_claim_and_verifier() -> None:
    many = {hashlib.sha256(str(i).encode()).hexdigest(): MIB for i in range(40)}
    rec = make_hold(WORKER.public_key_hex, START, many)
    one = sample(rec.shards, "c" * 64, "v1")
    assert len(one) == 3 and set(one) <= set(rec.shards)
    assert sample(rec.shards, "c" * 64, "v1") == one
    draws = {tuple(sample(rec.shards, "c" * 64, f"v{i}")) for i in range(5)}
    assert len(draws) > 1  # different reserve holders ask for different shards
    assert sorted(sample(record().shards, "c" * 64, "v1")) == sorted(record().shards)  # fewer than 3: all of them


def test_the_claim_loop_waits_for_the_next_period_or_retries_soon() -> None:
    rng = random.Random(7)
    now = START + 1_234_567
    for _ in range(50):
        wait = next_wait_ms(now, None, rng)  # paid: the next claim falls in the spread after this period
        assert START + HOLD_PERIOD_MS <= now + wait < START + HOLD_PERIOD_MS + CLAIM_SPREAD_MS
        assert next_wait_ms(now, "claimed_before", rng) > 0
        assert RETRY_MS[0] <= next_wait_ms(now, "conflicting_spend", rng) < RETRY_MS[1]
        assert RETRY_MS[0] <= next_wait_ms(now, "no_quorum", rng) < RETRY_MS[1]
