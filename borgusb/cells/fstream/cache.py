"""The fStream cell's bounded cache: objects pulled shard by shard by DStream's `Receiver` (every
holder at once, each shard checked against the owner-signed manifest), served while they arrive.

An object of at most a quarter of the cache is pulled whole (an `Entry`: one file, ``<id>.part``
while it arrives, ``<id>`` once whole); a larger one, of any size, is kept as a window of shards
around its readers' play positions (`ahead.Windowed`), evicted behind them. Readers wait for the
shards they need (`wait`, which also tells a windowed object where the reader is), and `prefer`
moves the pull to where a player seeked. The cache holds at most `limit` bytes (``peak`` on the
status page is the most it held) and `MAX_ENTRIES` objects; whole objects nobody reads and shards
no reader is before go first, least recently used first, and when nothing can go a new whole
object is refused (``cache_full``). A pull that fails is dropped from the cache, so the next
reader starts a fresh one.
"""

from __future__ import annotations

import asyncio
import math
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
from .ahead import MAX_FETCHES, Windowed

MAX_ENTRIES = 256
RECENT = 64  # the last shards that landed, (object id's first 16 digits, index), on the status page
WHOLE = 4  # objects of at most limit / WHOLE bytes are pulled whole
FAR = float(2**62)  # making room for a new object evicts only what lies farther: what no reader is before
Locate = Callable[[str], Awaitable[tuple[dict[str, Any], list[list[Holder]]]]]
FromPeers = Callable[[str, int, int, str], Awaitable[bytes | None]]  # (id, shard, length, sha256) -> bytes
# (id, shard bounds, shard hashes, .part path, landed) -> how many shards a peer's cache gave
WholeFromPeers = Callable[[str, list[tuple[int, int]], list[str], Path, Callable[[int], None]], Awaitable[int]]


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
    def count(self) -> int:
        return len(self.receiver.bounds)

    @property
    def complete(self) -> bool:
        return len(self.done) == self.count


Cached = Entry | Windowed


class ShardCache:
    def __init__(self, directory: Path, limit: int, peers: PeerClient, locate: Locate) -> None:
        shutil.rmtree(directory, ignore_errors=True)  # what an earlier process left is not known good
        directory.mkdir(parents=True, mode=0o700)
        self.dir = directory
        self.limit = limit
        self.peers = peers
        self.locate = locate
        self.entries: OrderedDict[str, Cached] = OrderedDict()
        self._opening: dict[str, asyncio.Future[Cached]] = {}
        self.stats = {"pulls": 0, "hits": 0, "evicted": 0, "failed": 0, "windowed": 0, "shards_evicted": 0, "peak": 0}
        self.recent: deque[tuple[str, int]] = deque(maxlen=RECENT)  # which shards a seek fetched first
        self.from_peers: FromPeers | None = None  # other fStream cells' caches, asked before the holders
        self.whole_from_peers: WholeFromPeers | None = None  # the same, for objects pulled whole

    @property
    def used(self) -> int:
        return sum(e.size if isinstance(e, Entry) else e.resident for e in self.entries.values())

    async def open(self, oid: str, max_size: int | None = None) -> Cached:
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

    def release(self, entry: Cached, reader: int = 0) -> None:
        entry.readers -= 1
        entry.used = time.monotonic()
        if isinstance(entry, Windowed) and entry.positions.pop(reader, None) is not None:
            self._pump(entry)

    def prefer(self, entry: Cached, i: int) -> None:
        """A player wants shard i next (a seek): fetch from there first."""
        if i in entry.done:
            return
        if isinstance(entry, Entry):
            entry.receiver.prefer(i)
        else:
            entry.hint = i
            self._pump(entry)

    async def _start(self, oid: str, max_size: int | None) -> Cached:
        try:
            m, holders = await self.locate(oid)
        except StreamError as exc:
            raise CacheError("not_found", str(exc)[:200], 404) from None
        size = m["size"]
        if max_size is not None and size > max_size:
            raise CacheError("too_large", f"the object is {size} bytes, more than {max_size}", 413)
        if size > self.limit // WHOLE:
            self._make_room(0)
            windowed = Windowed(oid, self.dir, size, m["ss"], m, holders)
            self.entries[oid] = windowed
            self.stats["windowed"] += 1
            return windowed
        self._make_room(size)
        path = self.dir / oid
        entry = Entry(oid, path, size, m["ss"], receiver=Receiver(self.peers, m, holders, path))
        entry.receiver.on_shard = lambda i: self._landed(entry, i)
        self.entries[oid] = entry
        self.stats["pulls"] += 1
        self._peak()
        entry.task = asyncio.ensure_future(self._pull(entry))
        return entry

    def _landed(self, entry: Cached, i: int) -> None:
        self.recent.append((entry.oid[:16], i))
        if isinstance(entry, Entry):
            entry.landed(i)
        else:
            entry.done.add(i)
            entry.changed.set()

    def _peak(self) -> None:
        self.stats["peak"] = max(self.stats["peak"], self.used)

    async def _pull(self, entry: Entry) -> None:
        """Another fStream cell's cache first (`cdn`), then the holders for whatever it did not give:
        the `Receiver` resumes from the ``.part`` the peer's shards were written into."""
        r = entry.receiver
        try:
            if self.whole_from_peers is not None:
                got = await self.whole_from_peers(
                    entry.oid, list(r.bounds), list(r.m["shards"]), r.part, lambda i: self._landed(entry, i)
                )
                if got == entry.count:
                    os.replace(r.part, r.path)
                    return
            await r.run()
        except (StreamError, OSError) as exc:
            self._failed(entry, exc)
        finally:
            entry.changed.set()

    def _failed(self, entry: Cached, exc: Exception) -> None:
        """A pull failed: its readers are told, and the next reader starts afresh."""
        entry.failed = str(exc)[:200] or exc.__class__.__name__
        self.stats["failed"] += 1
        if self.entries.get(entry.oid) is entry:
            del self.entries[entry.oid]
        if isinstance(entry, Entry):
            _unlink(entry)
        else:
            self._drop_shards(entry)

    # ------------------------------------------------------------ windowed objects

    def _pump(self, w: Windowed) -> None:
        """Start fetching the shards `w`'s readers want next, as room allows."""
        if w.failed is not None or self.entries.get(w.oid) is not w:
            return
        for i in w.wanted(max(1, self.limit // w.ss)):
            if len(w.fetching) >= MAX_FETCHES:
                break
            if i in w.done or i in w.fetching:
                continue
            if not self._room_for(w.length(i), w.distance(i)):
                break
            w.fetching[i] = asyncio.ensure_future(self._fetch(w, i))
        self._peak()

    async def _fetch(self, w: Windowed, i: int) -> None:
        """Shard i: from another fStream cell's cache if one has it (checked there, `cdn`), else from
        the holders."""
        m, holders = w.piece(i)
        try:
            got = None
            if self.from_peers is not None:
                got = await self.from_peers(w.oid, i, w.length(i), w.manifest["shards"][i])
            if got is not None:
                await asyncio.to_thread(_write, w.path(i), got)
            else:
                await Receiver(self.peers, m, holders, w.path(i)).run()
        except (StreamError, OSError) as exc:
            w.fetching.pop(i, None)
            self._failed(w, exc)
            w.changed.set()
            return
        except asyncio.CancelledError:
            w.fetching.pop(i, None)
            for path in (w.path(i), w.path(i).with_name(w.path(i).name + ".part")):
                path.unlink(missing_ok=True)
            raise
        w.fetching.pop(i, None)
        self._landed(w, i)
        self._pump(w)

    def _victims(self) -> list[tuple[float, float, Cached, int]]:
        """What may go to make room, (distance, last use, entry, shard; -1: the whole object), the
        first to go last in the list: shards and idle whole objects no reader is before."""
        out: list[tuple[float, float, Cached, int]] = []
        for e in self.entries.values():
            if isinstance(e, Entry):
                if e.readers == 0:
                    out.append((math.inf, -e.used, e, -1))
                continue
            out += [(e.distance(i), -e.used, e, i) for i in e.done if not e.pinned(i)]
        out.sort(key=lambda v: (v[0], v[1]))
        return out

    def _room_for(self, n: int, nearer_than: float) -> bool:
        """Make room for n bytes by evicting what lies farther than `nearer_than` (farthest first)."""
        victims = self._victims()
        while self.used + n > self.limit:
            if not victims or victims[-1][0] <= nearer_than:
                return False
            _, _, e, i = victims.pop()
            if i < 0:
                self._evict(e)
            else:
                assert isinstance(e, Windowed)
                e.done.discard(i)
                e.path(i).unlink(missing_ok=True)
                self.stats["shards_evicted"] += 1
        return True

    def _make_room(self, size: int) -> None:
        """Room for a new object of `size` bytes, from what no reader is before, and a place in
        `entries` (CacheError cache_full)."""
        self._room_for(size, nearer_than=FAR)
        idle = sorted((e for e in self.entries.values() if e.readers == 0), key=lambda e: e.used)
        while idle and len(self.entries) >= MAX_ENTRIES:
            self._evict(idle.pop(0))
        if self.used + size > self.limit or len(self.entries) >= MAX_ENTRIES:
            raise CacheError("cache_full", "every cached object is being read; retry or use another endpoint", 503)

    def _evict(self, entry: Cached) -> None:
        del self.entries[entry.oid]
        if isinstance(entry, Entry):
            if entry.task is not None:
                entry.task.cancel()
            _unlink(entry)
        else:
            self._drop_shards(entry)
        self.stats["evicted"] += 1

    @staticmethod
    def _drop_shards(w: Windowed) -> None:
        for task in w.fetching.values():
            task.cancel()
        for i in w.done:
            w.path(i).unlink(missing_ok=True)
        w.done.clear()

    # ------------------------------------------------------------ reading

    async def wait(self, entry: Cached, i: int, timeout_s: float, reader: int = 0) -> None:
        """Until shard i is in (TimeoutError past timeout_s; CacheError if the pull failed). A
        windowed object's reader is at shard i from now on."""
        if isinstance(entry, Windowed) and entry.positions.get(reader) != i:
            entry.positions[reader] = i
            entry.hint = None
            self._pump(entry)
        deadline = time.monotonic() + timeout_s
        while i not in entry.done:
            if entry.failed is not None:
                raise CacheError("pull_failed", entry.failed, 502)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"shard #{i} of {entry.oid[:16]} did not arrive in {timeout_s:g} s")
            entry.changed.clear()
            if isinstance(entry, Windowed):
                self._pump(entry)  # room may have been made since
            try:
                await asyncio.wait_for(entry.changed.wait(), min(left, 1.0))
            except TimeoutError:
                continue

    @staticmethod
    def read(entry: Cached, offset: int, n: int) -> bytes:
        """Bytes of checked shards (in a worker thread): from the whole file, or its .part while it
        arrives; a windowed object's from its shard's file."""
        if isinstance(entry, Windowed):
            i, at = divmod(offset, entry.ss)
            paths = [entry.path(i)]
        else:
            at, paths = offset, [entry.path, entry.receiver.part]
        for _ in range(2):  # the .part may be renamed between the two tries
            for path in paths:
                try:
                    with open(path, "rb") as f:
                        return os.pread(f.fileno(), n, at)
                except FileNotFoundError:
                    continue
        raise CacheError("pull_failed", "the object's file is gone", 502)

    async def close(self) -> None:
        tasks = [e.task for e in self.entries.values() if isinstance(e, Entry) and e.task is not None]
        tasks += [t for e in self.entries.values() if isinstance(e, Windowed) for t in e.fetching.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def _write(path: Path, data: bytes) -> None:
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)


def _unlink(entry: Entry) -> None:
    for path in (entry.path, entry.receiver.part):
        path.unlink(missing_ok=True)
