"""shardTreeCell: objects as owner-signed shards, placed by lottery, kept on R holders.

Where a shard message is built, sent, verified and handled:

* **Built**: the owner's client signs a shard record per shard and a manifest
  (`shard.model`), and puts each shard in a frame (`dstream.post_frame`): the
  owner's signed envelope, a newline, the bytes.
* **Sent**: to ``POST /shard`` on the receptor port of any shardTreeCell (the
  *entry* node), which picks the holders by the placement lottery and sends
  them ``shard.hold`` frames signed by its node key.
* **Verified**: `_handle_frame` passes the envelope through the node's one
  `Verifier` (signature, freshness, replay); the handler then checks the
  owner's record signature and the bytes' SHA-256, and the store checks
  ownership, tombstones and quota. Every refusal is counted
  (``shard_rejected:<reason>`` on the monitoring port).
* **Handled**: `ShardStore.put` writes atomically into the content-addressed
  directory.

Reading: ``shard.locate`` broadcasts a find through the tree; holders answer
``shard.have`` (manifest and the shard hashes they hold); the reply lists the
holders of each shard and the confirmation count; shards below R copies are
re-replicated right away (``shard.fetch`` to the next winners of the
lottery): every read is a health check. The bytes then move by DStream
(`dstream.Receiver`) straight from the holders.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web

from .. import envelope
from ..dna import CellDNA
from ..dna import get as dna_of
from ..dstream import ENVELOPE_HEADER, MAX_BATCH, MAX_FRAME, FairGate, Holder, post_frame, unframe
from ..net.peer import PeerClient, PeerError, PeerRejected, PeerUnreachable
from ..shard import model, placement
from ..shard.store import Corrupt, ShardStore, StoreError
from .base import Cell, RequestError, receptor

log = logging.getLogger("borgusb.shard")

ANNOUNCE_S = 1.0
DIRECTORY_TTL_MS = 4_500
LOCATE_WAIT_S = 1.5
REPAIR_HOLDOFF_MS = 5_000
SCRUB_BPS = 4 << 20  # a full store of 4 GiB is re-hashed about every 17 minutes, at ~0.2% of a core

FrameHandler = Callable[[envelope.Envelope, memoryview], Awaitable[tuple[Any, bytes | memoryview]]]


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


class _Find:
    def __init__(self) -> None:
        self.replies: dict[str, tuple[Holder, dict[str, Any] | None, set[str]]] = {}
        self.event = asyncio.Event()


class ShardCell(Cell):
    """A Cell that stores shards. Settings: ``--data DIR``; env BORGUSB_SHARD_QUOTA (bytes),
    BORGUSB_SHARD_R (default R), BORGUSB_SHARD_SLOTS (concurrent reads), BORGUSB_DATA_ROOT,
    BORGUSB_SCRUB_BPS (bytes a second the background SHA-256 scrub re-hashes; 0 turns it off)."""

    def __init__(self, dna: CellDNA, ip: str, **kw: Any) -> None:
        self._own_dir = kw.get("data_dir") is None
        if self._own_dir:
            root = os.environ.get("BORGUSB_DATA_ROOT") or ("/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
            if root:
                os.makedirs(root, exist_ok=True)
            kw["data_dir"] = Path(tempfile.mkdtemp(prefix=f"borgusb-{dna.name}-{ip}-", dir=root))
        super().__init__(dna, ip, **kw)
        assert self.data_dir is not None
        self.store = ShardStore(Path(self.data_dir) / "shards", _env_int("BORGUSB_SHARD_QUOTA", 4 << 30))
        self.default_r = max(1, min(model.MAX_R, _env_int("BORGUSB_SHARD_R", model.DEFAULT_R)))
        self.gate = FairGate(_env_int("BORGUSB_SHARD_SLOTS", 8))
        self.scrub_bps = _env_int("BORGUSB_SCRUB_BPS", SCRUB_BPS)
        self.shard_peers = PeerClient(self.key, self.clock, self.verifier, ip=ip, port=dna.recp_port, timeout_s=20, bind=ip)
        self.me_holder = Holder(self.key.public_key_hex, ip, dna.recp_port)
        self.directory: dict[str, tuple[Holder, int]] = {}
        self.finds: dict[str, _Find] = {}
        self.serving: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.repair_until: dict[str, int] = {}
        self._repair_sem = asyncio.Semaphore(4)
        self.frame_routes: dict[str, FrameHandler] = {
            "shard.put": self._f_put,
            "shard.hold": self._f_hold,
            "shard.get": self._f_get,
        }

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await super().start()
        self._spawn(self._directory_loop())
        if self.scrub_bps > 0:
            self._spawn(self._scrub_loop())

    async def stop(self) -> None:
        await super().stop()
        await self.shard_peers.close()
        if self._own_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _receptor_app(self) -> web.Application:
        app = super()._receptor_app()
        app.router.add_post("/shard", self._handle_frame)
        return app

    def _monitor_app(self) -> web.Application:
        app = super()._monitor_app()
        app.router.add_get("/shard/{h}", self._handle_plain_get)  # read-only: DStream's data channel
        return app

    async def _handle_plain_get(self, request: web.Request) -> web.StreamResponse:
        """Shard bytes without TLS (`dstream.DataChannel`): ``GET /shard/<h1>,<h2>,...``; the
        request is a signed ``shard.get`` envelope in a header naming the same hashes (``hs``);
        the reply's header is the holder's signed envelope with each shard's size (or refusal);
        the receiver checks the bytes' SHA-256 against the owner-signed manifest, so integrity
        does not depend on TLS. The holder checks each shard file in place (mapped, in a
        worker thread; `ShardStore.open_checked`) before anything is sent, a corrupt copy is
        dropped and never sent, and
        the checked files go out with ``sendfile``: no copy of the bytes in Python."""
        try:
            env = self.verifier.verify(request.headers.get(ENVELOPE_HEADER, "").encode(), expected_type="shard.get")
        except envelope.EnvelopeError as exc:
            return web.json_response({"error": exc.reason, "detail": str(exc)[:200]}, status=400)
        p = env.payload
        hs = p.get("hs") if isinstance(p, dict) else None
        if (not isinstance(hs, list) or not 1 <= len(hs) <= MAX_BATCH or not all(model.is_hash(h) for h in hs)
                or ",".join(hs) != request.match_info["h"]):
            return web.json_response({"error": "malformed", "detail": "the envelope must name these hashes"},
                                     status=400)
        sid = str(p.get("sid", ""))[:32] or env.signer[:16]
        await self.gate.acquire(sid)
        try:
            opened = await asyncio.to_thread(self._open_all, hs)
        finally:
            self.gate.release()
        try:
            ns: list[int] = []
            for h, got in zip(hs, opened):
                if isinstance(got, int):
                    if got == 410:
                        self.counters["shard_corrupt_dropped"] += 1
                        self._spawn(self._refetch(h))
                    self.counters["receptor_refused"] += 1
                    ns.append(-got)
                else:
                    ns.append(got[2])
                    self._count_served(env, sid, got[2])
            self.counters["plain:shard.get"] += 1
            reply = envelope.sign(self.key, "shard.get.reply", {"hs": hs, "ns": ns}, self.clock,
                                  ip=self.ip, port=self.dna.recp_port)
            resp = web.StreamResponse(headers={ENVELOPE_HEADER: envelope.encode(reply).decode("ascii"),
                                               "Content-Type": "application/octet-stream"})
            resp.content_length = sum(n for n in ns if n > 0)
            await resp.prepare(request)
            loop = asyncio.get_running_loop()
            for got in opened:
                if not isinstance(got, int) and got[2]:
                    transport = request.transport
                    if transport is None:
                        raise ConnectionResetError("connection lost")
                    await loop.sendfile(transport, got[1], 0, got[2])
            await resp.write_eof()
            return resp
        finally:
            for got in opened:
                if not isinstance(got, int):
                    got[1].close()

    def _open_all(self, hs: list[str]) -> list[tuple[dict[str, Any], BinaryIO, int] | int]:
        """In a worker thread: each shard opened and checked against its hash, or the refusal's
        status (404 not held here, 410 the copy was corrupt and has been dropped)."""
        out: list[tuple[dict[str, Any], BinaryIO, int] | int] = []
        try:
            for h in hs:
                try:
                    got = self.store.open_checked(h)
                except Corrupt:
                    out.append(410)
                    continue
                out.append(404 if got is None else got)
        except BaseException:
            for got in out:
                if not isinstance(got, int):
                    got[1].close()
            raise
        return out

    # ------------------------------------------------------------ directory of shard nodes

    async def _directory_loop(self) -> None:
        """Keep the directory of shard nodes: from the service registry (serviceMgrCell on this
        IP) when it answers, else from the nodes' own "hi" broadcasts through the shard tree."""
        while True:
            if not await self._directory_from_registry() and self.tree.status in ("online", "root"):
                self.broadcast({"k": "hi", "ip": self.me.ip, "port": self.dna.recp_port})
            now = self.clock.now_ms()
            for pk, (_, seen) in list(self.directory.items()):
                if now - seen > DIRECTORY_TTL_MS:
                    del self.directory[pk]
            await asyncio.sleep(ANNOUNCE_S)

    async def _directory_from_registry(self) -> bool:
        try:
            reply = await self.peers.post(self.ip, dna_of("serviceMgrCell").recp_port, "/recp", "svc.list",
                                          {"cell": self.dna.name}, signed_reply=True)
        except PeerError:
            self.counters["directory_from_broadcast"] += 1
            return False
        now = self.clock.now_ms()
        for e in reply.get("services", []) if isinstance(reply, dict) else []:
            node, ip, ports = e.get("node"), e.get("ip"), e.get("ports")
            if (isinstance(node, str) and isinstance(ip, str) and isinstance(ports, list) and len(ports) >= 2
                    and node != self.me_holder.pubkey):
                self.directory[node] = (Holder(node, ip, ports[1]), now)
        self.counters["directory_from_registry"] += 1
        return True

    def live(self) -> dict[str, Holder]:
        now = self.clock.now_ms()
        out = {pk: h for pk, (h, seen) in self.directory.items() if now - seen <= DIRECTORY_TTL_MS}
        out[self.me_holder.pubkey] = self.me_holder
        return out

    def _forget(self, pk: str) -> None:
        if pk != self.me_holder.pubkey:
            self.directory.pop(pk, None)

    def on_broadcast(self, payload: dict[str, Any]) -> None:
        data = payload.get("data")
        origin = payload.get("from")
        if not isinstance(data, dict) or not isinstance(origin, str):
            return
        kind = data.get("k")
        if kind == "hi":
            ip, port = data.get("ip"), data.get("port")
            if isinstance(ip, str) and isinstance(port, int) and origin != self.me_holder.pubkey:
                self.directory[origin] = (Holder(origin, ip, port), self.clock.now_ms())
        elif kind == "find":
            self._spawn(self._answer_find(origin, data))
        elif kind == "del":
            try:
                self.store.delete(data.get("tomb"))
            except StoreError as exc:
                self.counters[f"shard_rejected:{exc.reason}"] += 1

    async def _answer_find(self, origin: str, data: dict[str, Any]) -> None:
        q, oid, ip, port = data.get("q"), data.get("id"), data.get("ip"), data.get("port")
        if not (isinstance(q, str) and model.is_hash(oid) and isinstance(ip, str) and isinstance(port, int)):
            return
        m = self.store.manifests.get(oid)
        hashes = self.store.hashes_of(oid)
        if m is None and not hashes:
            return
        answer = {"q": q, "id": oid, "m": m, "h": hashes}
        if origin == self.me_holder.pubkey:
            self._on_have(self.me_holder, answer)
            return
        try:
            await self.shard_peers.post(ip, port, "/recp", "shard.have", answer, expect_pubkey=origin)
            self.counters["shard_have_sent"] += 1
        except PeerError:
            self.counters["shard_have_failed"] += 1

    def _on_have(self, holder: Holder, answer: dict[str, Any]) -> None:
        find = self.finds.get(answer.get("q"))  # type: ignore[arg-type]
        if find is None:
            self.counters["shard_have_unsolicited"] += 1
            return
        m = answer.get("m")
        hashes = answer.get("h")
        if not isinstance(hashes, list):
            return
        find.replies[holder.pubkey] = (holder, m if isinstance(m, dict) else None,
                                       {h for h in hashes if isinstance(h, str)})
        find.event.set()

    # ------------------------------------------------------------ frames (binary)

    async def _handle_frame(self, request: web.Request) -> web.Response:
        length = request.content_length
        if length is None or length > MAX_FRAME:
            self.verifier.counters[envelope.TooLarge.reason] += 1
            return web.json_response({"error": "too_large", "detail": f"a frame is at most {MAX_FRAME} bytes"}, status=413)
        try:
            body = await request.content.readexactly(length)
            try:
                wire, data = unframe(body)
            except envelope.Malformed:
                self.verifier.counters[envelope.Malformed.reason] += 1
                raise
            env = self.verifier.verify(wire)
        except asyncio.IncompleteReadError:
            return web.json_response({"error": "malformed", "detail": "short body"}, status=400)
        except envelope.EnvelopeError as exc:
            return web.json_response({"error": exc.reason, "detail": str(exc)[:200]}, status=400)
        handler = self.frame_routes.get(env.type)
        if handler is None:
            self.counters["receptor_unknown_type"] += 1
            return web.json_response({"error": "unknown_request", "detail": f"no frame type {env.type!r}"}, status=404)
        try:
            result, out = await handler(env, data)
        except RequestError as exc:
            self.counters["receptor_refused"] += 1
            return web.json_response({"error": "refused", "detail": str(exc)}, status=exc.status)
        except Exception:
            self.counters["receptor_errors"] += 1
            log.exception("frame handler %s failed", env.type)
            return web.json_response({"error": "internal", "detail": "the cell failed to handle this frame"}, status=500)
        self.counters[f"frame:{env.type}"] += 1
        reply = envelope.sign(self.key, env.type + ".reply", result, self.clock, ip=self.ip, port=self.dna.recp_port)
        return web.Response(body=b"".join((envelope.encode(reply), b"\n", out)), content_type="application/octet-stream")

    def _reject(self, reason: str, detail: str, status: int) -> RequestError:
        self.counters[f"shard_rejected:{reason}"] += 1
        return RequestError(f"{reason}: {detail}", status)

    def _check_shard(self, env: envelope.Envelope, data: memoryview, *, owner_signs: bool) -> tuple[dict[str, Any], str | None]:
        p = env.payload
        if not isinstance(p, dict):
            raise self._reject("malformed", "payload must be an object", 400)
        rec, obj = p.get("rec"), p.get("obj")
        try:
            model.check_record(rec)
        except model.BadRecord as exc:
            raise self._reject(exc.reason, str(exc), 403) from None
        if owner_signs and env.signer != rec["o"]:
            raise self._reject("not_owner", "only the owner's key can store a shard through the receptor", 403)
        if len(data) != rec["n"] or model.sha256_hex(data) != rec["h"]:
            raise self._reject("hash_mismatch", "the bytes do not match the record's SHA-256 and size", 422)
        if obj is not None and not model.is_hash(obj):
            raise self._reject("malformed", "obj must be a SHA-256", 400)
        return rec, obj

    def _store_local(self, rec: dict[str, Any], data: bytes | memoryview, obj: str | None) -> str:
        try:
            return self.store.put(rec, data, obj)
        except StoreError as exc:
            raise self._reject(exc.reason, str(exc), exc.status) from None

    async def _f_hold(self, env: envelope.Envelope, data: memoryview) -> tuple[Any, bytes]:
        rec, obj = self._check_shard(env, data, owner_signs=False)
        return {"h": rec["h"], "result": self._store_local(rec, data, obj)}, b""

    async def _f_put(self, env: envelope.Envelope, data: memoryview) -> tuple[Any, bytes]:
        rec, obj = self._check_shard(env, data, owner_signs=True)
        r = env.payload.get("r", self.default_r)
        if not isinstance(r, int) or isinstance(r, bool) or not 1 <= r <= model.MAX_R:
            raise self._reject("malformed", f"r must be 1..{model.MAX_R}", 400)
        payload = {"rec": rec, "obj": obj}
        held, refused = await self._place_on(rec["h"], r, lambda h: self._hold_on(h, payload, rec, data, obj))
        if not held:
            reasons = set(refused.values())
            status = 409 if reasons == {"other_owner"} else 507 if reasons == {"quota"} else 503
            raise RequestError(f"no holder took the shard: {sorted(reasons)}", status)
        return {"h": rec["h"], "copies": len(held), "holders": held, "refused": refused}, b""

    async def _hold_on(self, h: Holder, payload: dict[str, Any], rec: dict[str, Any],
                       data: memoryview, obj: str | None) -> None:
        if h.pubkey == self.me_holder.pubkey:
            self._store_local(rec, data, obj)
        else:
            await post_frame(self.shard_peers, h.ip, h.port, "shard.hold", payload, data, expect_pubkey=h.pubkey)

    async def _place_on(self, key: str, r: int, put: Callable[[Holder], Awaitable[None]],
                     exclude: set[str] = frozenset()) -> tuple[list[str], dict[str, str]]:
        """Put on the r lottery winners for key; a winner that fails is replaced by the next ticket."""
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
                refused[pk[:16]] = {409: "other_owner", 507: "quota", 410: "tombstoned"}.get(exc.status, exc.reason)
            except RequestError as exc:
                refused[pk[:16]] = str(exc).split(":")[0]

        nxt = 0
        while len(held) < r and nxt < len(ranked):
            batch = ranked[nxt : nxt + r - len(held)]
            nxt += len(batch)
            await asyncio.gather(*(attempt(pk) for pk in batch))
        return held, refused

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
                raise RequestError(str(exc), 410) from None
        finally:
            self.gate.release()
        if got is None:
            raise RequestError("this node does not hold that shard", 404)
        return got

    def _count_served(self, env: envelope.Envelope, sid: str, n: int) -> None:
        p = env.payload
        st = self.serving.setdefault(sid, {"peer": env.sender.ip, "shards": 0, "bytes": 0})
        st["shards"] += 1
        st["bytes"] += n
        st["last_ms"] = self.clock.now_ms()
        if isinstance(p.get("of"), int) and isinstance(p.get("done"), int) and p["of"] > 0:
            st["progress"] = round(min(1.0, (p["done"] + 1) / p["of"]) * 100, 1)
        self.serving.move_to_end(sid)
        while len(self.serving) > 64:
            self.serving.popitem(last=False)

    async def _f_get(self, env: envelope.Envelope, data: memoryview) -> tuple[Any, bytes]:
        h, sid = self._get_args(env)
        rec, out = await self._read_checked(h, sid, self.store.get)
        self._count_served(env, sid, len(out))
        return {"h": h, "rec": rec}, out

    # ------------------------------------------------------------ replication

    async def fetch_into_store(self, h: str, obj: str | None, sources: list[Holder]) -> bool:
        """Pull shard h from one of sources (checked: owner record, SHA-256) and keep it."""
        if self.store.has(h):
            return True
        for src in sources:
            if src.pubkey == self.me_holder.pubkey:
                continue
            try:
                reply, data = await post_frame(self.shard_peers, src.ip, src.port, "shard.get",
                                               {"h": h, "sid": "repair"}, expect_pubkey=src.pubkey)
                rec = model.check_record(reply.get("rec"))
                if rec["h"] != h:
                    raise model.BadRecord("malformed", "another shard")
                self.store.put(rec, data, obj)
                self.counters["shard_replicated_in"] += 1
                return True
            except PeerUnreachable:
                self._forget(src.pubkey)
            except (PeerRejected, model.BadRecord, StoreError, AttributeError) as exc:
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
        if await self.fetch_into_store(h, objs[0] if objs else None, sources):
            for extra in objs[1:]:
                self.store.records[h]["objs"].append(extra)
            self.counters["shard_refetched"] += 1

    async def _repair(self, m: dict[str, Any], holders_of: dict[str, list[Holder]], manifest_holders: list[Holder]) -> None:
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
                    if not await self.fetch_into_store(h, order["obj"], have):
                        raise RequestError("fetch failed", 503)
                    return
                reply = await self.shard_peers.post(t.ip, t.port, "/recp", "shard.fetch", order,
                                                    expect_pubkey=t.pubkey, signed_reply=True)
                if not reply.get("ok"):
                    raise RequestError("fetch failed", 503)

            async with self._repair_sem:
                held, _ = await self._place_on(h, r - len(have), fetch, exclude)
            self.counters["shard_repaired"] += len(held)
        if len(manifest_holders) < r and self.repair_until.get(m["id"], 0) <= now:
            self.repair_until[m["id"]] = now + REPAIR_HOLDOFF_MS
            held, _ = await self._place_on(m["id"], r - len(manifest_holders), lambda t: self._keep_on(t, m),
                                        {x.pubkey for x in manifest_holders})
            self.counters["manifest_repaired"] += len(held)
        for key, until in list(self.repair_until.items()):
            if until < now:
                del self.repair_until[key]
        del live

    async def _keep_on(self, t: Holder, m: dict[str, Any]) -> None:
        if t.pubkey == self.me_holder.pubkey:
            try:
                self.store.put_manifest(m)
            except StoreError as exc:
                raise RequestError(exc.reason, exc.status) from None
        else:
            await self.shard_peers.post(t.ip, t.port, "/recp", "shard.keep", {"m": m}, expect_pubkey=t.pubkey)

    # ------------------------------------------------------------ locate

    async def locate(self, oid: str, *, repair: bool = True, wait_s: float = LOCATE_WAIT_S) -> dict[str, Any]:
        q = os.urandom(8).hex()
        find = self.finds[q] = _Find()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        self.broadcast({"k": "find", "q": q, "id": oid, "ip": self.ip, "port": self.dna.recp_port})
        try:
            while not self._complete(find) and (left := deadline - loop.time()) > 0:
                try:
                    await asyncio.wait_for(find.event.wait(), left)
                except asyncio.TimeoutError:
                    break
                find.event.clear()
        finally:
            del self.finds[q]
        m = self._best_manifest(oid, find)
        if m is None:
            return {"id": oid, "found": False, "manifest": None, "holders": [], "shards": [], "copies": [],
                    "manifest_copies": 0, "answered": len(find.replies)}
        holders = sorted({h for h, _, _ in find.replies.values()}, key=lambda h: h.ip)
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
        return {"id": oid, "found": True, "manifest": m, "holders": [h.to_json() for h in holders],
                "shards": shards, "copies": copies, "manifest_copies": len(manifest_holders),
                "repairing": short if repair else 0, "answered": len(find.replies)}

    def _complete(self, find: _Find) -> bool:
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

    def _best_manifest(self, oid: str, find: _Find) -> dict[str, Any] | None:
        for m in sorted((m for _, m, _ in find.replies.values() if m is not None),
                        key=lambda x: -x.get("t", 0) if isinstance(x.get("t"), int) else 0):
            try:
                model.check_manifest(m)
            except model.BadRecord:
                self.counters["shard_rejected:bad_manifest"] += 1
                continue
            if m["id"] == oid:
                return m
        return None

    # ------------------------------------------------------------ receptor (JSON)

    @receptor("shard.manifest")
    async def _r_manifest(self, env: envelope.Envelope) -> Any:
        m = env.payload.get("m") if isinstance(env.payload, dict) else None
        try:
            model.check_manifest(m)
        except model.BadRecord as exc:
            raise self._reject(exc.reason, str(exc), 403) from None
        if env.signer != m["o"]:
            raise self._reject("not_owner", "only the owner's key can store a manifest", 403)
        held, refused = await self._place_on(m["id"], m["r"], lambda t: self._keep_on(t, m))
        if not held:
            raise RequestError(f"no holder took the manifest: {sorted(set(refused.values()))}", 409)
        return {"id": m["id"], "copies": len(held), "holders": held, "refused": refused}

    @receptor("shard.keep")
    async def _r_keep(self, env: envelope.Envelope) -> Any:
        m = env.payload.get("m") if isinstance(env.payload, dict) else None
        try:
            return {"result": self.store.put_manifest(m)}
        except StoreError as exc:
            raise self._reject(exc.reason, str(exc), exc.status) from None

    def _oid(self, env: envelope.Envelope) -> str:
        oid = env.payload.get("id") if isinstance(env.payload, dict) else None
        if not model.is_hash(oid):
            raise RequestError("id must be an object's SHA-256 in lowercase hex", 400)
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
            "id": m["id"], "found": True, "size": m["size"], "shard_size": m["ss"], "shards": len(m["shards"]),
            "r": m["r"], "owner": m["o"], "t": m["t"], "copies_min": min(loc["copies"], default=m["r"]),
            "copies": loc["copies"], "manifest_copies": loc["manifest_copies"],
            "holders": [h[1] for h in loc["holders"]], "repairing": loc["repairing"],
        }

    @receptor("shard.owned")
    async def _r_owned(self, env: envelope.Envelope) -> Any:
        """The manifests this node holds for one owner (the conduit merges these across nodes)."""
        owner = env.payload.get("o") if isinstance(env.payload, dict) else None
        if not isinstance(owner, str):
            raise RequestError("name the owner: {\"o\": public key}")
        objects = [{"id": m["id"], "size": m["size"], "t": m["t"], "r": m["r"]}
                   for m in self.store.manifests.values() if m["o"] == owner]
        return {"objects": sorted(objects, key=lambda o: -o["t"])[:1000]}

    @receptor("shard.delete")
    async def _r_delete(self, env: envelope.Envelope) -> Any:
        tomb = env.payload.get("tomb") if isinstance(env.payload, dict) else None
        try:
            model.check_tomb(tomb)
        except model.BadRecord as exc:
            raise self._reject(exc.reason, str(exc), 403) from None
        if env.signer != tomb["o"]:
            raise self._reject("not_owner", "only the owner's key can delete", 403)
        m = self.store.manifests.get(tomb["id"]) or (await self.locate(tomb["id"], repair=False))["manifest"]
        if m is not None and m["o"] != tomb["o"]:
            raise self._reject("not_owner", "this object belongs to another key", 403)
        bid = self.broadcast({"k": "del", "tomb": tomb})
        return {"id": tomb["id"], "broadcast": bid}

    @receptor("shard.have")
    async def _r_have(self, env: envelope.Envelope) -> Any:
        if isinstance(env.payload, dict):
            self._on_have(Holder(env.signer, env.sender.ip, env.sender.port), env.payload)
        return {"ok": True}

    @receptor("shard.fetch")
    async def _r_fetch(self, env: envelope.Envelope) -> Any:
        p = env.payload if isinstance(env.payload, dict) else {}
        h, obj = p.get("h"), p.get("obj")
        try:
            sources = [Holder.from_json(x) for x in p.get("from", [])][:16]
        except (ValueError, TypeError):
            raise RequestError("from must list [pubkey, ip, port]", 400) from None
        if not model.is_hash(h) or (obj is not None and not model.is_hash(obj)):
            raise RequestError("h and obj must be SHA-256 hashes", 400)
        return {"ok": await self.fetch_into_store(h, obj, sources)}

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
        }
        return doc
