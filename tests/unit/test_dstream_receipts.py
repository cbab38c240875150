"""A receipts hand-in cut short (the loop ends while a holder has not answered yet) leaves no
gather behind whose CancelledError nobody retrieved: asyncio logs one as an error when it is
collected, at any later moment of the process (CI saw it in an unrelated test)."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path

import pytest

from borgusb.clock import SystemClock
from borgusb.dstream.frames import Holder
from borgusb.dstream.receiver import Receiver
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient
from borgusb.shard.model import sha256_hex, sign_manifest

DATA = b"one shard"


async def cut_short(out: Path, port: int, accepted: list[asyncio.StreamWriter]) -> None:
    """A hand-in to a holder at `port` that never answers, cancelled while its post waits."""
    clock = SystemClock()
    owner = SigningKey.generate()
    m = sign_manifest(owner, len(DATA), len(DATA), 1, [sha256_hex(DATA)], clock.now_ms())
    holder = Holder(SigningKey.generate().public_key_hex, "127.0.0.1", port)
    async with PeerClient(owner, clock, Verifier(clock), timeout_s=30) as peers:
        rx = Receiver(peers, m, [[holder]], out)
        rx.served[holder.pubkey] = {m["shards"][0]: len(DATA)}
        task = asyncio.ensure_future(rx._hand_in_receipts({holder.pubkey: holder}))
        deadline = asyncio.get_running_loop().time() + 30
        while not accepted:  # the post is on its way
            assert asyncio.get_running_loop().time() < deadline, "the hand-in never connected"
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.wait([task])
        assert task.cancelled()


async def test_a_cancelled_hand_in_leaves_nothing_unretrieved(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accepts and never answers: the receipt's post waits

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        await cut_short(tmp_path / "out", server.sockets[0].getsockname()[1], accepted)
    finally:
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()  # the cancelled hand-in's futures go now, not in some later test
    assert "never retrieved" not in caplog.text
