"""Trimming: a copy the lottery no longer places here is dropped once R winners prove they hold it.

Churn leaves copies beyond R: a node back from an absence (a pulled stick, a frozen machine)
finds its shards copied elsewhere meanwhile by repair (reach.py, repair.py) and still holds its
own; two repairs of one shard at once do the same (a clean-clone run found all four live nodes
of a cluster holding a shard of R = 3). Storage kept for nothing. Each background round, a node
looks at up to `TRIM_LOOK` of its shards, in turn, and drops a copy (`ShardStore.release`,
counted ``shard_trimmed``) only when all of this holds:

* its tree is settled (`unsettled` is false: no shard node lost lately, and placed in a tree);
* every object the shard belongs to (its record's, and the manifests held here that list it)
  has its owner-signed manifest, checked, here or from the object's first lottery winners (at
  most `TRIM_ASKS` asks a round), none of them deleted; the shard's R is the largest of theirs
  (a shard shared by two objects keeps the larger R);
* this node is not among the first R of the shard's lottery over the live shard nodes it
  knows;
* each of those R winners served the shard's bytes, SHA-256 and size checked (the hold reward's
  audit, `ShardBase._fetch_check`): a claim alone never deletes a copy. At most `TRIM_PROOFS`
  shards are proved per round (R downloads each).

Anything short of that keeps the copy, counted by reason (``trim_kept:<reason>``). A winner that
drops its copy later is repaired from the others as any lost copy is; a node the lottery ranks
among the winners again gets a copy back by repair.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ...dstream import Holder
from ...shard import model, placement
from .reach import Reacher

log = logging.getLogger("borgusb.shard")

TRIM_LOOK = 64  # shards looked at per round (a lottery each: ~16 hashes per live node)
TRIM_PROOFS = 4  # shards whose winners are asked to prove their copies, per round
TRIM_ASKS = 32  # manifests asked of other nodes, per round (each object's at most once)


class Trimmer(Reacher):
    """Mixin of `ShardCell`: copies beyond the placement dropped once the winners hold theirs."""

    _trim_cursor: str = ""

    async def trim_round(self) -> int:
        """Look at the next `TRIM_LOOK` held shards (after the cursor, wrapping around), at most
        `TRIM_PROOFS` of them proved; how many copies were dropped."""
        if self.unsettled():
            self.counters["trim_kept:unsettled"] += 1
            return 0
        hashes = sorted(self.store.records)
        after = [h for h in hashes if h > self._trim_cursor]
        batch = (after + [h for h in hashes if h <= self._trim_cursor])[:TRIM_LOOK]
        live = self.live()
        listed: dict[str, set[str]] = {h: set() for h in batch}  # shard -> objects whose manifest here lists it
        for oid, m in self.store.manifests.items():
            for sh in m["shards"]:
                if sh in listed:
                    listed[sh].add(oid)
        proofs, dropped = 0, 0
        known = _Manifests(TRIM_ASKS)
        for h in batch:
            if proofs >= TRIM_PROOFS or known.asks_left <= 0:
                break
            before, self._trim_cursor = self._trim_cursor, h
            entry = self.store.records.get(h)
            ranked = placement.rank(h, live)
            if entry is None or ranked[:1] == [self.me_holder.pubkey]:
                continue  # gone meanwhile, or first in its lottery: a winner for any R
            why, r = await self._trim_check(entry, listed[h], ranked, live, known)
            if why == "no_manifest" and known.asks_left <= 0:
                self._trim_cursor = before  # the asks ran out on this one: the next round takes it again
                break
            if not why:
                proofs += 1
                why = await self._prove(h, entry["rec"]["n"], ranked[:r], live)
            if why:
                self.counters[f"trim_kept:{why}"] += 1
            elif self.store.release(h):
                dropped += 1
                self.counters["shard_trimmed"] += 1
        self.counters["trim_rounds"] += 1
        return dropped

    async def _trim_check(
        self, entry: dict[str, Any], listed: set[str], ranked: list[str], live: dict[str, Holder], known: _Manifests
    ) -> tuple[str, int]:
        """(why the shard stays here without asking for proof, or "" to ask its winners; its R)."""
        objs = set(entry["objs"]) | listed
        if not objs:
            return "no_object", 0
        r = 0
        for oid in sorted(objs):
            if oid not in known.got:
                known.got[oid] = await self._manifest_of(oid, live, known)
            m = known.got[oid]
            if m is None:
                return "no_manifest", 0
            r = max(r, m["r"])
        return ("placed" if self.me_holder.pubkey in ranked[:r] else ""), r

    async def _manifest_of(self, oid: str, live: dict[str, Holder], known: _Manifests) -> dict[str, Any] | None:
        """oid's live manifest: held here, else from the first of its lottery winners that has it
        (checked: owner-signed, this id, not deleted here), within the round's asks."""
        m = self.store.manifests.get(oid)
        if m is None:
            for pk in placement.rank(oid, live)[: model.MAX_R]:
                if pk == self.me_holder.pubkey:
                    continue
                if known.asks_left <= 0:
                    break
                known.asks_left -= 1
                got = await self._ask(live[pk], oid)
                if got is not None and got[1] is not None:
                    try:
                        m = model.check_manifest(got[1])
                    except model.BadRecord:
                        self.counters["shard_rejected:bad_manifest"] += 1
                        continue
                    break
        if m is None or self.store.deleted(oid, m["o"], m["t"]):
            return None
        return m

    async def _prove(self, h: str, n: int, winners: list[str], live: dict[str, Holder]) -> str:
        """ "" when each winner served shard h's n bytes, else why not."""
        results = await asyncio.gather(
            *(self._fetch_check(live[pk].ip, live[pk].port, pk, h, n, sid="trim") for pk in winners)
        )
        return "unproved" if any(results) else ""


class _Manifests:
    """One round's manifests by object id (None: none found) and the asks it has left."""

    def __init__(self, asks: int) -> None:
        self.got: dict[str, dict[str, Any] | None] = {}
        self.asks_left = asks
