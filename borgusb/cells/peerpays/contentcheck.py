"""peerPaysCell's check of a ``content`` reward claim (docs/ledger.md, "The content reward").

The record's own rules are `ledger.contentwork.check_content` (every receipt signed by its reader,
naming the claimant and the day, none by the claimant, one per reader and map, the rule's amount)
and `check_content_claim` (the reward pays exactly that record, for a day that ended and is still
paid). What needs the network or this holder's memory is here:

* **The maps are the claimant's**: this node's own shard cell is asked (``shard.stat``) for each
  distinct map the record names (8 at a time, the answers remembered); the manifest's owner (the
  key that stored the map) must be the claimant (``not_owner``; a map the network does not have:
  ``map_unknown``). A shard cell that does not answer refuses nothing: the claim waits (503
  ``audit_unavailable``, not counted as a refusal).
* **One record per (claimant, day)** approved on this holder (``already_claimed``): a record lists
  at most `MAX_READS` receipts, so that is also the cap of reads paid per creator per day here. The
  table keeps the days still claimable (`MAX_CLAIM_AGE_MS`), at most `MAX_CLAIMANTS_PER_DAY`
  creators a day; past that a claim waits for the next day (``claims_full``, 503): an entry is never
  dropped while its day can still be claimed, so a flood of new creator keys cannot make this
  holder forget a creator it paid.

Refusals are counted as ``pay_work_refused:<reason>``; `approves` is the core's question, as for hold
and agent claims.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from typing import Any

from ...ledger.contentwork import MAX_CLAIM_AGE_MS, check_content, check_content_claim, day_of
from ...ledger.tx import Tx
from ...ledger.work import BadWork
from ...net.peer import PeerClient, PeerError, PeerRejected
from ..kit import RequestError
from ..shard.client import ShardClient
from .workchecks import WorkChecks

MAX_CLAIMANTS_PER_DAY = 16_384  # creators paid per day by this holder (each remembered ~3 days)
MAX_OWNERS = 8192  # map -> the key that stored it, as the shard cell said (a stored object's owner never changes)
STATS_AT_ONCE = 8  # shard.stat requests of one claim at a time
STAT_TIMEOUT_S = 10.0
CHECK_TIMEOUT_S = 60.0  # all of one claim's map lookups (up to 256 maps)


class ContentChecks(WorkChecks):
    """What one reserve holder has verified of content claims; its `check` does the verifying."""

    def __init__(self, peers: PeerClient, ip: str, counters: Counter[str]) -> None:
        super().__init__(peers, ip, counters)
        self.claimed: dict[int, dict[str, str]] = {}  # day -> claimant -> the ref approved
        self.owners: OrderedDict[str, str] = OrderedDict()  # map id -> its manifest's owner
        self._stats = asyncio.Semaphore(STATS_AT_ONCE)

    async def check(self, tx: Tx, work: Any, now_ms: int) -> None:
        """Verify the content record `work` that the reward `tx` claims, or raise the refusal."""
        if tx.ref in self.verified:
            return  # verified already (a resend, or the sequencer offered it to itself first)
        try:
            rec = check_content(work)
            check_content_claim(rec, tx, now_ms)
        except BadWork as exc:
            raise self._refuse(exc.reason, exc.detail) from None
        oldest = day_of(now_ms - MAX_CLAIM_AGE_MS) - 1
        for gone in [d for d in self.claimed if d < oldest]:
            del self.claimed[gone]
        day = self.claimed.setdefault(rec.day, {})
        earlier = day.get(rec.claimant)
        if earlier is not None and earlier != rec.ref:
            raise self._refuse("already_claimed", f"this holder approved {earlier[:16]} for that day already")
        if earlier is None and len(day) >= MAX_CLAIMANTS_PER_DAY:
            raise self._refuse("claims_full", f"this holder paid {MAX_CLAIMANTS_PER_DAY} creators that day", 503)
        try:
            # not wait_for: one cancelled from outside (a request cut short) leaves the gather's
            # CancelledError unretrieved, logged when collected (Python 3.11)
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                owners = await asyncio.gather(*(self._owner(m) for m in rec.maps), return_exceptions=True)
        except TimeoutError:
            owners = [TimeoutError()]
        failed = [o for o in owners if isinstance(o, BaseException)]
        for fault in failed:
            if not isinstance(fault, (PeerError, TimeoutError)):
                raise fault  # a fault here, not the shard cell's silence
        if failed:
            self.counters["pay_work_audit_unavailable"] += 1
            raise RequestError(
                "audit_unavailable", f"this node's shard cell did not say who owns the maps: {failed[0]}", 503
            )
        unknown = [m[:16] for m, o in zip(rec.maps, owners, strict=True) if o == ""]
        if unknown:
            raise self._refuse("map_unknown", f"not stored on this network: {', '.join(unknown)}")
        strangers = [m[:16] for m, o in zip(rec.maps, owners, strict=True) if o != rec.claimant]
        if strangers:
            raise self._refuse("not_owner", f"stored by another key: {', '.join(strangers)}")
        if day.get(rec.claimant, rec.ref) != rec.ref:  # another record of the day was approved meanwhile
            raise self._refuse("already_claimed", "this holder approved another record for that day already")
        day[rec.claimant] = rec.ref
        self._approve(tx)

    async def _owner(self, mid: str) -> str:
        """The key that stored the map `mid` (its manifest's owner) as this node's shard cell says; ""
        when the network does not have it; PeerError or TimeoutError when the shard cell does not say."""
        known = self.owners.get(mid)
        if known is not None:
            return known
        async with self._stats:
            try:
                found = await asyncio.wait_for(ShardClient(self.peers, self.ip).stat(mid), STAT_TIMEOUT_S)
            except PeerRejected as exc:
                if exc.reason == "healing" or exc.status >= 500:
                    raise
                return ""
        owner = found.get("owner")
        if found.get("found") is not True or not isinstance(owner, str):
            return ""
        self.owners[mid] = owner
        while len(self.owners) > MAX_OWNERS:
            self.owners.popitem(last=False)
        return owner
