"""A shard request or broadcast cannot make a node connect wherever its sender likes (issue 15 item 10).

`find` broadcasts named an ip:port that every holder then posted its answer to, and `shard.fetch`
named the addresses to fetch from: any key could point every shard node at any host and port.
Now both go only to shard nodes of the node's own directory, at the addresses it has for them.
The cell is built in-process, never started: nothing here may open a connection.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from borgusb import envelope
from borgusb.cells.shard.cell import ShardCell
from borgusb.cells.shard.locate import FIND_RATE
from borgusb.clock import SystemClock
from borgusb.dstream import Holder
from borgusb.keys import SigningKey
from borgusb.shard import model
from tests.unit.shardcell import shard_cell

STRANGER, OWNER, PEER = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()


@pytest.fixture
async def cell(tmp_path: Path) -> AsyncIterator[ShardCell]:
    async with shard_cell(tmp_path) as c:
        yield c


def stored_object(cell: ShardCell) -> str:
    data = os.urandom(100)
    h = model.sha256_hex(data)
    cell.store.put(model.sign_record(OWNER, h, len(data), SystemClock().now_ms()), data, None)
    return h


async def test_a_find_from_an_unknown_key_is_not_answered_anywhere(cell: ShardCell) -> None:
    h = stored_object(cell)
    cell.store.hashes_of = lambda oid: [h] if oid == h else []  # type: ignore[method-assign]
    await cell._answer_find(STRANGER.public_key_hex, {"q": "q1", "id": h, "ip": "192.0.2.9", "port": 1})
    assert cell.counters["find_unknown_origin"] == 1
    assert cell.counters["shard_have_failed"] == 0 and cell.counters["shard_have_sent"] == 0  # no attempt


async def test_finds_from_a_known_node_are_rate_limited(cell: ShardCell) -> None:
    h = stored_object(cell)
    cell.store.hashes_of = lambda oid: [h] if oid == h else []  # type: ignore[method-assign]
    known = Holder(PEER.public_key_hex, "127.0.0.250", 1)  # nothing listens: each answer fails fast
    cell.directory[PEER.public_key_hex] = (known, cell.clock.now_ms())
    t0 = time.monotonic()
    for i in range(60):
        await cell._answer_find(PEER.public_key_hex, {"q": f"q{i}", "id": h})
    # the burst (2 x FIND_RATE) and what refilled while the loop ran (longer on a loaded machine)
    allowed = 2 * FIND_RATE + FIND_RATE * (time.monotonic() - t0)
    assert cell.counters["find_rate_limited"] >= 60 - allowed - 1
    assert cell.counters["find_rate_limited"] > 0
    assert cell.counters["shard_have_failed"] + cell.counters["find_rate_limited"] == 60


async def test_a_fetch_goes_only_to_known_nodes_at_their_known_address(cell: ShardCell) -> None:
    known = Holder(PEER.public_key_hex, "127.0.0.250", 13355)
    cell.directory[PEER.public_key_hex] = (known, cell.clock.now_ms())
    named = [Holder(PEER.public_key_hex, "192.0.2.66", 80), Holder(STRANGER.public_key_hex, "192.0.2.67", 80)]
    assert cell._known(named) == [known]  # the directory's address, not the request's
    assert cell.counters["fetch_source_unknown"] == 1

    to = envelope.address(cell.key.public_key_hex, cell.dna.recp_port)
    payload = {"h": "ab" * 32, "from": [[STRANGER.public_key_hex, "192.0.2.67", 80]]}
    env = cell.verifier.verify(envelope.sign_bytes(PEER, "shard.fetch", payload, cell.clock, to=to))
    reply = await cell._dispatch(env, cell.handlers.receptors["shard.fetch"], (env,), "application/json")
    assert reply.status == 403 and b"unknown_source" in reply.body  # type: ignore[operator]
