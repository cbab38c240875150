"""Finding shards: the directory of shard nodes, and ``locate`` (who holds an object).

``shard.locate`` asks every live shard node directly in a small settled network
(``shard.holds``, reach.py), else broadcasts a find through the tree and holders
answer ``shard.have``; both answers carry the manifest and the shard hashes a
holder keeps. The reply lists the holders of each shard and the confirmation
count, and shards below R copies are re-replicated right away: every read is a
health check. A find that cannot complete (the tree is healing) is completed by
direct asks, and one that finds nothing while the tree heals is refused as
``healing``, never answered "not found".
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from ...dstream import Holder
from ...net.peer import PeerError
from ...shard import model
from ...shard.storeerrors import StoreError
from ..kit import RequestError, on_broadcast
from ..kit.guard import TokenBuckets
from ..servicemgr.client import ServiceMgrClient
from .base import PendingFind
from .reach import KNOWN_MAX, KNOWN_TTL_MS, Reacher

ANNOUNCE_S = 1.0
LOCATE_WAIT_S = 1.5
REACH_AFTER_S = 0.4  # a find still short after this is completed by direct asks (reach.py)
DIRECT_MAX = 16  # live shard nodes at most for a locate to ask each directly instead of a find
FIND_RATE = 20  # finds per second one node answers for one finder


class Locator(Reacher):
    """Mixin of `ShardCell`: who holds what."""

    def _init_locator(self) -> None:
        self.directory: dict[str, tuple[Holder, int]] = {}
        self.finds: dict[str, PendingFind] = {}
        self.find_rate = TokenBuckets(FIND_RATE, 2 * FIND_RATE, max_keys=10_000)  # answers per finder

    async def _directory_loop(self) -> None:
        """Keep the directory of shard nodes: from the service registry (serviceMgrCell on this
        IP) when it answers, else from the nodes' own "hi" broadcasts through the shard tree."""
        while True:
            if not await self._directory_from_registry() and self.tree.status in ("online", "root"):
                self.broadcast("hi", {"ip": self.me.ip, "port": self.dna.recp_port})
            now = self.clock.now_ms()
            for pk, (_, seen) in list(self.directory.items()):  # live() takes the fresh ones
                if now - seen > KNOWN_TTL_MS:
                    del self.directory[pk]
            for pk, _ in sorted(self.directory.items(), key=lambda e: e[1][1])[: len(self.directory) - KNOWN_MAX]:
                del self.directory[pk]
            await asyncio.sleep(ANNOUNCE_S)

    async def _directory_from_registry(self) -> bool:
        try:
            services = await ServiceMgrClient(self.peers, self.ip).services(self.dna.name)
        except PeerError:
            self.counters["directory_from_broadcast"] += 1
            return False
        now = self.clock.now_ms()
        for e in services:
            node, ip, ports = e.get("node"), e.get("ip"), e.get("ports")
            if (
                isinstance(node, str)
                and isinstance(ip, str)
                and isinstance(ports, list)
                and len(ports) >= 2
                and node != self.me_holder.pubkey
            ):
                self.directory[node] = (Holder(node, ip, ports[1]), now)
        self.counters["directory_from_registry"] += 1
        return True

    @on_broadcast("hi")
    def _b_hi(self, origin: str, data: dict[str, Any]) -> None:
        ip, port = data.get("ip"), data.get("port")
        if isinstance(ip, str) and isinstance(port, int) and origin != self.me_holder.pubkey:
            self.directory[origin] = (Holder(origin, ip, port), self.clock.now_ms())

    @on_broadcast("find")
    async def _b_find(self, origin: str, data: dict[str, Any]) -> None:
        await self._answer_find(origin, data)

    @on_broadcast("del")
    def _b_delete(self, origin: str, data: dict[str, Any]) -> None:
        """A tombstone and its signer's manifest: both owner-signed, so whoever broadcast them (an
        entry node, or anyone through ``tree.broadcast``) matters not; the store decides."""
        try:
            self.store.delete(data.get("tomb"), data.get("m"))
        except StoreError as exc:
            self.counters[f"shard_rejected:{exc.reason}"] += 1

    async def _answer_find(self, origin: str, data: dict[str, Any]) -> None:
        """Tell the finder what this node holds of the object, at the finder's address as this
        node's directory knows it: a broadcast naming an address would make every node connect
        wherever its sender likes. A finder the directory does not know, or one past its rate of
        finds, gets no answer (counted)."""
        q, oid = data.get("q"), data.get("id")
        if origin == self.me_holder.pubkey or not (isinstance(q, str) and len(q) <= 64 and model.is_hash(oid)):
            return  # this node's own find: answered when it began (`locate`)
        answer = self._have(q, oid)
        if answer is None:
            return
        finder = self.live().get(origin)
        if finder is None:
            self.counters["find_unknown_origin"] += 1
            return
        if not self.find_rate.allow(origin, time.monotonic()):
            self.counters["find_rate_limited"] += 1
            return
        try:
            await self.shard_peers.post(finder.ip, finder.port, "/recp", "shard.have", answer, expect_pubkey=origin)
            self.counters["shard_have_sent"] += 1
        except PeerError:
            self.counters["shard_have_failed"] += 1

    def _have(self, q: str, oid: str) -> dict[str, Any] | None:
        """This node's answer to find q: oid's manifest and the shards of it held here (None: nothing)."""
        m = self.store.manifests.get(oid)
        hashes = self.store.hashes_of(oid)
        return None if m is None and not hashes else {"q": q, "id": oid, "m": m, "h": hashes}

    def _on_have(self, holder: Holder, answer: dict[str, Any]) -> None:
        q = answer.get("q")
        find = self.finds.get(q) if isinstance(q, str) else None  # a list or object as q is no key
        if find is None:
            self.counters["shard_have_unsolicited"] += 1
            return
        m = answer.get("m")
        hashes = answer.get("h")
        if not isinstance(hashes, list):
            return
        self._join(find, holder, m if isinstance(m, dict) else None, {h for h in hashes if isinstance(h, str)})

    async def locate(self, oid: str, *, repair: bool = True, wait_s: float = LOCATE_WAIT_S) -> dict[str, Any]:
        """Who holds oid: the answers of holders asked directly, or of a find through the tree.

        A settled network of at most `DIRECT_MAX` live shard nodes (heard from within the
        directory's `DIRECTORY_TTL_MS`) is asked directly, every node at once (reach.py): one
        request and its reply per node, where a find costs a tree message to each node, an
        answer back from each holder, and the find's trip up to the root and down. The find goes
        out too only when those answers leave a shard unheld (a holder the directory does not
        list, or one that went quiet). A larger network gets the find; its direct
        asks start with it while the tree heals, else once it has had `REACH_AFTER_S` (a find
        through a whole tree answers within milliseconds). Raises ``healing`` (503) when nothing
        was found and the tree is not settled or the object's first lottery winners did not
        answer (reach.py)."""
        q = os.urandom(8).hex()
        find = self.finds[q] = PendingFind()
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + wait_s
        live, unsettled = self.live(), self.unsettled()
        small = len(live) <= DIRECT_MAX and not unsettled
        # a small network's live nodes only: one that went quiet is not asked (a frozen one would hold
        # an ask for its whole second); while the tree heals, every node known lately
        direct = self._reach_all(oid, find, live if small else self._known_nodes()) if small or unsettled else None
        if small:
            self.counters["shard_locate_direct"] += 1
        else:
            self._find(q, oid)
        find_sent = not small
        try:
            while not self._complete(find) and (left := deadline - loop.time()) > 0:
                if direct is None and loop.time() - start >= REACH_AFTER_S:
                    direct = self._reach_all(oid, find, self._known_nodes())
                if direct is not None and direct.done():
                    if self._every_shard_held(oid, find):
                        break  # the direct asks are all in: no wait for a find that may not travel
                    if not find_sent:  # a holder this node's directory does not list: the tree reaches it
                        self.counters["shard_locate_direct_short"] += 1
                        self._find(q, oid)
                        find_sent = True
                try:
                    async with asyncio.timeout(min(left, 0.1)):  # no extra task (wait_for's) between answer and reply
                        await find.event.wait()
                except TimeoutError:
                    continue
                find.event.clear()
        finally:
            del self.finds[q]
        winners_answered = True  # only "not found" needs them, and then the direct asks are awaited
        if not self._complete(find):
            winners_answered = await (direct or self._reach_all(oid, find, self._known_nodes()))
        if self._best_manifest(oid, find) is not None and not self._every_shard_held(oid, find):
            # a shard whose holders' answers were all too slow (a jittery link): ask again, once
            self.counters["shard_locate_asked_again"] += 1
            await self.reach(oid, find)
        m = self._best_manifest(oid, find)
        if m is None and not (winners_answered and self.tree.status in ("online", "root")):
            self.counters["shard_rejected:healing"] += 1
            raise RequestError("healing", "the network is healing and not every holder answered: retry", 503)
        if m is None:
            return {
                "id": oid,
                "found": False,
                "manifest": None,
                "holders": [],
                "shards": [],
                "copies": [],
                "manifest_copies": 0,
                "answered": len(find.replies),
            }
        holders = sorted({h for h, _, _ in find.replies.values()}, key=lambda h: h.ip)
        self.remember(oid, holders)
        index = {h.pubkey: i for i, h in enumerate(holders)}
        holders_of: dict[str, list[Holder]] = {}
        for h, _, hashes in find.replies.values():
            for sh in hashes:
                holders_of.setdefault(sh, []).append(h)
        shards = [[index[h.pubkey] for h in holders_of.get(sh, [])] for sh in m["shards"]]
        manifest_holders = [h for h, mm, _ in find.replies.values() if mm is not None and mm.get("t") == m["t"]]
        copies = [len(s) for s in shards]
        short = sum(1 for c in copies if c < m["r"]) + (len(manifest_holders) < m["r"])
        if repair and short:
            self._spawn(self._repair(m, holders_of, manifest_holders))
        return {
            "id": oid,
            "found": True,
            "manifest": m,
            "holders": [h.to_json() for h in holders],
            "shards": shards,
            "copies": copies,
            "manifest_copies": len(manifest_holders),
            "repairing": short if repair else 0,
            "answered": len(find.replies),
        }

    def _find(self, q: str, oid: str) -> None:
        """Broadcast find q for oid (holders answer at this node's address in their directory),
        and answer it here at once, not after its trip through the root and back."""
        self.broadcast("find", {"q": q, "id": oid})
        if (own := self._have(q, oid)) is not None:
            self._on_have(self.me_holder, own)

    def _reach_all(self, oid: str, find: PendingFind, known: dict[str, Holder]) -> asyncio.Task[bool]:
        """`reach` every known node, in the background; the locate waiting on the find wakes when it ends."""
        task = self._spawn(self.reach(oid, find, known))
        task.add_done_callback(lambda _: find.event.set())
        return task

    def _every_shard_held(self, oid: str, find: PendingFind) -> bool:
        """Whether the find has oid's manifest and at least one holder of each of its shards."""
        m = self._best_manifest(oid, find)
        if m is None:
            return False
        held = {sh for _, _, hashes in find.replies.values() for sh in hashes}
        return all(sh in held for sh in m["shards"])

    def _complete(self, find: PendingFind) -> bool:
        ms = [m for _, m, _ in find.replies.values() if m is not None]
        if not ms:
            return False
        m = max(ms, key=lambda x: x.get("t", 0))
        r = m.get("r", self.default_r)
        if not isinstance(r, int) or len(ms) < r or not isinstance(m.get("shards"), list):
            return False
        counts: dict[str, int] = {}
        for _, _, hashes in find.replies.values():
            for h in hashes:
                counts[h] = counts.get(h, 0) + 1
        return all(counts.get(h, 0) >= r for h in m["shards"])
