"""shardTreeCell: objects as owner-signed shards, placed by lottery, kept on R holders.

Where a shard message is built, sent, verified and handled:

* **Built**: the owner's client signs a shard record per shard and a manifest
  (`borgusb.shard.model`), and puts each shard in a frame
  (`dstream.post_frame`): the owner's signed envelope, a newline, the bytes.
* **Sent**: to ``POST /frame`` on the receptor port of any shardTreeCell (the
  *entry* node), which picks the holders by the placement lottery and sends
  them ``shard.hold`` frames signed by its node key.
* **Verified**: the kit's frame door passes the envelope through the node's
  one `Verifier` (signature, freshness, replay); the handler then checks the
  owner's record signature, the bytes' SHA-256 and who sent it (the owner
  for ``shard.put``; the owner or a shard node for ``shard.hold``,
  ``shard.keep`` and ``shard.fetch``), and the store checks ownership,
  tombstones and quota. Every refusal is counted (``shard_rejected:<reason>``
  on the monitoring port).
* **Deleted**: ``shard.delete`` takes only the owner's tombstone (the key of
  the object's manifest, found here or by locate; once the manifest is gone,
  a key whose tombstone this node holds, or any when it holds none) and
  broadcasts it with that manifest, so every node learns the shards it covers.
* **Handled**: `ShardStore.put` writes atomically into the content-addressed
  directory.

Reading is `locate.py` (every node asked directly in a small network, else a
find broadcast), `reach.py` (the direct asks, and holders asked while the tree
heals) and `datachannel.py` (the bytes); keeping R copies is `repair.py`,
`reach.py`'s background repair, and `trim.py` (copies beyond the placement
dropped once the winners prove theirs).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ... import envelope
from ...dna import CellDNA
from ...dstream import FairGate, Holder
from ...net.peer import PeerClient
from ...shard import model
from ...shard.store import ShardStore
from ...shard.storeerrors import Corrupt, StoreError
from ..kit import RequestError, frame, receptor
from .datachannel import DataChannelDoor
from .earn import HoldEarner
from .locate import Locator
from .repair import Replicator
from .selling import StorageSeller
from .serving import ServeEarner
from .settings import ShardSettings
from .trim import Trimmer

OWNED_ELSEWHERE = frozenset({"other_owner"})  # a put's placement stops at this refusal (repair.py `_place_on`)


class ShardCell(Locator, Trimmer, Replicator, DataChannelDoor, HoldEarner, ServeEarner, StorageSeller):
    """A Cell that stores shards (settings: `ShardSettings`)."""

    settings: ShardSettings

    def __init__(self, dna: CellDNA, ip: str, **kw: Any) -> None:
        settings = kw.get("settings")
        if not isinstance(settings, ShardSettings):
            settings = kw["settings"] = ShardSettings.from_sources()
        self._own_dir = kw.get("data_dir") is None
        if self._own_dir:
            root = settings.data_root or ("/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
            if root:
                os.makedirs(root, exist_ok=True)
            kw["data_dir"] = Path(tempfile.mkdtemp(prefix=f"borgusb-{dna.name}-{ip}-", dir=root))
        super().__init__(dna, ip, **kw)
        assert self.data_dir is not None
        self.store = ShardStore(Path(self.data_dir) / "shards", settings.quota)
        self.default_r = min(model.MAX_R, settings.r)
        self.gate = FairGate(settings.slots)
        self.scrub_bps = settings.scrub_bps
        self.shard_peers = PeerClient(
            self.key, self.clock, self.verifier, ip=ip, port=dna.recp_port, timeout_s=20, bind=ip
        )
        self.me_holder = Holder(self.key.public_key_hex, ip, dna.recp_port)
        self.serving: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.repair_until: dict[str, int] = {}
        self._repair_sem = asyncio.Semaphore(4)
        self._audits = asyncio.Semaphore(2)  # hold audits at once: each pulls up to 3 shards
        self._unanswered = {}
        self._claiming = asyncio.Lock()
        self.earn = settings.earn
        self.lost_ms = -(1 << 62)
        self.repair_ms = settings.repair_ms
        self._init_locator()
        self._init_reacher()
        self._init_seller(settings.bill_ms, settings.storage_free)
        self._init_serving()

    # ------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        self._spawn(self._directory_loop())
        if self.scrub_bps > 0:
            self._spawn(self._scrub_loop())
        if self.repair_ms > 0:
            self._spawn(self._background_rounds(self.survey_round, "repair"))
            self._spawn(self._background_rounds(self.trim_round, "trim"))
        if self.earn:
            self._spawn(self._earn_loop())
        if self.bill_ms > 0:
            self._spawn(self._bill_loop())

    async def on_stop(self) -> None:
        self.storage.flush()
        self.receipts.flush()
        await self.shard_peers.close()
        if self._own_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # ------------------------------------------------------------ frames (binary)

    def _check_shard(
        self, env: envelope.Envelope, data: memoryview, *, owner_signs: bool
    ) -> tuple[dict[str, Any], str | None]:
        p = env.payload
        if not isinstance(p, dict):
            raise self._reject("malformed", "payload must be an object", 400)
        obj = p.get("obj")
        try:
            rec = model.check_record(p.get("rec"))
        except model.BadRecord as exc:
            raise self._reject(exc.reason, str(exc), 403) from None
        if owner_signs and env.signer != rec["o"]:
            raise self._reject("not_owner", "only the owner's key can store a shard through the receptor", 403)
        if len(data) != rec["n"] or model.sha256_hex(data) != rec["h"]:
            raise self._reject("hash_mismatch", "the bytes do not match the record's SHA-256 and size", 422)
        if obj is not None and not model.is_hash(obj):
            raise self._reject("malformed", "obj must be a SHA-256", 400)
        return rec, obj

    @frame("shard.hold")
    async def _f_hold(self, env: envelope.Envelope, data: memoryview) -> tuple[Any, bytes]:
        rec, obj = self._check_shard(env, data, owner_signs=False)
        self._check_sender(env, rec["o"])
        self._gate(env, rec, obj, env.payload.get("new") is True)  # a put's, or a repair off the lottery's picks
        result = self._store_local(rec, data, obj)
        if result == "stored":  # a copy already held adds nothing to what its owner keeps here
            self._stored(rec["o"], rec["n"])
        return {"h": rec["h"], "result": result}, b""

    @frame("shard.put")
    async def _f_put(self, env: envelope.Envelope, data: memoryview) -> tuple[Any, bytes]:
        rec, obj = self._check_shard(env, data, owner_signs=True)
        r = env.payload.get("r", self.default_r)
        if not isinstance(r, int) or isinstance(r, bool) or not 1 <= r <= model.MAX_R:
            raise self._reject("malformed", f"r must be 1..{model.MAX_R}", 400)
        payload = {"rec": rec, "obj": obj, "new": True}
        held, refused = await self._place_on(
            rec["h"], r, lambda h: self._hold_on(h, payload, rec, data, obj), final=OWNED_ELSEWHERE
        )
        if "other_owner" in refused.values():
            raise self._owned_elsewhere("a shard of this content", len(held))
        if not held:
            reasons = set(refused.values())
            if reasons == {"payment_required"}:
                self.counters["shard_rejected:payment_required"] += 1
                raise RequestError(
                    "payment_required",
                    "every holder the lottery offered keeps your free share already: pay holders ahead "
                    f"(borgusb pay credit 0.1 --for storage --node ADDRESS, e.g. {self.ip})",
                    402,
                )
            status = 409 if reasons == {"other_owner"} else 507 if reasons == {"quota"} else 503
            raise RequestError("no_holder", f"no holder took the shard: {sorted(reasons)}", status)
        return {"h": rec["h"], "copies": len(held), "holders": held, "refused": refused}, b""

    def _get_args(self, env: envelope.Envelope) -> tuple[str, str]:
        p = env.payload
        h = p.get("h") if isinstance(p, dict) else None
        if not model.is_hash(h):
            raise self._reject("malformed", "h must be a SHA-256", 400)
        return h, str(p.get("sid", ""))[:32] or env.signer[:16]

    async def _read_checked(self, h: str, sid: str, read: Callable[[str], Any]) -> Any:
        """read(h) (a store read that checks the hash) in a worker thread, behind the fair gate."""
        await self.gate.acquire(sid)
        try:
            try:
                got = await asyncio.to_thread(read, h)
            except Corrupt as exc:
                self.counters["shard_corrupt_dropped"] += 1
                self._spawn(self._refetch(h))
                raise RequestError("corrupt", str(exc), 410) from None
        finally:
            self.gate.release()
        if got is None:
            raise RequestError("not_held", "this node does not hold that shard", 404)
        return got

    @frame("shard.get")
    async def _f_get(self, env: envelope.Envelope, data: memoryview) -> tuple[Any, bytes]:
        h, sid = self._get_args(env)
        rec, out = await self._read_checked(h, sid, self.store.get)
        self._count_served(env, sid, h, len(out))
        return {"h": h, "rec": rec}, out

    # ------------------------------------------------------------ receptor (JSON)

    def _manifest_arg(self, env: envelope.Envelope) -> dict[str, Any]:
        try:
            return model.check_manifest(env.payload.get("m") if isinstance(env.payload, dict) else None)
        except model.BadRecord as exc:
            raise self._reject(exc.reason, str(exc), 403) from None

    @receptor("shard.manifest")
    async def _r_manifest(self, env: envelope.Envelope) -> Any:
        m = self._manifest_arg(env)
        if env.signer != m["o"]:
            raise self._reject("not_owner", "only the owner's key can store a manifest", 403)
        held, refused = await self._place_on(m["id"], m["r"], lambda t: self._keep_on(t, m), final=OWNED_ELSEWHERE)
        if "other_owner" in refused.values():
            raise self._owned_elsewhere(f"object {m['id']}", len(held))
        if not held:
            raise RequestError("no_holder", f"no holder took the manifest: {sorted(set(refused.values()))}", 409)
        return {"id": m["id"], "copies": len(held), "holders": held, "refused": refused}

    def _owned_elsewhere(self, what: str, took: int) -> RequestError:
        """The refusal of a put whose placement winners keep another key's copy (first owner wins)."""
        self.counters["shard_rejected:other_owner"] += 1
        done = f"{took} node(s) took it under your key before the others refused" if took else "nothing was stored"
        return RequestError(
            "other_owner",
            f"{what} is already stored and owned by another key, which alone can replace or delete it; "
            f"the put stopped ({done}); stat names the owner",
            409,
        )

    @receptor("shard.keep")
    async def _r_keep(self, env: envelope.Envelope) -> Any:
        m = self._manifest_arg(env)
        self._check_sender(env, m["o"])
        try:
            return {"result": self.store.put_manifest(m)}  # the store checks tombstones and ownership
        except StoreError as exc:
            raise self._reject(exc.reason, str(exc), exc.status) from None

    def _oid(self, env: envelope.Envelope) -> str:
        oid = env.payload.get("id") if isinstance(env.payload, dict) else None
        if not model.is_hash(oid):
            raise RequestError("malformed", "id must be an object's SHA-256 in lowercase hex")
        return oid

    @receptor("shard.locate")
    async def _r_locate(self, env: envelope.Envelope) -> Any:
        return await self.locate(self._oid(env), repair=env.payload.get("repair", True) is not False)

    @receptor("shard.stat")
    async def _r_stat(self, env: envelope.Envelope) -> Any:
        loc = await self.locate(self._oid(env), repair=env.payload.get("repair", True) is not False)
        m = loc["manifest"]
        if m is None:
            return {"id": loc["id"], "found": False}
        return {
            "id": m["id"],
            "found": True,
            "size": m["size"],
            "shard_size": m["ss"],
            "shards": len(m["shards"]),
            "r": m["r"],
            "owner": m["o"],
            "t": m["t"],
            "copies_min": min(loc["copies"], default=m["r"]),
            "copies": loc["copies"],
            "manifest_copies": loc["manifest_copies"],
            "holders": [h[1] for h in loc["holders"]],
            "shard_holders": loc["shards"],  # for each shard, the indexes in holders of the nodes keeping it
            "repairing": loc["repairing"],
        }

    @receptor("shard.owned")
    async def _r_owned(self, env: envelope.Envelope) -> Any:
        """The manifests this node holds for one owner (the conduit merges these across nodes)."""
        owner = env.payload.get("o") if isinstance(env.payload, dict) else None
        if not isinstance(owner, str):
            raise RequestError("malformed", 'name the owner: {"o": public key}')
        objects = [
            {"id": m["id"], "size": m["size"], "t": m["t"], "r": m["r"]}
            for m in self.store.manifests.values()
            if m["o"] == owner
        ]
        return {"objects": sorted(objects, key=lambda o: -o["t"])[:1000]}

    @receptor("shard.delete")
    async def _r_delete(self, env: envelope.Envelope) -> Any:
        try:
            tomb = model.check_tomb(env.payload.get("tomb") if isinstance(env.payload, dict) else None)
        except model.BadRecord as exc:
            raise self._reject(exc.reason, str(exc), 403) from None
        if env.signer != tomb["o"]:
            raise self._reject("not_owner", "only the owner's key can delete", 403)
        oid, signer = tomb["id"], tomb["o"]
        m = self.store.manifests.get(oid) or (await self.locate(oid, repair=False))["manifest"]
        if m is not None:
            mine = m["o"] == signer
        else:  # deleted already: the signer's own tombstone, or nobody's, says it is the signer's
            mine = self.store.tomb(oid, signer) is not None or self.store.owner_of(oid) is None
        if not mine:
            raise self._reject("not_owner", "this object belongs to another key", 403)
        bid = self.broadcast("del", {"tomb": tomb, "m": m})  # the manifest: which shards the deletion covers
        return {"id": oid, "broadcast": bid}

    @receptor("shard.have")
    async def _r_have(self, env: envelope.Envelope) -> Any:
        if isinstance(env.payload, dict):
            self._on_have(Holder(env.signer, env.sender.ip, env.sender.port), env.payload)
        return {"ok": True}

    @receptor("shard.fetch")
    async def _r_fetch(self, env: envelope.Envelope) -> Any:
        """A repairing node asks this one to copy shard h from `from`; ``m``, the owner's live
        manifest of `obj`, is sent again when the first ask was refused as ``tombstoned`` (the
        shard was also a deleted object's: the live manifest vouches for it)."""
        self._check_sender(env)
        p = env.payload if isinstance(env.payload, dict) else {}
        h, obj = p.get("h"), p.get("obj")
        named = p.get("from", [])
        try:
            if not isinstance(named, list):
                raise TypeError
            holders = [Holder.from_json(x) for x in named[:16]]
        except (ValueError, TypeError):
            raise RequestError("malformed", "from must list [pubkey, ip, port]") from None
        if not model.is_hash(h) or (obj is not None and not model.is_hash(obj)):
            raise RequestError("malformed", "h and obj must be SHA-256 hashes")
        if not self.store.has(h) and not self.placed_here(h):  # a copy here would be charged to its owner
            raise self._reject("not_placed", "this node is not among the shard's placement winners", 403)
        sources = self._known(holders)
        if holders and not sources:
            raise self._reject("unknown_source", "this node fetches only from shard nodes it knows", 403)
        live = self._manifest_arg(env) if p.get("m") is not None else None
        try:
            return {"ok": await self.fetch_into_store(h, obj, sources, live)}
        except StoreError as exc:
            raise self._reject(exc.reason, str(exc), exc.status) from None

    # ------------------------------------------------------------ monitoring

    def status(self) -> dict[str, Any]:
        doc = super().status()
        now = self.clock.now_ms()
        doc["shard"] = {
            "data_dir": str(self.data_dir),
            "store": self.store.stats(),
            "default_r": self.default_r,
            "directory": len(self.live()),
            "streams": {sid: dict(st, active=now - st.get("last_ms", 0) < 2000) for sid, st in self.serving.items()},
            "gate_waiting": len(self.gate.queue),
            "earn": {
                "on": self.earn,
                "claimant": self.key.public_key_hex,
                "last_claimed": self._last_claimed(),
                "last_served": self._last_claimed("serve"),
            },
        }
        return doc
