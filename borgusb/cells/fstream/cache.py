"""The fStream cell's bounded cache: objects pulled shard by shard by DStream's `Receiver` (every
holder at once, each shard checked against the owner-signed manifest), served while they arrive.

An entry is one object's file (``<id>.part`` while it arrives, ``<id>`` once whole); readers wait
for the shards they need (`wait`), and `prefer` moves the pull to where a player seeked. The cache
holds at most `limit` bytes and `MAX_ENTRIES` objects; entries nobody reads go first, least
recently used first, and when every byte is being read a new object is refused (``cache_full``).
A pull that fails is dropped from the cache, so the next reader starts a fresh one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...dstream import Holder, Receiver, StreamError
from ...net.peer import PeerClient

MAX_ENTRIES = 256
RECENT = 64  # the last shards that landed, (object id's first 16 digits, index), on the status page
Locate = Callable[[str], Awaitable[tuple[dict[str, Any], list[list[Holder]]]]]


class CacheError(Exception):
    """An object that cannot be served from here; ``reason`` is one word, ``status`` the HTTP one."""

    def __init__(self, reason: str, detail: str, status: int) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.status = status


@dataclass
class Entry:
    oid: str
    path: Path
    size: int
    ss: int
    receiver: Receiver
    done: set[int] = field(default_factory=set)
    readers: int = 0
    used: float = field(default_factory=time.monotonic)
    failed: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[Any] | None = None

    def landed(self, i: int) -> None:
        self.done.add(i)
        self.changed.set()

    @property
    def complete(self) -> bool:
        return len(self.done) == len(self.receiver.bounds)


class ShardCache:
    def __init__(self, directory: Path, limit: int, peers: PeerClient, locate: Locate) -> None:
        shutil.rmtree(directory, ignore_errors=True)  # what an earlier process left is not known good
        directory.mkdir(parents=True, mode=0o700)
        self.dir = directory
        self.limit = limit
        self.peers = peers
        self.locate = locate
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self._opening: dict[str, asyncio.Future[Entry]] = {}
        self.stats = {"pulls": 0, "hits": 0, "evicted": 0, "failed": 0}
        self.recent: deque[tuple[str, int]] = deque(maxlen=RECENT)  # which shards a seek fetched first

    @property
    def used(self) -> int:
        return sum(e.size for e in self.entries.values())

    async def open(self, oid: str, max_size: int | None = None) -> Entry:
        """The object's entry, its pull started if it was not here; the caller holds it (readers + 1)
        until `release`. Raises `CacheError` (not_found, too_large, cache_full)."""
        entry = self.entries.get(oid)
        if entry is None:
            pending = self._opening.get(oid)
            if pending is None:
                pending = self._opening[oid] = asyncio.ensure_future(self._start(oid, max_size))
                pending.add_done_callback(lambda _: self._opening.pop(oid, None))
            entry = await asyncio.shield(pending)
        else:
            self.stats["hits"] += 1
        if max_size is not None and entry.size > max_size:
            raise CacheError("too_large", f"the object is {entry.size} bytes, more than {max_size}", 413)
        entry.readers += 1
        entry.used = time.monotonic()
        self.entries.move_to_end(oid)
        return entry

    def release(self, entry: Entry) -> None:
        entry.readers -= 1
        entry.used = time.monotonic()

    async def _start(self, oid: str, max_size: int | None) -> Entry:
        try:
            m, holders = await self.locate(oid)
        except StreamError as exc:
            raise CacheError("not_found", str(exc)[:200], 404) from None
        size = m["size"]
        if size > self.limit or (max_size is not None and size > max_size):
            raise CacheError("too_large", f"the object is {size} bytes; this cache holds {self.limit}", 413)
        self._make_room(size)
        path = self.dir / oid
        entry = Entry(oid, path, size, m["ss"], receiver=Receiver(self.peers, m, holders, path))
        entry.receiver.on_shard = lambda i: self._landed(entry, i)
        self.entries[oid] = entry
        self.stats["pulls"] += 1
        entry.task = asyncio.ensure_future(self._pull(entry))
        return entry

    def _landed(self, entry: Entry, i: int) -> None:
        self.recent.append((entry.oid[:16], i))
        entry.landed(i)

    async def _pull(self, entry: Entry) -> None:
        try:
            await entry.receiver.run()
        except (StreamError, OSError) as exc:
            entry.failed = str(exc)[:200] or exc.__class__.__name__
            self.stats["failed"] += 1
            if self.entries.get(entry.oid) is entry:
                del self.entries[entry.oid]
            _unlink(entry)
        finally:
            entry.changed.set()

    def _make_room(self, size: int) -> None:
        idle = [e for e in self.entries.values() if e.readers == 0]
        idle.sort(key=lambda e: e.used)
        while idle and (self.used + size > self.limit or len(self.entries) >= MAX_ENTRIES):
            self._evict(idle.pop(0))
        if self.used + size > self.limit or len(self.entries) >= MAX_ENTRIES:
            raise CacheError("cache_full", "every cached object is being read; retry or use another endpoint", 503)

    def _evict(self, entry: Entry) -> None:
        del self.entries[entry.oid]
        if entry.task is not None:
            entry.task.cancel()
        _unlink(entry)
        self.stats["evicted"] += 1

    async def wait(self, entry: Entry, i: int, timeout_s: float) -> None:
        """Until shard i is in (TimeoutError past timeout_s; CacheError if the pull failed)."""
        deadline = time.monotonic() + timeout_s
        while i not in entry.done:
            if entry.failed is not None:
                raise CacheError("pull_failed", entry.failed, 502)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"shard #{i} of {entry.oid[:16]} did not arrive in {timeout_s:g} s")
            entry.changed.clear()
            await asyncio.wait_for(entry.changed.wait(), left)

    @staticmethod
    def read(entry: Entry, offset: int, n: int) -> bytes:
        """Bytes of checked shards (in a worker thread): from the whole file, or its .part while it arrives."""
        for _ in range(2):  # the .part may be renamed between the two tries
            for path in (entry.path, entry.receiver.part):
                try:
                    with open(path, "rb") as f:
                        return os.pread(f.fileno(), n, offset)
                except FileNotFoundError:
                    continue
        raise CacheError("pull_failed", "the object's file is gone", 502)

    async def close(self) -> None:
        tasks = [e.task for e in self.entries.values() if e.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def _unlink(entry: Entry) -> None:
    for path in (entry.path, entry.receiver.part):
        path.unlink(missing_ok=True)
