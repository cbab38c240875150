"""`PeerCaches.fetch_whole` against a real HTTP peer on loopback: what it keeps and what it refuses.

The peer is a small aiohttp server playing another fStream cell's ``GET /cached/<id>``: honest,
lying about one shard, absent, or sending fewer bytes than the object. Each shard is kept only if
its SHA-256 is the manifest's; the pull stops at the first bad one (the holders give the rest).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from borgusb.cells.fstream.cdn import PeerCaches

SS = 64 * 1024
DATA = random.Random(5).randbytes(3 * SS + 1000)
BOUNDS = [(i * SS, min(SS, len(DATA) - i * SS)) for i in range(4)]
HASHES = [hashlib.sha256(DATA[o : o + n]).hexdigest() for o, n in BOUNDS]
OID = "ab" * 32


@pytest.fixture
async def peer() -> AsyncIterator[tuple[int, dict[str, bytes | None]]]:
    """A peer cache on 127.0.0.1; the test sets what it answers (None: 404 not_cached)."""
    answer: dict[str, bytes | None] = {"body": DATA}

    async def cached(request: web.Request) -> web.Response:
        body = answer["body"]
        if body is None:
            return web.json_response({"error": "not_cached"}, status=404)
        return web.Response(body=body, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/cached/{oid}", cached)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port, answer
    finally:
        await runner.cleanup()


async def pull(port: int, tmp_path: Path) -> tuple[int, list[int], Counter[str], Path]:
    counters: Counter[str] = Counter()

    async def endpoints() -> list[str]:
        return ["127.0.0.1"]

    caches = PeerCaches(endpoints, port, counters)
    landed: list[int] = []
    part = tmp_path / "obj.part"
    try:
        got = await caches.fetch_whole(OID, BOUNDS, HASHES, part, landed.append)
    finally:
        await caches.close()
    return got, landed, counters, part


async def test_an_honest_peer_gives_every_shard_checked(peer, tmp_path: Path) -> None:
    port, _ = peer
    got, landed, counters, part = await pull(port, tmp_path)
    assert got == 4 and landed == [0, 1, 2, 3] and part.read_bytes() == DATA
    assert counters["fstream_cdn_whole"] == 1 and counters["fstream_cdn_hit"] == 4


async def test_a_lying_peer_is_stopped_at_its_first_bad_shard(peer, tmp_path: Path) -> None:
    port, answer = peer
    bad = bytearray(DATA)
    bad[2 * SS + 7] ^= 1  # shard 2 altered
    answer["body"] = bytes(bad)
    got, landed, counters, part = await pull(port, tmp_path)
    assert got == 2 and landed == [0, 1] and counters["fstream_cdn_bad"] == 1
    assert part.read_bytes()[: 2 * SS] == DATA[: 2 * SS]  # what was kept is the object's bytes
    assert part.read_bytes()[2 * SS :] == bytes(len(DATA) - 2 * SS)  # the altered shard was never written
    assert counters["fstream_cdn_whole"] == 0


@pytest.mark.parametrize("body", [None, DATA[:-1], DATA + b"x"])
async def test_an_absent_peer_or_one_with_another_length_gives_nothing(peer, tmp_path: Path, body) -> None:
    port, answer = peer
    answer["body"] = body
    got, landed, counters, part = await pull(port, tmp_path)
    assert (got, landed) == (0, []) and counters["fstream_cdn_miss"] == 1 and not part.exists()
