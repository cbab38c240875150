"""Reaching holders without the tree: direct asks, holders already known, the background repair.

A node asks holders directly, ``shard.holds`` (what do you hold of this object?), a signed
request answered with a signed reply: in a small settled network every locate does (locate.py:
cheaper and quicker than a find through the tree), and in a larger one a find travels through
the tree's broadcast, which while the tree heals (its root died, members are being replaced)
reaches few nodes or none, so the asks complete it. They go only to addresses this node
learned itself, never to one a request names:

* the holders it found for the object before (`holders_cache`, the last `HOLDERS_CACHE` objects);
* the shard nodes it knows (the directory, from the registry's signed service statements or
  the nodes' "hi" broadcasts, kept `KNOWN_TTL_MS`), in the placement lottery's order for the
  object, then for each shard still without a holder: at most `ASK_MAX` nodes per locate,
  `ASKS_AT_ONCE` at a time, each given `ASK_WAIT_S`.

A locate that finds nothing either way is answered "not found" only when its tree is settled
and R of the object's R+1 first lottery winners among the nodes it knows answered (they are
where its manifest lives, or is repaired to); else it is refused as ``healing`` and the reader
retries (`client.locate_through_heal`). A node that announces itself and never answers (anyone
may run one) makes no read of an existing object slower than one direct ask, and turns "not
found" into ``healing`` only for ids where it holds two of those R+1 tickets.

**Background repair.** Every `repair_ms` (jittered by ±50%), a node surveys up to
`REPAIR_OBJECTS` of the objects whose manifests it holds (in turn, round after round): it asks
the manifest's and each shard's placement winners among live nodes what they hold, and brings
what is short of R back (repair.py `_repair`, through ``shard.fetch``), without any reader. Only
the object's *driver* repairs: the live manifest holder that ranks first in the object's
lottery among those that answered; a holder that sees one before it leaves the object to it
(``repair_not_driver``), so R holders do not all repair the same object at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from typing import Any

from ... import envelope
from ...dstream import Holder
from ...net.peer import PeerError, PeerUnreachable
from ...shard import model, placement
from ..kit import receptor
from ..kit.guard import TokenBuckets
from .base import PendingFind, ShardBase

log = logging.getLogger("borgusb.shard")

HOLDERS_CACHE = 4096  # objects whose holders a node remembers
KNOWN_TTL_MS = 300_000  # a shard node not heard of for this long is no longer asked directly
KNOWN_MAX = 1024  # shard nodes remembered at most
ASK_MAX = 32  # nodes one locate or one survey asks directly
ASKS_AT_ONCE = 32  # a small network locates by direct asks (locate.py): a frozen node holds one for ASK_WAIT_S
ASK_WAIT_S = 1.0
HEAL_WINDOW_MS = 30_000  # after a lost node, a locate asks holders directly from the start
CACHED_HOLDERS = 8  # holders remembered per object
REPAIR_OBJECTS = 32  # objects surveyed per background round
MAX_HASHES = 1 << 16  # shard hashes one answer may list
ASK_RATE = 100  # direct asks per second one node answers for one asker (a small network locates by them)


class Reacher(ShardBase):
    """Mixin of `ShardCell`: holders reached without the tree, and the background repair."""

    def _init_reacher(self) -> None:
        self.holders_cache: OrderedDict[str, tuple[Holder, ...]] = OrderedDict()
        self._asks = asyncio.Semaphore(ASKS_AT_ONCE)
        self._survey_cursor = ""
        self.ask_rate = TokenBuckets(ASK_RATE, 2 * ASK_RATE, max_keys=10_000)

    # ------------------------------------------------------------ answering

    @receptor("shard.holds")
    async def _r_holds(self, env: envelope.Envelope) -> Any:
        """What this node holds of an object: its manifest and shard hashes (a find's answer, asked directly)."""
        oid = env.payload.get("id") if isinstance(env.payload, dict) else None
        if not model.is_hash(oid):
            raise self._reject("malformed", "id must be an object's SHA-256 in lowercase hex", 400)
        if not self.ask_rate.allow(env.signer, time.monotonic()):
            raise self._reject("rate_limited", "too many asks from this key", 429)
        self.counters["shard_holds_answered"] += 1
        return {"id": oid, "m": self.store.manifests.get(oid), "h": self.store.hashes_of(oid)}

    # ------------------------------------------------------------ asking

    def unsettled(self) -> bool:
        """The tree may be healing: this node lost a shard node lately, or is not placed in a tree."""
        recent = self.clock.now_ms() - self.lost_ms < HEAL_WINDOW_MS
        return recent or self.tree.status not in ("online", "root")

    def _known_nodes(self) -> dict[str, Holder]:
        now = self.clock.now_ms()
        out = {pk: h for pk, (h, seen) in self.directory.items() if now - seen <= KNOWN_TTL_MS}
        out[self.me_holder.pubkey] = self.me_holder
        return out

    async def _ask(self, h: Holder, oid: str) -> tuple[Holder, dict[str, Any] | None, set[str]] | None:
        """h's answer to ``shard.holds`` (None: no answer, counted)."""
        if h.pubkey == self.me_holder.pubkey:
            return h, self.store.manifests.get(oid), set(self.store.hashes_of(oid))
        try:
            async with self._asks:
                reply = await asyncio.wait_for(
                    self.shard_peers.post(
                        h.ip, h.port, "/recp", "shard.holds", {"id": oid}, expect_pubkey=h.pubkey, signed_reply=True
                    ),
                    ASK_WAIT_S,
                )
        except PeerUnreachable:
            self._forget(h.pubkey)
            self.counters["shard_ask_unreachable"] += 1
            return None
        except (PeerError, TimeoutError):
            self.counters["shard_ask_failed"] += 1
            return None
        self.counters["shard_ask_answered"] += 1
        m, hashes = (reply.get("m"), reply.get("h")) if isinstance(reply, dict) else (None, None)
        if not isinstance(hashes, list) or len(hashes) > MAX_HASHES:
            self.counters["shard_ask_malformed"] += 1
            return None
        return h, m if isinstance(m, dict) and m.get("id") == oid else None, {x for x in hashes if model.is_hash(x)}

    async def reach(self, oid: str, find: PendingFind, nodes: dict[str, Holder] | None = None) -> bool:
        """Ask holders of oid directly; answers join find.replies as a find's would. nodes: whom
        to ask (default: every node known). Returns whether R of the R+1 first lottery winners
        for oid among nodes answered (an object none of them holds most likely does not exist)."""
        nodes = self._known_nodes() if nodes is None else nodes
        asked: set[str] = set(find.replies)
        answered: set[str] = set(find.replies)

        async def one(h: Holder) -> None:  # each answer joins the find as it comes: a slow node holds up no other
            got = await self._ask(h, oid)
            if got is not None:
                answered.add(got[0].pubkey)
                if got[1] is not None or got[2]:
                    self._join(find, *got)

        async def wave(order: list[Holder]) -> None:
            batch: list[Holder] = []
            for h in order:
                if h.pubkey not in asked and len(asked) < ASK_MAX:
                    asked.add(h.pubkey)
                    batch.append(h)
            await asyncio.gather(*(one(h) for h in batch))

        ranked = [nodes[pk] for pk in placement.rank(oid, nodes)]
        top = ranked[: self.default_r + 1]
        await wave([*top, *self.holders_cache.get(oid, ()), *ranked])
        m = self._best_manifest(oid, find)
        if m is not None:
            held = {sh for _, _, hs in find.replies.values() for sh in hs}
            for sh in dict.fromkeys(x for x in m["shards"] if x not in held):
                if len(asked) >= ASK_MAX:
                    break
                await wave([nodes[pk] for pk in placement.rank(sh, nodes)[: m["r"] + 1]])
        return sum(h.pubkey in answered for h in top) >= min(self.default_r, len(top))

    def _join(self, find: PendingFind, holder: Holder, m: dict[str, Any] | None, hashes: set[str]) -> None:
        """An answer joins the find, its manifest checked here, once (owner-signed; a bad one is
        counted and dropped, the holder's shard hashes stay): a locate weighs its answers several
        times, and a check is an ECDSA verify (a holder's answer that comes twice, by a direct ask
        and by the find, with the very manifest it had: not again)."""
        prev = find.replies.get(holder.pubkey)
        if m is not None and (prev is None or prev[1] is not m):
            try:
                model.check_manifest(m)
            except model.BadRecord:
                self.counters["shard_rejected:bad_manifest"] += 1
                m = None
        find.replies[holder.pubkey] = (holder, m, hashes)
        find.event.set()

    def _best_manifest(self, oid: str, find: PendingFind) -> dict[str, Any] | None:
        """The owner's latest live manifest of oid. Holders keep the first owner's object and refuse
        another key's (first owner wins), so when manifests of two keys come back (a put that landed
        after a membership change) the owner is the key most holders answered for, then the earlier
        one: never simply the latest signature, which any key can make."""
        valid: list[dict[str, Any]] = []
        for m in (m for _, m, _ in find.replies.values() if m is not None):  # checked as they joined (`_join`)
            if m["id"] != oid:
                continue
            if self.store.deleted(oid, m["o"], m["t"]):  # a holder that kept or got back a deleted object
                self.counters["shard_rejected:tombstoned"] += 1
                continue
            valid.append(m)
        if not valid:
            return None
        held = Counter(m["o"] for m in valid)
        first = {o: min(m["t"] for m in valid if m["o"] == o) for o in held}
        owner = min(held, key=lambda o: (-held[o], first[o], o))
        return max((m for m in valid if m["o"] == owner), key=lambda m: m["t"])

    def remember(self, oid: str, holders: list[Holder]) -> None:
        """Keep the holders a locate found, for the next read of oid while the tree heals."""
        self.holders_cache[oid] = tuple(holders[:CACHED_HOLDERS])
        self.holders_cache.move_to_end(oid)
        while len(self.holders_cache) > HOLDERS_CACHE:
            self.holders_cache.popitem(last=False)

    # ------------------------------------------------------------ background repair

    async def survey_round(self) -> None:
        """Survey the next REPAIR_OBJECTS held manifests (after the cursor, wrapping around)."""
        ids = sorted(self.store.manifests)
        after = [oid for oid in ids if oid > self._survey_cursor]
        batch = (after + [oid for oid in ids if oid <= self._survey_cursor])[:REPAIR_OBJECTS]
        if batch:
            self._survey_cursor = batch[-1]
        self.counters["repair_rounds"] += 1
        for oid in batch:  # one object at a time: a round's asks never crowd out a reader's
            await self._survey(oid)

    async def _survey(self, oid: str) -> None:
        m = self.store.manifests.get(oid)
        if m is None:
            return
        live = self.live()
        find = PendingFind()
        find.replies[self.me_holder.pubkey] = (self.me_holder, m, set(self.store.hashes_of(oid)))
        r = m["r"]
        winners = [pk for pk in placement.rank(oid, live)[: r + 1]]
        for sh in dict.fromkeys(m["shards"]):
            winners += placement.rank(sh, live)[: r + 1]
        await self.reach(oid, find, {pk: live[pk] for pk in dict.fromkeys(winners)})
        self.counters["repair_surveyed"] += 1
        best = self._best_manifest(oid, find)
        if best is None or best["t"] != m["t"]:
            return  # deleted here meanwhile, or a newer version elsewhere: its holders repair it
        manifest_holders = [h for h, mm, _ in find.replies.values() if mm is not None and mm.get("t") == m["t"]]
        holders_of: dict[str, list[Holder]] = {}
        for h, _, hashes in find.replies.values():
            for sh in hashes:
                holders_of.setdefault(sh, []).append(h)
        short = [sh for sh in m["shards"] if len(holders_of.get(sh, [])) < r]
        if not short and len(manifest_holders) >= r:
            return
        driver = next(pk for pk in placement.rank(oid, {h.pubkey for h in manifest_holders}))
        if driver != self.me_holder.pubkey:
            self.counters["repair_not_driver"] += 1
            return
        self.counters["repair_driven"] += 1
        await self._repair(m, holders_of, manifest_holders)
