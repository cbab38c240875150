"""The fStream cells as a CDN: a cell that misses a shard asks other fStream cells' caches for it
before the holders (the tree of fStream endpoints as the content's distribution network).

A cell answers ``GET /cached/<id>/<i>`` on its monPort with shard i of object id if its cache holds
it, and 404 otherwise: it never pulls anything for the asker. The asker (`PeerCaches.fetch`) asks
at most `ASK` other endpoints from the service registry, least busy first, each with a short
timeout, and keeps the bytes only if their SHA-256 is the shard's hash in the owner-signed manifest
(a peer's word counts for nothing); on a miss or a lie it pulls from the holders as before.
Counted on the cell: ``fstream_cdn_hit``, ``fstream_cdn_miss``, ``fstream_cdn_bad``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable

import aiohttp

ASK = 2  # other endpoints asked for one shard
TIMEOUT = aiohttp.ClientTimeout(total=5, sock_connect=1)

Endpoints = Callable[[], Awaitable[list[str]]]


class PeerCaches:
    def __init__(self, endpoints: Endpoints, mon_port: int, counters: Counter[str]) -> None:
        self.endpoints = endpoints
        self.mon_port = mon_port
        self.counters = counters
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, oid: str, i: int, length: int, sha256: str) -> bytes | None:
        """Shard i of `oid` (`length` bytes whose SHA-256 is `sha256`) from another cell's cache, or None."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        for ip in (await self.endpoints())[:ASK]:
            host = f"[{ip}]" if ":" in ip else ip
            try:
                async with self._session.get(f"http://{host}:{self.mon_port}/cached/{oid}/{i}") as resp:
                    if resp.status != 200:
                        continue
                    # the declared length first: aiohttp then reads exactly that many bytes
                    data = await resp.read() if resp.content_length == length else b""
            except (aiohttp.ClientError, TimeoutError):
                continue
            if len(data) == length and await asyncio.to_thread(_sha256, data) == sha256:
                self.counters["fstream_cdn_hit"] += 1
                return data
            self.counters["fstream_cdn_bad"] += 1
        self.counters["fstream_cdn_miss"] += 1
        return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
