"""An object too large for the fStream cache as a whole: its shards one file each, fetched in a
window around the play positions of its readers, and evicted behind them (`cache.ShardCache`).

Each reader says which shard it reads (`Windowed.positions`); the shards wanted are, for every
reader, its position and the next ones, as many as the cache can hold for each (at most
`MAX_AHEAD`), nearest first. Every shard is fetched by DStream's `Receiver` (checked against its
hash in the owner-signed manifest before it is kept), `MAX_FETCHES` at a time. A shard's
*distance* is how far it lies ahead of the nearest reader before it; a shard no reader is before
(behind every reader, or of an object nobody reads) is infinitely far. Room is made by evicting
the farthest shards, and only for a nearer one: a reader's own shard (distance 0) is never
evicted, and it can always take the place of another reader's read-ahead.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...dstream import Holder

MAX_AHEAD = 32  # shards read ahead of one reader at most (32 MiB: minutes of video)
MAX_FETCHES = 4  # shards of one object being fetched at once


@dataclass
class Windowed:
    oid: str
    dir: Path
    size: int
    ss: int
    manifest: dict[str, Any]
    holders: list[list[Holder]]
    done: set[int] = field(default_factory=set)  # shards on disk, checked
    fetching: dict[int, asyncio.Task[Any]] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)  # reader -> the shard it reads
    hint: int | None = None  # a seek before any reader: where the window starts
    readers: int = 0
    used: float = field(default_factory=time.monotonic)
    failed: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def count(self) -> int:
        return -(-self.size // self.ss)

    def length(self, i: int) -> int:
        return min(self.ss, self.size - i * self.ss)

    @property
    def resident(self) -> int:
        """Bytes on disk or on their way (a fetch's room is taken when it starts)."""
        return sum(self.length(i) for i in self.done | set(self.fetching))

    def path(self, i: int) -> Path:
        return self.dir / f"{self.oid}.{i}"

    def piece(self, i: int) -> tuple[dict[str, Any], list[list[Holder]]]:
        """Shard i as an object of one shard for a `Receiver` (its hash from the checked manifest);
        its holders rotated by i, so that neighbouring shards go to different holders."""
        hs = self.holders[i]
        k = i % len(hs) if hs else 0
        m = {"size": self.length(i), "ss": self.ss, "shards": [self.manifest["shards"][i]]}
        return m, [hs[k:] + hs[:k]]

    def _starts(self) -> list[int]:
        starts = sorted(set(self.positions.values()))
        return starts or ([self.hint] if self.hint is not None else [])

    def wanted(self, room: int) -> list[int]:
        """The shards to have, nearest first: each reader's and the next ones, `room` shards shared
        between the readers (at least their own, at most `MAX_AHEAD` each)."""
        starts = self._starts()
        if not starts:
            return []
        ahead = max(1, min(MAX_AHEAD, room // len(starts)))
        out: dict[int, None] = {}
        for k in range(ahead):
            for p in starts:
                if p + k < self.count:
                    out.setdefault(p + k)
        return list(out)

    def distance(self, i: int) -> float:
        """How far shard i lies ahead of the nearest reader before it (inf: none is before it)."""
        before = [i - p for p in self._starts() if p <= i]
        return min(before) if before else math.inf

    def pinned(self, i: int) -> bool:
        """A shard a reader reads now, or one being fetched: never evicted."""
        return i in self.fetching or i in self.positions.values()
