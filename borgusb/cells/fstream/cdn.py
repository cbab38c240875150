"""The fStream cells as a CDN: a cell that misses a shard asks other fStream cells' caches for it
before the holders (the tree of fStream endpoints as the content's distribution network).

A cell answers ``GET /cached/<id>/<i>`` on its monPort with shard i of object id if its cache holds
it, and ``GET /cached/<id>`` with the whole object if its cache holds all of it; 404 otherwise: it
never pulls anything for the asker. The asker asks at most `ASK` other endpoints from the service
registry, least busy first, each with a short timeout, and keeps bytes only shard by shard, each
whose SHA-256 is the shard's hash in the owner-signed manifest (a peer's word counts for nothing):

* `PeerCaches.fetch`: one shard of a windowed object;
* `PeerCaches.fetch_whole`: an object pulled whole, streamed from one cell's cache into the pull's
  ``.part`` file, each shard checked, written and handed to the readers as it arrives; the holders
  (DStream's `Receiver`, which resumes from the ``.part``) are asked only for what the peer did not
  give, and not at all when it gave everything.

On a miss or a lie the holders are asked as before. Counted on the cell: ``fstream_cdn_hit``,
``fstream_cdn_miss``, ``fstream_cdn_bad`` (per shard), ``fstream_cdn_whole`` (objects whole from a
peer).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp

from ...dstream.receiver import check_free_space

ASK = 2  # other endpoints asked for one shard, or for one whole object
TIMEOUT = aiohttp.ClientTimeout(total=5, sock_connect=1)
MIN_RATE = 1 << 20  # bytes/s a peer streaming a whole object must keep up: a trickle cannot hold a pull

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

    async def fetch_whole(
        self,
        oid: str,
        bounds: Sequence[tuple[int, int]],
        hashes: Sequence[str],
        part: Path,
        landed: Callable[[int], None],
    ) -> int:
        """Stream `oid` from another cell's cache that holds it whole into `part` (created at the
        object's size), each shard's SHA-256 checked against `hashes` before it is written and
        `landed(i)` called; stops at the first bad shard or stall. Returns how many shards landed."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        size = sum(n for _, n in bounds)
        for ip in (await self.endpoints())[:ASK]:
            host = f"[{ip}]" if ":" in ip else ip
            written = 0
            try:
                timeout = aiohttp.ClientTimeout(total=10 + size / MIN_RATE, sock_connect=1, sock_read=5)
                async with self._session.get(f"http://{host}:{self.mon_port}/cached/{oid}", timeout=timeout) as resp:
                    if resp.status != 200 or resp.content_length != size:
                        continue
                    fd = await asyncio.to_thread(_open_part, part, size)
                    try:
                        for i, (off, n) in enumerate(bounds):
                            data = await resp.content.readexactly(n)
                            if not await asyncio.to_thread(_check_and_write, fd, data, off, hashes[i]):
                                self.counters["fstream_cdn_bad"] += 1
                                break
                            written += 1
                            landed(i)
                    finally:
                        os.close(fd)
            except (aiohttp.ClientError, TimeoutError, asyncio.IncompleteReadError):
                pass
            if written:
                self.counters["fstream_cdn_hit"] += written
                if written == len(bounds):
                    self.counters["fstream_cdn_whole"] += 1
                return written
        self.counters["fstream_cdn_miss"] += 1
        return 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _open_part(part: Path, size: int) -> int:
    """The pull's ``.part`` file, open for writing at the object's size (a full disk is said first)."""
    part.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(part.parent, size)
    fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_and_write(fd: int, data: bytes, offset: int, sha256: str) -> bool:
    """Write a shard at its offset only if it is the manifest's bytes."""
    if hashlib.sha256(data).hexdigest() != sha256:
        return False
    os.pwrite(fd, data, offset)
    return True
