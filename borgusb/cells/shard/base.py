"""What the shard cell's parts share: the attributes `ShardCell.__init__` sets, typed once."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from ... import envelope
from ...dstream import FairGate, Holder, post_frame
from ...ledger.servework import ServeRecord
from ...net.peer import PeerClient, PeerError, PeerRejected
from ...shard import model
from ...shard.store import ShardStore
from ...shard.storeerrors import Corrupt, StoreError
from ..kit import Cell, RequestError

DIRECTORY_TTL_MS = 4_500  # a shard node not heard of for this long is left out of placement
log = logging.getLogger("borgusb.shard")

FETCH_TIMEOUT_S = 10.0  # a holder proving it holds a shard serves it within this
MAX_SERVED_LOG = 65_536  # (reader, shard) pairs remembered as served, for readers' receipts


class PendingFind:
    """One locate in progress: the answers of the holders so far."""

    def __init__(self) -> None:
        self.replies: dict[str, tuple[Holder, dict[str, Any] | None, set[str]]] = {}
        self.event = asyncio.Event()


class ShardBase(Cell):
    """The state of a shard cell, as its parts (locate, repair, data channel) see it."""

    store: ShardStore
    default_r: int
    gate: FairGate
    scrub_bps: int
    shard_peers: PeerClient
    me_holder: Holder
    serving: OrderedDict[str, dict[str, Any]]
    served_log: OrderedDict[tuple[str, str], tuple[int, int]]  # (reader, sha256) -> (size, ms): receipts' proof
    repair_until: dict[str, int]
    _repair_sem: asyncio.Semaphore
    directory: dict[str, tuple[Holder, int]]  # kept longer than DIRECTORY_TTL_MS: reach.py asks them
    lost_ms: int  # when a shard node last proved unreachable (reach.py: the network may be healing)
    repair_ms: int
    finds: dict[str, PendingFind]

    async def _background_rounds(self, work: Callable[[], Awaitable[Any]], what: str) -> None:
        """Run `work` every `repair_ms` (jittered by half) for good: the background repair and the
        trim. A round's failure is counted (``<what>_round_failed``) and the next round tries again."""
        while True:
            await asyncio.sleep(self.repair_ms / 1000 * random.uniform(0.5, 1.5))
            try:
                await work()
            except Exception:
                self.counters[f"{what}_round_failed"] += 1
                log.exception("background %s round", what)

    async def _fetch_check(self, ip: str, port: int, claimant: str, h: str, n: int, sid: str = "audit") -> str:
        """Why the claimant did not prove it holds shard h of n bytes by serving them ("" when it
        did): the hold reward's audit (earn.py) and a trim's proof (trim.py) ask the same."""
        if claimant == self.me_holder.pubkey:
            got = await asyncio.to_thread(self._own_copy, h)
            return "" if got is not None and len(got) == n and model.sha256_hex(got) == h else "not in this store"
        try:
            _, data = await asyncio.wait_for(
                post_frame(self.shard_peers, ip, port, "shard.get", {"h": h, "sid": sid}, expect_pubkey=claimant),
                FETCH_TIMEOUT_S,
            )
        except PeerRejected as exc:
            return f"refused: {exc.reason}"
        except (PeerError, TimeoutError) as exc:
            return f"did not serve it: {exc or 'timeout'}"
        if len(data) != n or model.sha256_hex(data) != h:
            return "served other bytes"
        return ""

    def _own_copy(self, h: str) -> bytes | None:
        try:
            got = self.store.get(h)
        except (Corrupt, OSError):  # a corrupt copy is dropped by the store: not held
            return None
        return got[1] if got else None

    def _reject(self, reason: str, detail: str, status: int) -> RequestError:
        self.counters[f"shard_rejected:{reason}"] += 1
        return RequestError(reason, detail, status)

    def _gate(self, env: envelope.Envelope, rec: dict[str, Any], obj: str | None, new: bool) -> None:
        """Refuse (402) a hold its owner's free share and credit here do not cover (selling.py)."""
        raise NotImplementedError

    def _may_store(self, owner: str, n: int, h: str = "", obj: str | None = None) -> None:
        """Refuse (402) a new shard its owner's free share and credit here do not cover (selling.py)."""
        raise NotImplementedError

    def _stored(self, owner: str, n: int) -> None:
        """Count a shard just stored in the storage gate's totals (selling.py)."""
        raise NotImplementedError

    def serve_record(self, start: int) -> ServeRecord:
        """The serve record of the period starting at `start` (serving.py); `BadWork` if none is owed."""
        raise NotImplementedError

    def placed_here(self, h: str) -> bool:
        """Whether this node is a placement winner of shard h (selling.py)."""
        raise NotImplementedError

    def _store_local(
        self, rec: dict[str, Any], data: bytes | memoryview, obj: str | None, live: dict[str, Any] | None = None
    ) -> str:
        try:
            return self.store.put(rec, data, obj, live=live)
        except StoreError as exc:
            raise self._reject(exc.reason, str(exc), exc.status) from None

    def _check_sender(self, env: envelope.Envelope, owner: str | None = None) -> None:
        """Who may ask this node to store what another signed (``shard.hold``, ``shard.keep``,
        ``shard.fetch``): the owner who signed it, or a shard node of this node's directory (the
        entry node placing a put, a node repairing). Anyone may run a shard node, so this keeps
        out plain keys, not a determined attacker: the store's own checks (the owner's signature,
        first owner wins, tombstones) are what hold against a shard node that replays."""
        if env.signer == owner or env.signer in self.live():
            return
        raise self._reject("not_shard_node", "only the owner or a shard node may ask this node to store this", 403)

    def _count_served(self, env: envelope.Envelope, sid: str, h: str, n: int) -> None:
        """Count shard h (n bytes) as served on session sid, and log it for a receipt (serving.py)."""
        p = env.payload
        self.served_log[(env.signer, h)] = (n, self.clock.now_ms())
        self.served_log.move_to_end((env.signer, h))
        while len(self.served_log) > MAX_SERVED_LOG:
            self.served_log.popitem(last=False)
        st = self.serving.setdefault(sid, {"peer": env.sender.ip, "shards": 0, "bytes": 0})
        st["shards"] += 1
        st["bytes"] += n
        st["last_ms"] = self.clock.now_ms()
        if isinstance(p.get("of"), int) and isinstance(p.get("done"), int) and p["of"] > 0:
            # an int within 0..100 (no float, no huge number): cell.status signs status() as canonical JSON
            st["progress"] = max(0, min(100, (p["done"] + 1) * 100 // p["of"]))
        self.serving.move_to_end(sid)
        while len(self.serving) > 64:
            self.serving.popitem(last=False)

    def live(self) -> dict[str, Holder]:
        now = self.clock.now_ms()
        out = {pk: h for pk, (h, seen) in self.directory.items() if now - seen <= DIRECTORY_TTL_MS}
        out[self.me_holder.pubkey] = self.me_holder
        return out

    def _known(self, holders: list[Holder]) -> list[Holder]:
        """The holders a request names, at the addresses this node's directory has for them: a
        request naming addresses would make this node connect wherever the requester likes."""
        live = self.live()
        known = [live[h.pubkey] for h in holders if h.pubkey in live]
        if len(known) < len(holders):
            self.counters["fetch_source_unknown"] += len(holders) - len(known)
        return known

    def _forget(self, pk: str) -> None:
        if pk != self.me_holder.pubkey:
            self.directory.pop(pk, None)
            self.lost_ms = self.clock.now_ms()

    async def _refetch(self, h: str) -> None:
        """Fetch a good copy of a shard whose local copy was dropped as corrupt (repair.py)."""
        raise NotImplementedError

    async def _repair(
        self, m: dict[str, Any], holders_of: dict[str, list[Holder]], manifest_holders: list[Holder]
    ) -> None:
        """Bring an object's short shards and manifest back to R copies (repair.py)."""
        raise NotImplementedError
