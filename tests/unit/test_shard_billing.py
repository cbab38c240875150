"""The ``storage`` price at one holder (borgusb/shard/billing.py, cells/shard/selling.py): each holder
meters the MiB-hours of each owner's copies it keeps, charges what lies beyond the owner's free share
here, and takes a new put's shard only within the free share or with credit; a repair is never
refused. The shard cell runs in-process on a manual clock; paying ahead through the ledger is
tests/integration/test_storage_credit_cluster.py's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from borgusb.cells.kit import RequestError
from borgusb.cells.shard.cell import ShardCell
from borgusb.cells.shard.settings import ShardSettings
from borgusb.clock import ManualClock, SystemClock
from borgusb.dna import get
from borgusb.ledger import ZERO_HASH, sign_transfer
from borgusb.ledger.credit import DAY_MS, credit_ref
from borgusb.ledger.rules import FREE_QUOTA_BYTES, GIB, HOUR_MS, MIB, amount, mib_hours
from borgusb.ledger.sim import fixed_key
from borgusb.shard import model
from borgusb.shard.billing import MIB_HOUR, StorageMeter, free_per_day, free_share

from .test_peerpays_cell import post

NODE = fixed_key("storage holder")
ALICE = fixed_key("storage owner alice")
BOB = fixed_key("storage owner bob")


def test_the_free_share_is_a_holders_expected_part_of_the_quota_with_slack() -> None:
    assert free_share(3, 60) == -(-2 * FREE_QUOTA_BYTES * 3 // 60) == 107_374_183  # a tenth of the 1 GiB
    assert free_share(3, 3) == FREE_QUOTA_BYTES  # a small network: never more than the quota
    assert free_per_day(GIB) == 24 * 1024  # MiB-hours of holding it a whole day
    with pytest.raises(ValueError):
        free_share(0, 10)


def test_the_meter_charges_whole_mib_hours_and_carries_the_rest() -> None:
    meter = StorageMeter()
    assert meter.tick(0, {"a": 10 * MIB}) == {}  # the first tick starts the clock
    assert meter.tick(HOUR_MS // 4, {"a": 10 * MIB, "b": MIB}) == {"a": 2}  # 2.5 MiB-hours: 0.5 carried
    assert meter.carry == {"a": MIB_HOUR // 2, "b": MIB_HOUR // 4}
    assert meter.tick(HOUR_MS // 2, {"a": 10 * MIB, "b": MIB}) == {"a": 3}  # 2.5 + 0.5 carried
    assert meter.tick(HOUR_MS // 4, {"a": 10 * MIB}) == {}  # a clock that went back charges nothing
    assert meter.tick(HOUR_MS, {"a": 10 * MIB}) == {"a": 5} and "b" not in meter.carry  # b holds nothing now
    assert meter.tick(HOUR_MS + 30 * HOUR_MS, {"a": MIB}, max_step_ms=HOUR_MS) == {"a": 1}  # a jump: one step


async def test_a_holder_charges_its_copies_beyond_the_free_share_and_gates_new_puts(tmp_path: Path) -> None:
    clock = ManualClock(SystemClock().now_ms())
    settings = ShardSettings.from_sources(
        {"storage_free": MIB, "quota": 4 * MIB, "bill_ms": 0, "earn": False, "scrub_bps": 0, "repair_ms": 0}, {}
    )
    cell = ShardCell(get("shardTreeCell"), "127.0.0.9", key=NODE, data_dir=tmp_path, settings=settings, clock=clock)
    data = os.urandom(3 * MIB)
    for at in range(0, len(data), MIB):  # three shards of Alice's, as a put would have placed them
        piece = data[at : at + MIB]
        cell.store.put(model.sign_record(ALICE, model.sha256_hex(piece), len(piece), clock.now_ms()), piece)

    usage = await post(ALICE, cell, "shard.usage", {})
    assert (usage["held"], usage["free_bytes"], usage["balance"]) == (3 * MIB, MIB, 0)
    assert usage["payee"] == NODE.public_key_hex and usage["ref"] == credit_ref("storage")

    # a new put's shard beyond the free share waits for a payment; another owner's does not, nor a repair
    with pytest.raises(RequestError) as err:
        cell._may_store(ALICE.public_key_hex, MIB)
    assert (err.value.reason, err.value.status) == ("payment_required", 402)
    cell._may_store(BOB.public_key_hex, MIB)
    cell._may_store(NODE.public_key_hex, 10 * GIB)  # the node's own key is never charged
    assert cell.counters["shard_refused:payment_required"] == 1
    # all owners together are kept free at most half the store (2 MiB here): Alice's 1 and Bob's 1
    cell._stored(BOB.public_key_hex, MIB)
    with pytest.raises(RequestError) as err:
        cell._may_store(fixed_key("a third owner").public_key_hex, MIB)
    assert err.value.reason == "payment_required" and "for everyone together" in str(err.value.detail)
    assert cell.counters["shard_refused:payment_required"] == 2
    # credit admits a shard only when it pays a day of all that lies beyond the free share
    one_day = amount("storage", mib_hours(3 * MIB, DAY_MS))  # 2 MiB beyond + the new 1 MiB
    tiny = sign_transfer(
        ALICE,
        seq=1,
        prev=ZERO_HASH,
        to=NODE.public_key_hex,
        amount=one_day - 1,
        ts=clock.now_ms(),
        ref=credit_ref("storage"),
    )
    cell.storage.book.pay_in(tiny, clock.now_ms())
    with pytest.raises(RequestError):
        cell._may_store(ALICE.public_key_hex, MIB)
    more = sign_transfer(
        ALICE, seq=2, prev=tiny.id, to=NODE.public_key_hex, amount=1, ts=clock.now_ms(), ref=credit_ref("storage")
    )
    cell.storage.book.pay_in(more, clock.now_ms())
    cell._may_store(ALICE.public_key_hex, MIB)

    # a day later: 72 MiB-hours held, 24 of them free, the rest charged once, priced once
    assert cell.bill() == {}  # the first round starts the meter
    clock.advance(24 * HOUR_MS)
    assert cell.bill() == {ALICE.public_key_hex: amount("storage", 48)}
    assert cell.storage.book.balance(ALICE.public_key_hex) == one_day - amount("storage", 48)
    cell.storage.flush()
    again = ShardCell(get("shardTreeCell"), "127.0.0.9", key=NODE, data_dir=tmp_path, settings=settings, clock=clock)
    assert again.storage.book.balance(ALICE.public_key_hex) == one_day - amount("storage", 48)  # kept
    await cell.peers.close()
    await again.peers.close()
