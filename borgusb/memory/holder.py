"""What one holder keeps: checked memories, their owners' tombstones and the index it searches.

Sans-I/O (time is passed in): the cell persists what `keep` and `drop` accept and answers `find`.
Bounded: at most `Limits.max_records` memories and `max_tombstones` tombstones (the oldest
forgotten first); a query's answer at most its limit (itself at most `query.MAX_LIMIT`), and at most
`max_private` sealed memories of one owner.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..shard import placement
from .errors import Deleted, HolderFull, Malformed
from .query import Query, Result
from .record import Memory, Tombstone
from .scoring import Index

LOTTERY_PREFIX = "borgusb.memory:"


def holders_of(memory_id: str, members: dict[str, str] | list[str], r: int) -> list[str]:
    """The r holders of a memory among the members (node keys), best first."""
    return placement.choose(LOTTERY_PREFIX + memory_id, members, r)


def handoffs(me: str, ids: list[str], old: list[str], new: list[str], r: int) -> list[tuple[str, str]]:
    """After the member table changed from `old` to `new`: (memory id, holder) for each copy `me`
    should pass on, so that every memory `me` holds is again on its r holders of `new`. Of a
    memory's holders in `old` that are still members, only the best ranked passes it on (one copy
    sent per new holder, not r); holders in `old` keep theirs."""
    alive = set(new)
    plan = []
    for mid in ids:
        before = holders_of(mid, old, r)
        senders = [h for h in before if h in alive]
        if senders and senders[0] != me:
            continue
        plan += [(mid, h) for h in holders_of(mid, new, r) if h != me and h not in before]
    return plan


@dataclass(frozen=True, slots=True)
class Limits:
    max_records: int = 20_000
    max_tombstones: int = 50_000
    max_private: int = 500
    max_ids: int = 64


class Holding:
    """One holder's memories, tombstones and search index."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.records: dict[str, Memory] = {}
        self.tombstones: OrderedDict[str, Tombstone] = OrderedDict()
        self.index = Index()  # public texts only: a private one is ciphertext here

    def keep(self, m: Memory) -> str:
        """ "stored" or "duplicate"; `Deleted` for a memory its owner removed, `HolderFull`."""
        if m.id in self.records:
            return "duplicate"
        t = self.tombstones.get(m.id)
        if t is not None and t.owner == m.owner:
            raise Deleted("its owner removed this memory")
        if len(self.records) >= self.limits.max_records:
            raise HolderFull(f"this holder keeps {self.limits.max_records} memories")
        self.records[m.id] = m
        if not m.private:
            self.index.add(m.id, m.text, m.ts)
        return "stored"

    def drop(self, t: Tombstone) -> str:
        """ "removed" (the owner's memory is gone) or "noted" (kept against a later replay)."""
        m = self.records.get(t.id)
        if m is not None and m.owner != t.owner:
            raise Malformed("only a memory's owner removes it")
        self.tombstones[t.id] = t
        self.tombstones.move_to_end(t.id)
        while len(self.tombstones) > self.limits.max_tombstones:
            self.tombstones.popitem(last=False)
        if m is None:
            return "noted"
        del self.records[t.id]
        self.index.remove(t.id)
        return "removed"

    def find(self, q: Query, now_ms: int) -> dict[str, Any]:
        """``{"results": [scored public memories], "private": [the owner's sealed ones, for "mine"]}``."""

        def accept(mid: str) -> bool:
            return q.matches(self.records[mid])

        found = self.index.search(q.text, now_ms, limit=q.limit, min_score=q.min_score, mode=q.mode, accept=accept)
        results = [Result(self.records[s.id], s.score, s.parts()).to_dict() for s in found]
        private: list[dict[str, Any]] = []
        if q.scope == "mine":
            mine = (m for m in self.records.values() if m.private and q.matches(m))
            private = [m.to_dict() for _, m in zip(range(self.limits.max_private), mine, strict=False)]
        return {"results": results, "private": private}

    def get(self, ids: list[str]) -> list[dict[str, Any]]:
        """The records of these ids that this holder has (sealed ones as they are)."""
        if len(ids) > self.limits.max_ids:
            raise Malformed(f"at most {self.limits.max_ids} ids at once")
        return [self.records[i].to_dict() for i in ids if i in self.records]
