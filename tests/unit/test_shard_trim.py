"""`Trimmer.trim_round`: what keeps a copy beyond the placement (the cluster test drops one).

The cell is built in-process, never started, its tree taken as settled; the one other shard
node in its directory listens nowhere (127.0.0.250), so every ask and every proof fails fast.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from borgusb.cells.shard.cell import ShardCell
from borgusb.cells.shard.trim import TRIM_ASKS
from borgusb.clock import SystemClock
from borgusb.dstream import Holder
from borgusb.keys import SigningKey
from borgusb.shard import model, placement
from tests.unit.shardcell import shard_cell

OWNER, PEER = SigningKey.generate(), SigningKey.generate()
SS = 64


@pytest.fixture
async def cell(tmp_path: Path) -> AsyncIterator[ShardCell]:
    async with shard_cell(tmp_path, settled=True) as c:
        c.directory[PEER.public_key_hex] = (Holder(PEER.public_key_hex, "127.0.0.250", 1), c.clock.now_ms())
        yield c


def second_place_shard(cell: ShardCell) -> bytes:
    """Bytes of a shard whose lottery ranks the peer first and this node second."""
    while True:
        data = os.urandom(SS)
        if placement.rank(model.sha256_hex(data), cell.live())[0] == PEER.public_key_hex:
            return data


def store(cell: ShardCell, data: bytes, *, obj: bool = True, manifest_r: int | None = None) -> str:
    h = model.sha256_hex(data)
    oid = model.object_id(SS, SS, [h])
    t = SystemClock().now_ms()
    cell.store.put(model.sign_record(OWNER, h, SS, t), data, obj=oid if obj else None)
    if manifest_r is not None:
        cell.store.put_manifest(model.sign_manifest(OWNER, SS, SS, manifest_r, [h], t))
    return h


@pytest.mark.parametrize(
    ("obj", "manifest_r", "reason"),
    [
        (False, None, "no_object"),  # no object names it: its R is unknown
        (True, None, "no_manifest"),  # the object's manifest is neither here nor answered
        (True, 2, "placed"),  # R = 2 of 2 nodes: this node is a winner
        (True, 1, "unproved"),  # R = 1: the peer is the winner, but it served nothing
    ],
)
async def test_a_copy_is_kept_unless_the_winners_prove_theirs(
    cell: ShardCell, obj: bool, manifest_r: int | None, reason: str
) -> None:
    h = store(cell, second_place_shard(cell), obj=obj, manifest_r=manifest_r)
    assert await cell.trim_round() == 0
    assert cell.store.has(h)
    assert cell.counters[f"trim_kept:{reason}"] == 1
    assert cell.counters["shard_trimmed"] == 0


async def test_nothing_is_trimmed_while_the_tree_heals(cell: ShardCell) -> None:
    h = store(cell, second_place_shard(cell), manifest_r=1)
    cell.unsettled = lambda: True  # type: ignore[method-assign]
    assert await cell.trim_round() == 0 and cell.store.has(h)
    assert cell.counters["trim_kept:unsettled"] == 1


async def test_a_round_asks_for_at_most_its_budget_of_manifests(cell: ShardCell) -> None:
    asked: list[str] = []

    async def no_answer(h: Holder, oid: str) -> None:
        asked.append(oid)

    cell._ask = no_answer  # type: ignore[assignment,method-assign]  # every asked node has nothing
    for _ in range(TRIM_ASKS + 8):  # each shard its own object, whose manifest is nowhere
        store(cell, second_place_shard(cell))
    assert await cell.trim_round() == 0
    assert len(asked) == TRIM_ASKS == len(set(asked))
    assert cell.counters["trim_kept:no_manifest"] == TRIM_ASKS - 1  # the last one's check was cut short
    await cell.trim_round()  # the next round starts with the shard whose check was cut short
    assert asked[TRIM_ASKS] == asked[TRIM_ASKS - 1]
