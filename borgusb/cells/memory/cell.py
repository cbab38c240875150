"""peerMemoryCell: keeps owner-signed memories on lottery-chosen holders and answers searches.

The protocol is `borgusb.memory` (docs/memory.md); this cell carries it.

* **Holders.** A memory is kept by the `r` winners of the placement lottery for
  ``"borgusb.memory:" + id`` among the members of this cell's tree (the root's member table, read
  every second by `HolderCell`), so memories spread evenly and every cell computes the same set.
  When the table changes (a holder died, a cell joined), the best-ranked live holder of each memory
  passes it on to the holders the new table adds (`borgusb.memory.holder.handoffs`).
* **Entry receptors** (on any memory cell): ``memory.put`` (an owner-signed memory: checked, rate
  limited per owner and per signer, kept by every holder in parallel), ``memory.rm`` (the owner's
  tombstone to the holders), ``memory.search`` (the query to every member's ``memory.find`` at
  once; answers checked, merged by score, deduplicated by id) and ``memory.get`` (ids, likewise).
* **Holder receptors**: ``memory.keep``, ``memory.drop``, ``memory.find``, ``memory.fetch``
  (`borgusb.memory.holder.Holding`: bounds, tombstones, the index).

The embedding model and BM25 are loaded by the first search that has texts to score, never by a
put or at start. An installation without the ``ai`` extra (the image, for now) holds memories and
answers gets, and refuses ``memory.find`` with ``no_search``; an entry merges the cells that can.
Every refusal is a `RequestError` whose reason is the core's word, counted as ``memory_refused:<reason>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from ... import envelope
from ...dna import CellDNA
from ...memory import scoring
from ...memory.errors import Malformed, MemoryRefused, RateLimited
from ...memory.holder import Limits, handoffs, holders_of
from ...memory.query import Query, check_query, check_results, merge
from ...memory.record import Memory, Tombstone, check_record, check_tombstone
from ...net.peer import PeerError, PeerRejected
from ..kit import RequestError, receptor
from ..kit.guard import TokenBuckets
from ..kit.holdercell import HolderCell
from .client import MemoryClient
from .settings import MemorySettings
from .store import MemoryStore

MAX_PRIVATE_REPLY = 2000
HANDOFF_CONCURRENCY = 8
_STATUS = {"not_holder": 409, "holder_full": 507, "no_holder": 503, "rate_limited": 429, "too_large": 413}


class MemoryCell(HolderCell):
    """A Cell that holds memories, searches its own, and fans a person's requests out."""

    settings: MemorySettings

    def __init__(self, dna: CellDNA, ip: str, **kw: Any) -> None:
        settings = kw.get("settings")
        if not isinstance(settings, MemorySettings):
            settings = kw["settings"] = MemorySettings.from_sources()
        super().__init__(dna, ip, data_root=settings.data_root, **kw)
        self.r = settings.r
        self.timeout_s = settings.timeout_ms / 1000
        self.memories = MemoryStore(
            self.records_dir / "memories.log", Limits(max_records=settings.max_records), self.counters
        )
        rate = settings.put_rate / 60
        self.owner_rate = TokenBuckets(rate, settings.put_rate, 10_000)
        self.signer_rate = TokenBuckets(rate, settings.put_rate, 10_000)
        self._placed_for: list[str] = list(self.members)  # the member table the copies were last placed for
        self._handing_off = False
        self._building = asyncio.Lock()

    @property
    def view(self) -> str:
        return hashlib.sha256("\n".join(sorted(self.members)).encode()).hexdigest()[:32]

    # ------------------------------------------------------------ helpers

    def _refuse(self, exc: MemoryRefused) -> RequestError:
        self.counters[f"memory_refused:{exc.reason}"] += 1
        return RequestError(exc.reason, str(exc), _STATUS.get(exc.reason, 400))

    def _record(self, payload: Any) -> Memory:
        try:
            return check_record(payload.get("m") if isinstance(payload, dict) else None)
        except MemoryRefused as exc:
            raise self._refuse(exc) from None

    def _tombstone(self, payload: Any) -> Tombstone:
        try:
            return check_tombstone(payload.get("t") if isinstance(payload, dict) else None)
        except MemoryRefused as exc:
            raise self._refuse(exc) from None

    def _query(self, payload: Any) -> Query:
        try:
            return check_query(payload.get("q") if isinstance(payload, dict) else None, self.clock.now_ms())
        except MemoryRefused as exc:
            raise self._refuse(exc) from None

    def _ids(self, payload: Any) -> list[str]:
        ids = payload.get("ids") if isinstance(payload, dict) else None
        if not isinstance(ids, list) or not 0 < len(ids) <= self.memories.holding.limits.max_ids:
            raise self._refuse(Malformed("ids are 1 to 64 memory ids"))
        if not all(isinstance(i, str) and len(i) == 64 for i in ids):
            raise self._refuse(Malformed("an id is a SHA-256 in lowercase hex"))
        return ids

    async def _must_hold(self, memory_id: str) -> None:
        if self.key.public_key_hex not in holders_of(memory_id, self.members, self.r):
            await self.refresh_view()  # the asker may have read the root's table a moment sooner
            if self.key.public_key_hex not in holders_of(memory_id, self.members, self.r):
                self.counters["memory_refused:not_holder"] += 1
                raise RequestError("not_holder", f"{self.key.public_key_hex[:16]} does not hold this memory", 409)

    async def _each(
        self,
        targets: list[str],
        local: Callable[[], Awaitable[dict[str, Any]]],
        remote: Callable[[MemoryClient], Awaitable[dict[str, Any]]],
    ) -> tuple[list[dict[str, Any]], Counter[str]]:
        """Call each target cell in parallel (this cell directly): replies, and refusals by reason."""

        async def one(node: str) -> dict[str, Any] | str:
            try:
                if node == self.key.public_key_hex:
                    return await local()
                client = MemoryClient(self.peers, self.members[node], pubkey=node)
                reply = await asyncio.wait_for(remote(client), self.timeout_s)
                return reply if isinstance(reply, dict) else "bad_reply"
            except (RequestError, PeerRejected) as exc:
                return exc.reason
            except TimeoutError:
                return "timeout"
            except PeerError:
                return "unreachable"

        results = await asyncio.gather(*(one(n) for n in targets if n in self.members))
        return [r for r in results if isinstance(r, dict)], Counter(r for r in results if isinstance(r, str))

    def _none_answered(self, refused: Counter[str], what: str) -> RequestError:
        reason = refused.most_common(1)[0][0] if refused else "no_holder"
        self.counters[f"memory_refused:{reason}"] += 1
        return RequestError(reason, f"{what} ({dict(refused)})", _STATUS.get(reason, 503))

    # ------------------------------------------------------------ copies after a member change

    def use_members(self, members: dict[str, str]) -> None:
        super().use_members(members)
        if set(members) != set(self._placed_for) and not self._handing_off:
            self._handing_off = True
            self._spawn(self._hand_off())

    async def _hand_off(self) -> None:
        """Pass each memory this cell holds on to the holders the new member table adds (a killed
        holder's copies come back to R), until the copies are placed for the table as it is now."""
        try:
            while set(self.members) != set(self._placed_for):
                new = dict(self.members)
                ids = list(self.memories.holding.records)
                plan = handoffs(self.key.public_key_hex, ids, self._placed_for, list(new), self.r)
                sem = asyncio.Semaphore(HANDOFF_CONCURRENCY)
                await asyncio.gather(*(self._pass_on(sem, mid, holder, new) for mid, holder in plan))
                self._placed_for = list(new)
        finally:
            self._handing_off = False

    async def _pass_on(self, sem: asyncio.Semaphore, mid: str, holder: str, members: dict[str, str]) -> None:
        m = self.memories.holding.records.get(mid)
        if m is None or holder not in members:
            return
        async with sem:
            try:
                client = MemoryClient(self.peers, members[holder], pubkey=holder)
                await asyncio.wait_for(client.keep(m.to_dict()), self.timeout_s)
                self.counters["memory_handoff"] += 1
            except (PeerError, TimeoutError):
                self.counters["memory_handoff_failed"] += 1

    # ------------------------------------------------------------ entry receptors

    @receptor("memory.put")
    async def _r_put(self, env: envelope.Envelope) -> Any:
        m = self._record(env.payload)
        now = time.monotonic()
        if not self.owner_rate.allow(m.owner, now) or not self.signer_rate.allow(env.signer, now):
            raise self._refuse(RateLimited("too many memories from this owner or signer; wait a minute"))
        doc = m.to_dict()
        holders = holders_of(m.id, self.members, self.r)
        replies, refused = await self._each(holders, lambda: self._keep_local(m), lambda c: c.keep(doc))
        if not replies:
            raise self._none_answered(refused, "no holder kept the memory")
        self.counters["memory_put"] += 1
        return {"id": m.id, "stored": len(replies), "holders": len(holders), "refused": dict(refused)}

    @receptor("memory.rm")
    async def _r_rm(self, env: envelope.Envelope) -> Any:
        t = self._tombstone(env.payload)
        doc = t.to_dict()
        holders = holders_of(t.id, self.members, self.r)
        replies, refused = await self._each(holders, lambda: self._drop_local(t), lambda c: c.drop(doc))
        if not replies:
            raise self._none_answered(refused, "no holder took the removal")
        removed = sum(1 for r in replies if r.get("status") == "removed")
        return {"id": t.id, "removed": removed, "holders": len(holders), "refused": dict(refused)}

    @receptor("memory.search")
    async def _r_search(self, env: envelope.Envelope) -> Any:
        q = self._query(env.payload)
        doc = q.to_dict()
        replies, refused = await self._each(list(self.members), lambda: self._find_local(q), lambda c: c.find(doc))
        if not replies:
            raise self._none_answered(refused, "no memory cell answered")
        bad: list[str] = []
        merged = merge(q, [check_results(q, r.get("results"), bad) for r in replies])
        for reason in bad:
            self.counters[f"memory_bad_result:{reason}"] += 1
        private: dict[str, Any] = {}
        for r in replies:
            for rec in r.get("private", []) if isinstance(r.get("private"), list) else []:
                if isinstance(rec, dict) and isinstance(rec.get("sig"), str) and len(private) < MAX_PRIVATE_REPLY:
                    private.setdefault(rec["sig"], rec)  # the reader checks each; one per signature
        self.counters["memory_search"] += 1
        return {
            "results": [r.to_dict() for r in merged],
            "private": list(private.values()),
            "cells": len(replies),
            "refused": dict(refused),
        }

    @receptor("memory.get")
    async def _r_get(self, env: envelope.Envelope) -> Any:
        ids = self._ids(env.payload)
        targets = sorted({h for i in ids for h in holders_of(i, self.members, self.r)})
        replies, refused = await self._each(targets, lambda: self._fetch_local(ids), lambda c: c.fetch(ids))
        found: dict[str, dict[str, Any]] = {}
        for r in replies:
            for rec in r.get("records", []) if isinstance(r.get("records"), list) else []:
                try:
                    m = check_record(rec)
                except MemoryRefused as exc:
                    self.counters[f"memory_bad_result:{exc.reason}"] += 1
                    continue
                if m.id in ids:
                    found[m.id] = rec
        return {"records": [found[i] for i in ids if i in found], "refused": dict(refused)}

    # ------------------------------------------------------------ holder receptors

    async def _keep_local(self, m: Memory) -> dict[str, Any]:
        await self._must_hold(m.id)
        try:
            status = self.memories.holding.keep(m)
        except MemoryRefused as exc:
            raise self._refuse(exc) from None
        if status == "stored":
            self.memories.add(m)
        self.counters[f"memory_keep:{status}"] += 1
        return {"id": m.id, "status": status}

    @receptor("memory.keep")
    async def _r_keep(self, env: envelope.Envelope) -> Any:
        return await self._keep_local(self._record(env.payload))

    async def _drop_local(self, t: Tombstone) -> dict[str, Any]:
        await self._must_hold(t.id)
        try:
            status = self.memories.holding.drop(t)
        except MemoryRefused as exc:
            raise self._refuse(exc) from None
        if status == "removed":
            self.memories.rewrite()
        else:
            self.memories.note(t)
        self.counters[f"memory_drop:{status}"] += 1
        return {"id": t.id, "status": status}

    @receptor("memory.drop")
    async def _r_drop(self, env: envelope.Envelope) -> Any:
        return await self._drop_local(self._tombstone(env.payload))

    async def _find_local(self, q: Query) -> dict[str, Any]:
        if not scoring.available():  # a holder without the ai extra keeps memories but cannot score them
            self.counters["memory_refused:no_search"] += 1
            raise RequestError("no_search", "this node cannot search (install borgusb[ai])", 503)
        self.counters["memory_find"] += 1
        index = self.memories.holding.index
        async with self._building:  # embeddings and BM25 off the event loop (0.5 s for 6,000 at the first search)
            plan = index.snapshot()
            if plan is not None:
                index.install(await asyncio.to_thread(scoring.compute, plan))
        return self.memories.holding.find(q, self.clock.now_ms())

    @receptor("memory.find")
    async def _r_find(self, env: envelope.Envelope) -> Any:
        return await self._find_local(self._query(env.payload))

    async def _fetch_local(self, ids: list[str]) -> dict[str, Any]:
        return {"records": self.memories.holding.get(ids)}

    @receptor("memory.fetch")
    async def _r_fetch(self, env: envelope.Envelope) -> Any:
        return await self._fetch_local(self._ids(env.payload))

    # ------------------------------------------------------------ monitoring

    def status(self) -> dict[str, Any]:
        doc = super().status()
        holding = self.memories.holding
        doc["memory"] = {
            "view": self.view,
            "members": len(self.members),
            "r": self.r,
            "records": len(holding.records),
            "tombstones": len(holding.tombstones),
            "search": scoring.available(),
            "model_loaded": scoring.embedder.cache_info().currsize > 0,
        }
        return doc
