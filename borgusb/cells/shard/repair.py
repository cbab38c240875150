"""Keeping R copies: placement by lottery, re-replication of short shards, the background scrub.

A shard or manifest goes to the R winners of the placement lottery
(`borgusb.shard.placement`); a winner that fails is replaced by the next
ticket. Every read may find a shard short of R copies: the missing copies
are fetched by the next winners (``shard.fetch``). A winner that refuses a
shard as ``tombstoned`` (it was also a deleted object's) is asked once more
with the live object's manifest, which vouches for it. A copy found corrupt
(on read, or by the scrub that re-hashes everything at ``scrub_bps``) is
dropped and a good one fetched from another holder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from ...dstream import Holder, post_frame
from ...net.peer import PeerRejected, PeerUnreachable
from ...shard import model, placement
from ...shard.storeerrors import StoreError
from ..kit import RequestError
from .base import ShardBase

log = logging.getLogger("borgusb.shard")

REPAIR_HOLDOFF_MS = 5_000
FINAL_REFUSALS = frozenset({"tombstoned", "quota", "disk_full"})  # this node's store refuses any source's copy


class Replicator(ShardBase):
    """Mixin of `ShardCell`: where copies go and how lost ones come back."""

    async def _hold_on(
        self, h: Holder, payload: dict[str, Any], rec: dict[str, Any], data: memoryview, obj: str | None
    ) -> None:
        if h.pubkey == self.me_holder.pubkey:
            if payload.get("new") is True:
                self._may_store(rec["o"], rec["n"], rec["h"], obj)
            if self._store_local(rec, data, obj) == "stored":
                self._stored(rec["o"], rec["n"])
        else:
            await post_frame(self.shard_peers, h.ip, h.port, "shard.hold", payload, data, expect_pubkey=h.pubkey)

    async def _place_on(
        self,
        key: str,
        r: int,
        put: Callable[[Holder], Awaitable[None]],
        exclude: Collection[str] = frozenset(),
        final: Collection[str] = frozenset(),
    ) -> tuple[list[str], dict[str, str]]:
        """Put on the r lottery winners for key; a winner that fails is replaced by the next ticket.

        A refusal whose reason is in `final` (``other_owner``: the winners keep another key's object)
        ends the placement: the next tickets would only store what the winners refused."""
        live = self.live()
        ranked = [pk for pk in placement.rank(key, live) if pk not in exclude]
        held: list[str] = []
        refused: dict[str, str] = {}

        async def attempt(pk: str) -> None:
            try:
                await put(live[pk])
                held.append(pk)
            except PeerUnreachable:
                self._forget(pk)
                refused[pk[:16]] = "unreachable"
            except PeerRejected as exc:
                refused[pk[:16]] = exc.reason
            except RequestError as exc:
                refused[pk[:16]] = exc.reason

        nxt = 0
        while len(held) < r and nxt < len(ranked) and not any(x in final for x in refused.values()):
            batch = ranked[nxt : nxt + r - len(held)]
            nxt += len(batch)
            await asyncio.gather(*(attempt(pk) for pk in batch))
        return held, refused

    async def fetch_into_store(
        self, h: str, obj: str | None, sources: list[Holder], live: dict[str, Any] | None = None
    ) -> bool:
        """Pull shard h from one of sources (checked: owner record, SHA-256) and keep it.

        A refusal every source would get too is final and raised (`StoreError`): a tombstone (every
        source has the same owner's record: the asker can retry with the live manifest, `live`),
        or no room here (``quota``, ``disk_full``)."""
        if self.store.has(h):
            return True
        for src in sources:
            if src.pubkey == self.me_holder.pubkey:
                continue
            try:
                reply, data = await post_frame(
                    self.shard_peers, src.ip, src.port, "shard.get", {"h": h, "sid": "repair"}, expect_pubkey=src.pubkey
                )
                rec = model.check_record(reply.get("rec"))
                if rec["h"] != h:
                    raise model.BadRecord("malformed", "another shard")
                self.store.put(rec, data, obj, live=live)
                self.counters["shard_replicated_in"] += 1
                return True
            except PeerUnreachable:
                self._forget(src.pubkey)
            except (PeerRejected, model.BadRecord, StoreError, AttributeError) as exc:
                if isinstance(exc, StoreError) and exc.reason in FINAL_REFUSALS:
                    raise
                self.counters["shard_fetch_failed"] += 1
                log.info("fetch %s from %s: %s", h[:12], src.ip, exc)
        return False

    async def _scrub_loop(self) -> None:
        """Re-hash every stored shard with SHA-256, round after round, at `scrub_bps`: reads
        check only the CRC kept since a shard was verified, so this is what catches a copy
        altered on disk with its CRC kept. A bad copy is dropped and refetched."""
        while True:
            hashes = list(self.store.records)
            for h in hashes:
                entry = self.store.records.get(h)
                if entry is None:
                    continue
                if not await asyncio.to_thread(self.store.scrub, h):
                    self.counters["shard_corrupt_dropped"] += 1
                    self._spawn(self._refetch(h))
                await asyncio.sleep(max(0.01, entry["rec"]["n"] / self.scrub_bps))
            await asyncio.sleep(1.0 if hashes else 5.0)

    async def _refetch(self, h: str) -> None:
        """A corrupt copy was dropped here: fetch a good one from the other shard nodes."""
        entry = self.store.lost.get(h)
        if entry is None:
            return
        objs = entry["objs"]
        sources = [hd for pk, hd in self.live().items() if pk != self.me_holder.pubkey]
        try:
            fetched = await self.fetch_into_store(h, objs[0] if objs else None, sources)
        except StoreError as exc:  # deleted meanwhile, or no room here any more
            self.counters[f"shard_rejected:{exc.reason}"] += 1
            return
        if fetched:
            for extra in objs[1:]:
                self.store.records[h]["objs"].append(extra)
            self.counters["shard_refetched"] += 1

    async def _repair(
        self, m: dict[str, Any], holders_of: dict[str, list[Holder]], manifest_holders: list[Holder]
    ) -> None:
        r = m["r"]
        now = self.clock.now_ms()
        live = self.live()
        for h in dict.fromkeys(m["shards"]):
            have = holders_of.get(h, [])
            if len(have) >= r or not have or self.repair_until.get(h, 0) > now:
                continue
            self.repair_until[h] = now + REPAIR_HOLDOFF_MS
            exclude = {x.pubkey for x in have}
            order = {"h": h, "obj": m["id"], "from": [x.to_json() for x in have]}

            async def fetch(t: Holder, h: str = h, have: list[Holder] = have, order: dict[str, Any] = order) -> None:
                if t.pubkey == self.me_holder.pubkey:
                    try:
                        ok = await self.fetch_into_store(h, order["obj"], have, live=m)
                    except StoreError as exc:
                        raise RequestError(exc.reason, str(exc), exc.status) from None
                    if not ok:
                        raise RequestError("fetch_failed", "no source gave a good copy", 503)
                    return
                try:
                    reply = await self._order_fetch(t, order)
                except PeerRejected as exc:
                    if exc.reason != "tombstoned":
                        raise
                    self.counters["shard_repair_vouched"] += 1
                    reply = await self._order_fetch(t, {**order, "m": m})  # the live manifest vouches
                if not reply.get("ok"):
                    raise RequestError("fetch_failed", "the target could not fetch a good copy", 503)

            async with self._repair_sem:
                held, _ = await self._place_on(h, r - len(have), fetch, exclude)
            self.counters["shard_repaired"] += len(held)
        if len(manifest_holders) < r and self.repair_until.get(m["id"], 0) <= now:
            self.repair_until[m["id"]] = now + REPAIR_HOLDOFF_MS
            held, _ = await self._place_on(
                m["id"], r - len(manifest_holders), lambda t: self._keep_on(t, m), {x.pubkey for x in manifest_holders}
            )
            self.counters["manifest_repaired"] += len(held)
        for key, until in list(self.repair_until.items()):
            if until < now:
                del self.repair_until[key]
        del live

    async def _order_fetch(self, t: Holder, order: dict[str, Any]) -> Any:
        return await self.shard_peers.post(
            t.ip, t.port, "/recp", "shard.fetch", order, expect_pubkey=t.pubkey, signed_reply=True
        )

    async def _keep_on(self, t: Holder, m: dict[str, Any]) -> None:
        if t.pubkey == self.me_holder.pubkey:
            try:
                self.store.put_manifest(m)
            except StoreError as exc:
                raise RequestError(exc.reason, str(exc), exc.status) from None
        else:
            await self.shard_peers.post(t.ip, t.port, "/recp", "shard.keep", {"m": m}, expect_pubkey=t.pubkey)
