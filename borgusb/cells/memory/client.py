"""MemoryClient: what the CLI, the agents and other cells call on a peerMemoryCell.

The person-facing methods (`put`, `search`, `get`, `rm`) go to any memory cell, which fans out to
the holders (puts, removals) or to every memory cell of the tree (searches, gets); each checks what
comes back itself: every record's signature, that it meets the query, and for a private search the
owner's side opens and scores the sealed memories (`borgusb.memory.query.score_mine`).
`keep`, `drop`, `find` and `fetch` are holder requests (pass ``pubkey=`` the holder's node key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...keys import SigningKey
from ...memory.errors import MemoryRefused
from ...memory.query import Query, Result, check_results, merge, score_mine
from ...memory.record import Memory, Tombstone, check_record
from ..kit import CellClient


def _doc(reply: Any) -> dict[str, Any]:
    return reply if isinstance(reply, dict) else {}


@dataclass(frozen=True, slots=True)
class Found:
    """A search's answer, checked: results best first, and what the reader refused (reason words)."""

    results: list[Result]
    cells: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)


class MemoryClient(CellClient):
    cell = "peerMemoryCell"

    async def put(self, memory: Memory) -> dict[str, Any]:
        """Store an owner-signed memory on its holders: ``{"id", "stored", "holders", "refused"}``."""
        return _doc(await self.call("memory.put", {"m": memory.to_dict()}))

    async def rm(self, tombstone: Tombstone) -> dict[str, Any]:
        """The owner's removal, sent to the memory's holders: ``{"id", "removed", "holders", "refused"}``."""
        return _doc(await self.call("memory.rm", {"t": tombstone.to_dict()}))

    async def search(self, query: Query, key: SigningKey | None = None) -> Found:
        """Every memory cell's best answers, checked and merged. A "mine" query (made with the owner's
        key) also brings the owner's sealed memories, which `key` opens and scores here."""
        reply = _doc(await self.call("memory.search", {"q": query.to_dict()}))
        bad: list[str] = []
        groups = [check_results(query, reply.get("results"), bad)]
        if query.scope == "mine" and key is not None:
            sealed = [r.memory for r in check_results(query, _wrap(reply.get("private")), bad) if r.memory.private]
            groups.append(score_mine(query, key, sealed, query.ts))
        refused = reply.get("refused")
        cells = reply.get("cells")
        return Found(
            merge(query, groups),
            cells if isinstance(cells, int) else 0,
            refused if isinstance(refused, dict) else {},
            bad,
        )

    async def get(self, ids: list[str]) -> list[Memory]:
        """The memories of these ids (checked; a private one still sealed: `record.open_text`)."""
        reply = _doc(await self.call("memory.get", {"ids": ids}))
        found: dict[str, Memory] = {}
        for doc in reply.get("records", []) if isinstance(reply.get("records"), list) else []:
            try:
                m = check_record(doc)
            except MemoryRefused:
                continue
            if m.id in ids:
                found[m.id] = m
        return [found[i] for i in ids if i in found]

    async def keep(self, record: dict[str, Any]) -> dict[str, Any]:
        """One holder: keep the memory (``{"status": "stored" | "duplicate"}``)."""
        return _doc(await self.call("memory.keep", {"m": record}))

    async def drop(self, tombstone: dict[str, Any]) -> dict[str, Any]:
        """One holder: apply the owner's removal (``{"status": "removed" | "noted"}``)."""
        return _doc(await self.call("memory.drop", {"t": tombstone}))

    async def find(self, query: dict[str, Any]) -> dict[str, Any]:
        """One holder's own answer: ``{"results": [...], "private": [...]}``."""
        return _doc(await self.call("memory.find", {"q": query}))

    async def fetch(self, ids: list[str]) -> dict[str, Any]:
        """One holder's records of these ids: ``{"records": [...]}``."""
        return _doc(await self.call("memory.fetch", {"ids": ids}))


def _wrap(records: Any) -> list[dict[str, Any]]:
    """Sealed records as results (score 0) so `check_results` checks them the same way."""
    return [{"m": r, "score": 0, "parts": {}} for r in records] if isinstance(records, list) else []
