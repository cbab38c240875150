"""``locate`` in a small network: every known shard node asked directly, the find only as a fallback.

The cell is built in-process, never started, with an empty directory (it knows only itself)
and its tree taken as settled; its broadcasts are recorded instead of sent, so nothing here
opens a connection. The cluster tests (test_shard_cluster.py) check the same on real nodes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from borgusb.cells.shard.cell import ShardCell
from borgusb.clock import SystemClock
from borgusb.dstream import Holder
from borgusb.keys import SigningKey
from borgusb.shard import model
from tests.unit.shardcell import SPEC, shard_cell

OWNER, PEER = SigningKey.generate(), SigningKey.generate()
SS = 64


@pytest.fixture
async def cell(tmp_path: Path) -> AsyncIterator[ShardCell]:
    async with shard_cell(tmp_path, settled=True) as c:
        c.sent = []  # type: ignore[attr-defined]  # its broadcasts, recorded instead of sent
        c.broadcast = lambda kind, data=None, origin=None: c.sent.append((kind, data)) or "b"  # type: ignore[method-assign,attr-defined,func-returns-value]
        yield c


def store_object(cell: ShardCell, parts: int, held: int) -> tuple[dict[str, Any], list[str]]:
    """An object of `parts` shards (R = 1) whose manifest and first `held` shards this node keeps."""
    datas = [os.urandom(SS) for _ in range(parts)]
    hashes = [model.sha256_hex(d) for d in datas]
    oid = model.object_id(SS * parts, SS, hashes)
    t = SystemClock().now_ms()
    for d, h in list(zip(datas, hashes))[:held]:
        cell.store.put(model.sign_record(OWNER, h, SS, t), d, obj=oid)
    m = model.sign_manifest(OWNER, SS * parts, SS, 1, hashes, t)
    cell.store.put_manifest(m)
    return m, hashes


async def find_sent(cell: ShardCell, timeout_s: float = 30.0) -> list[tuple[str, Any]]:
    """What the cell broadcast, once it broadcast anything (within timeout_s)."""
    async with asyncio.timeout(timeout_s):
        while not cell.sent:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
    return cell.sent  # type: ignore[attr-defined]


async def test_a_network_it_knows_whole_is_asked_directly_and_no_find_goes_out(cell: ShardCell) -> None:
    m, _ = store_object(cell, parts=3, held=3)
    loc = await cell.locate(m["id"])
    assert loc["found"] and loc["copies"] == [1, 1, 1]
    assert cell.sent == []  # type: ignore[attr-defined]
    assert cell.counters["shard_locate_direct"] == 1 and cell.counters["shard_locate_direct_short"] == 0


async def test_a_shard_no_known_node_holds_sends_the_find_and_takes_its_answer(cell: ShardCell) -> None:
    m, hashes = store_object(cell, parts=3, held=2)
    locating = asyncio.ensure_future(cell.locate(m["id"], wait_s=30))
    [(kind, data)] = await find_sent(cell)  # the direct asks (only this node) end short; then the find goes out
    assert kind == "find" and data["id"] == m["id"]
    assert cell.counters["shard_locate_direct_short"] == 1
    assert not locating.done()  # waiting for the holder the directory does not list
    peer = Holder(PEER.public_key_hex, "127.0.0.9", SPEC.dna_row().recp_port)
    cell._on_have(peer, {"q": data["q"], "id": m["id"], "m": None, "h": [hashes[2]]})
    loc = await asyncio.wait_for(locating, 10)
    assert loc["found"] and loc["copies"] == [1, 1, 1]
    holders = [Holder.from_json(h) for h in loc["holders"]]
    assert [holders[i].pubkey for i in loc["shards"][2]] == [PEER.public_key_hex]


async def test_a_locate_checks_each_manifest_once_and_refuses_a_forged_one(
    cell: ShardCell, monkeypatch: pytest.MonkeyPatch
) -> None:
    m, hashes = store_object(cell, parts=3, held=2)
    checks: list[str] = []
    real = model.check_manifest

    def counted(doc: Any) -> Any:
        checks.append(doc["s"])
        return real(doc)

    monkeypatch.setattr(model, "check_manifest", counted)
    forged = {**m, "t": m["t"] + 1}  # a later version, its signature copied: it must not win
    locating = asyncio.ensure_future(cell.locate(m["id"], wait_s=30))
    [(_, data)] = await find_sent(cell)
    peer = Holder(PEER.public_key_hex, "127.0.0.9", SPEC.dna_row().recp_port)
    cell._on_have(peer, {"q": data["q"], "id": m["id"], "m": forged, "h": [hashes[2]]})
    loc = await asyncio.wait_for(locating, 10)
    assert loc["found"] and loc["manifest"]["t"] == m["t"]  # the owner's, not the forged one
    assert len(checks) == 2  # the node's own manifest and the forged one, each once, however often weighed
    assert cell.counters["shard_rejected:bad_manifest"] == 1
