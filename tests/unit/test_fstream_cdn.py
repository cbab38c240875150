"""`cdn.PeerCaches`: a shard from another fStream cell's cache is kept only if its SHA-256 is the
manifest's; a peer that sends other bytes, a short body or nothing is counted and passed over."""

from __future__ import annotations

import hashlib
from collections import Counter

from aiohttp import web
from aiohttp.test_utils import TestServer

from borgusb.cells.fstream.cdn import PeerCaches

GOOD = b"shard bytes" * 100


async def test_only_bytes_that_match_the_hash_are_kept() -> None:
    answers = {"1": GOOD, "2": b"X" * len(GOOD), "3": GOOD[:-1]}

    async def cached(request: web.Request) -> web.Response:
        body = answers.get(request.match_info["i"])
        return web.Response(body=body) if body is not None else web.json_response({"error": "not_cached"}, status=404)

    app = web.Application()
    app.router.add_get("/cached/{oid}/{i}", cached)
    async with TestServer(app, host="127.0.0.1") as server:
        counters: Counter[str] = Counter()

        async def endpoints() -> list[str]:
            return ["127.0.0.1"]

        cdn = PeerCaches(endpoints, server.port, counters)
        try:
            sha = hashlib.sha256(GOOD).hexdigest()
            assert await cdn.fetch("a" * 64, 1, len(GOOD), sha) == GOOD
            assert await cdn.fetch("a" * 64, 2, len(GOOD), sha) is None  # other bytes
            assert await cdn.fetch("a" * 64, 3, len(GOOD), sha) is None  # a short body
            assert await cdn.fetch("a" * 64, 4, len(GOOD), sha) is None  # not cached there
        finally:
            await cdn.close()
    assert (counters["fstream_cdn_hit"], counters["fstream_cdn_bad"], counters["fstream_cdn_miss"]) == (1, 2, 3)
