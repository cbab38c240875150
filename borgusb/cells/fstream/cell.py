"""fStreamCell: serves objects by their stream map over plain HTTP with byte ranges, from shards.

``GET /stream/<map id>`` on the monPort (plain HTTP, so a ``<video>`` element, the conduit or any
player reads it): the map id is the object id of an owner-signed stream map
(`borgusb.fstream.streammap`), which names the media object, its type and its key frames. The cell
pulls the map, then the media's shards from every holder at once into its bounded cache
(`cache.ShardCache`, DStream's `Receiver`: each shard checked against the owner-signed manifest
before a byte of it is served), and answers ``Range`` (`borgusb.fstream.ranges`: 206 with
``Content-Range``, 416, a malformed header ignored) as soon as the shards a range needs are in;
a range that starts further on moves the pull there first. ``GET /object/<id>`` serves any
object's bytes the same way, untyped (the conduit's Watch page reads private files' ciphertext so).

**Seeking by time**: ``GET /seek/<map id>?t=<ms>`` answers the key frame at or before that time
from the map (its time, byte offset and shard) and moves the media's pull to that shard at once,
so the player's range request from there finds its first shards arriving or in.

**Public listings** (`borgusb.fstream.listing`): ``fstream.list`` takes an owner-signed listing of
one of the signer's published maps (checked: the map is theirs), keeps it in a bounded catalog and
spreads it over the tree to every fStream cell (``fslisting``, each checks the signature again);
``GET /catalog`` on the monPort gives the newest, which the Watch page checks once more.

**Paid streaming** (the ``stream`` price of `ledger.rules`, prepaid as `peerpays.prepaid.Prepaid`
keeps it): each response's bytes are charged to its viewer, the key that signed the request's
``X-Borg-Viewer`` header (`borgusb.fstream.viewer`; the conduit signs one per request), or, without
that header, to the client's address (`ledger.credit.address_key`: one viewer's free share, never
paid). Each viewer
streams `FStreamSettings.free_bytes` a day here free (all of them at most ``free_pool_bytes``);
beyond it a response starts only with credit left (402 ``payment_required``); each chunk it writes is
charged as it goes, and the body is cut when the free share and the credit run out (a viewer's
debt is at most a chunk per response running). ``fstream.credit`` takes a payment's certificate (checked by the node's
own peerPaysCell), ``fstream.usage`` says what is left. A bad header is refused (401,
``viewer_<reason>``), never taken as anonymous.

**Capacity**: at most `FStreamSettings.capacity` responses at once; past it a new client is
redirected (307) to the least busy other fStream endpoint the service registry lists (each cell
announces its clients), at most `MAX_HOPS` times, else refused as ``busy`` (503).

The cell sees only what is stored: private media are ciphertext here, decrypted at the viewer's
conduit.

**Read receipts** (the ``content`` reward, `reads`): ``fstream.read`` takes a viewer's signed receipt
of a public map this cell can load, naming that map's owner; ``fstream.reads`` gives an owner their
receipts of a day, to claim the reward with.

Refusals carry a reason word and are counted as ``fstream_refused:<reason>``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from aiohttp import web

from ... import envelope
from ...dna import CellDNA
from ...dstream import Holder, StreamError, parse_locate
from ...fstream import ranges, viewer
from ...fstream.listing import BadListing, Catalog, Listing, check_listing
from ...fstream.streammap import MAX_MAP_BYTES, BadMap, StreamMap, parse_map
from ...ledger.credit import address_key
from ...net.peer import PeerError, PeerRejected
from ...shard import model
from ..kit import Cell, RequestError, on_broadcast, receptor, route
from ..kit.cell import refusal
from ..peerpays.client import PayClient
from ..peerpays.prepaid import Prepaid
from ..servicemgr.client import ServiceMgrClient
from ..shard.client import READ_WAIT_S, ShardClient
from .cache import Cached, CacheError, Entry, ShardCache
from .cdn import PeerCaches
from .reads import FILE as READS_FILE
from .reads import SAVE_EVERY_S as READS_SAVE_EVERY_S
from .reads import ReadBook
from .settings import FStreamSettings

log = logging.getLogger("borgusb.fstream")

MAX_HOPS = 3  # redirects one client follows before a full network says busy
MAX_MAPS = 1024  # checked stream maps kept
CHUNK = 256 * 1024  # bytes read from the cache and written to a client at a time
REGISTRY_EVERY_S = 1.0  # how old the registry's listing of endpoints may be
CDN_AT_ONCE = 8  # shards served to other fStream cells at once (`cdn`)
RULE = "stream"
SAVE_EVERY_S = 10.0  # charges written at most this often (a payment at once)


class FStreamCell(Cell):
    settings: FStreamSettings

    def __init__(self, dna: CellDNA, ip: str, **kw: Any) -> None:
        settings = kw.get("settings")
        if not isinstance(settings, FStreamSettings):
            settings = kw["settings"] = FStreamSettings.from_sources()
        if kw.get("data_dir") is None:
            root = settings.data_root or tempfile.gettempdir()
            kw["data_dir"] = Path(root) / f"borgusb-fstream-{ip}"
        super().__init__(dna, ip, **kw)
        assert self.data_dir is not None
        self.cache = ShardCache(Path(self.data_dir) / "cache", settings.cache_bytes, self.peers, self._locate)
        self.maps: OrderedDict[str, StreamMap] = OrderedDict()
        self.clients = 0
        self._readers = itertools.count(1)  # a windowed object's readers, by number
        self.catalog = Catalog()
        self.cdn = PeerCaches(self._cdn_endpoints, self.dna.mon_port, self.counters)
        self.cache.from_peers = self.cdn.fetch
        self.cache.whole_from_peers = self.cdn.fetch_whole
        self._cdn_gate = asyncio.Semaphore(CDN_AT_ONCE)
        self._endpoints: tuple[float, list[dict[str, Any]]] = (0.0, [])
        self.credit = Prepaid(
            RULE,
            "fstream",
            Path(self.data_dir) / "credit.json",
            self.key.public_key_hex,
            settings.free_bytes,
            settings.free_pool_bytes,
            lambda cert: PayClient(self.peers, self.ip).verify(cert),
            self.counters,
            save_every_s=SAVE_EVERY_S,
        )
        self.reads = ReadBook(Path(self.data_dir) / READS_FILE, self.counters, settings.test_only_read_days_back)

    async def on_start(self) -> None:
        if self.settings.test_only_read_days_back:
            log.warning("fStreamCell: TEST ONLY: read receipts of past days are taken")
        self._spawn(self._save_reads_loop())
        await super().on_start()

    async def _save_reads_loop(self) -> None:
        while True:
            await asyncio.sleep(READS_SAVE_EVERY_S)
            reads = self.reads.changes()
            if reads is None:
                continue
            try:
                await asyncio.to_thread(self.reads.write, reads)
            except OSError as exc:
                self.reads.dirty = True  # tried again next time
                self.counters["fstream_reads_unsaved"] += 1
                log.warning("fStream read receipts not saved: %s", exc)

    async def on_stop(self) -> None:
        self.credit.flush()
        self.reads.flush()
        await self.cache.close()
        await self.cdn.close()

    # ------------------------------------------------------------ helpers

    def _refuse(self, reason: str, detail: str, status: int) -> web.Response:
        self.counters[f"fstream_refused:{reason}"] += 1
        return refusal(RequestError(reason, detail, status))

    async def _locate(self, oid: str) -> tuple[dict[str, Any], list[list[Holder]]]:
        """The object's manifest and holders, from the shard cell on this address (asked again while
        the network heals; past `READ_WAIT_S` refused as ``healing``, never as not found)."""
        try:
            reply = await ShardClient(self.peers, self.ip).locate(oid, repair=False, heal_wait_s=READ_WAIT_S)
        except PeerRejected as exc:
            if exc.reason == "healing":
                raise CacheError("healing", exc.detail, 503) from None
            raise StreamError(f"the shard cell refused ({exc.reason})") from None
        except PeerError as exc:
            raise StreamError(f"the shard cell did not answer ({exc.__class__.__name__})") from None
        return parse_locate(reply, oid)

    async def stream_map(self, mid: str) -> StreamMap:
        """The checked stream map stored as object `mid` (CacheError: not_found, too_large, bad_map)."""
        found = self.maps.get(mid)
        if found is not None:
            self.maps.move_to_end(mid)
            return found
        entry = await self.cache.open(mid, max_size=MAX_MAP_BYTES)
        try:
            parts = []
            for i in range(entry.count):  # shard by shard: a small cache keeps a map as shards
                await self.cache.wait(entry, i, self.settings.wait_ms / 1000)
                at = i * entry.ss
                parts.append(await asyncio.to_thread(self.cache.read, entry, at, min(entry.ss, entry.size - at)))
            data = b"".join(parts)
        finally:
            self.cache.release(entry)
        try:
            smap = parse_map(data)
        except BadMap as exc:
            raise CacheError("bad_map", f"object {mid[:16]} is not a stream map ({exc.reason})", 422) from None
        self.maps[mid] = smap
        while len(self.maps) > MAX_MAPS:
            self.maps.popitem(last=False)
        return smap

    # ------------------------------------------------------------ public listings

    def _listing(self, doc: Any) -> Listing:
        try:
            return check_listing(doc)
        except BadListing as exc:
            self.counters[f"fstream_refused:{exc.reason}"] += 1
            raise RequestError(exc.reason, str(exc)) from None

    @receptor("fstream.list")
    async def _r_list(self, env: envelope.Envelope) -> Any:
        """An owner lists one of their published maps (see the module's docstring)."""
        p = env.payload if isinstance(env.payload, dict) else {}
        listing = self._listing(p.get("listing"))
        if listing.owner != env.signer:
            self.counters["fstream_refused:not_owner"] += 1
            raise RequestError("not_owner", "a listing is sent by its owner", 403)
        try:
            smap = await self.stream_map(listing.map)
        except CacheError as exc:
            self.counters[f"fstream_refused:{exc.reason}"] += 1
            raise RequestError(exc.reason, str(exc), exc.status) from None
        if (smap.owner, smap.id, smap.type, smap.size) != (listing.owner, listing.id, listing.type, listing.size):
            self.counters["fstream_refused:map_mismatch"] += 1
            raise RequestError("map_mismatch", "the map is another owner's, or names other media", 422)
        if self.catalog.add(listing):
            self.counters["fstream_listed"] += 1
            self.broadcast("fslisting", {"listing": listing.doc})
        return {"map": listing.map, "listed": len(self.catalog)}

    @on_broadcast("fslisting")
    def _b_listing(self, origin: str, data: dict[str, Any]) -> None:
        try:
            listing = check_listing(data.get("listing"))
        except BadListing as exc:
            self.counters[f"fstream_refused:{exc.reason}"] += 1
            return
        if self.catalog.add(listing):
            self.counters["fstream_listed"] += 1

    @route("mon", "GET", "/catalog")
    async def _handle_catalog(self, request: web.Request) -> web.Response:
        """The newest public listings (each signed by its owner: check them)."""
        return web.json_response({"listings": self.catalog.newest(100)}, headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------ read receipts (the content reward)

    @receptor("fstream.read")
    async def _r_read(self, env: envelope.Envelope) -> Any:
        """A viewer's receipt of a public map read today (see `reads`): kept for the map's owner."""
        p = env.payload if isinstance(env.payload, dict) else {}
        now = self.clock.now_ms()
        read = self.reads.check(p.get("read"), env.signer, now, time.monotonic())
        if self.reads.has(read):
            return {"kept": False, "map": read["map"], "day": read["day"]}
        try:
            smap = await self.stream_map(read["map"])
        except CacheError as exc:
            self.counters[f"fstream_refused:{exc.reason}"] += 1
            raise RequestError(exc.reason, str(exc), exc.status) from None
        if smap.owner != read["owner"]:
            self.counters["fstream_refused:not_owner"] += 1
            raise RequestError("not_owner", "the map is signed by another owner than the receipt names", 422)
        return {"kept": self.reads.add(read, now), "map": read["map"], "day": read["day"]}

    @receptor("fstream.reads")
    async def _r_reads(self, env: envelope.Envelope) -> Any:
        """The signer's read receipts of a day (only their own: the owner signs the request)."""
        day = env.payload.get("day") if isinstance(env.payload, dict) else None
        if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day < 10**7:
            self.counters["fstream_refused:bad_day"] += 1
            raise RequestError("bad_day", 'name a day: {"day": UTC day number}')
        return {"owner": env.signer, "day": day, "reads": self.reads.of(env.signer, day)}

    # ------------------------------------------------------------ paid streaming

    @receptor("fstream.credit")
    async def _r_credit(self, env: envelope.Envelope) -> Any:
        """A payment for streaming here: its certificate, checked by this node's ledger."""
        cert = env.payload.get("cert") if isinstance(env.payload, dict) else None
        return await self.credit.pay_in(cert, self.clock.now_ms())

    @receptor("fstream.usage")
    async def _r_usage(self, env: envelope.Envelope) -> Any:
        """The signer's free bytes left today and credit here, and how to pay: ``payee`` and ``ref``."""
        return self.credit.usage(env.signer, self.clock.now_ms())

    def _viewer(self, request: web.Request, oid: str) -> str:
        """Who pays for this response (see the module's docstring); BadViewer for a bad header."""
        value = request.headers.get(viewer.HEADER)
        if value is None:
            return address_key(request.remote or "")
        return viewer.check_viewer(self.verifier, value, oid, request.headers.get("Range", ""))

    # ------------------------------------------------------------ capacity and the registry

    def announcement(self) -> dict[str, Any]:
        doc = super().announcement()
        doc["load"] = dict(doc["load"], clients=self.clients, capacity=self.settings.capacity)
        return doc

    async def _other_endpoints(self) -> list[dict[str, Any]]:
        at, listed = self._endpoints
        if time.monotonic() - at > REGISTRY_EVERY_S:
            try:
                listed = await asyncio.wait_for(ServiceMgrClient(self.peers, self.ip).services(self.dna.name), 2.0)
            except (TimeoutError, PeerError):
                self.counters["registry_unreachable"] += 1
                listed = []
            self._endpoints = (time.monotonic(), listed)
        return [e for e in listed if e.get("node") != self.key.public_key_hex and _is_ip(e.get("ip"))]

    async def least_busy(self) -> str | None:
        """The address of the other fStream endpoint with the most room, if any has room."""
        ranked = sorted(await self._other_endpoints(), key=_room, reverse=True)
        return str(ranked[0]["ip"]) if ranked and _room(ranked[0]) > 0 else None

    async def _cdn_endpoints(self) -> list[str]:
        """The other fStream endpoints, least busy first (whose caches a missed shard is asked of)."""
        return [str(e["ip"]) for e in sorted(await self._other_endpoints(), key=_room, reverse=True)]

    @route("mon", "GET", "/cached/{oid}/{i}")
    async def _handle_cached(self, request: web.Request) -> web.Response:
        """Shard i of an object if this cache holds it, for another fStream cell (`cdn`); never pulled."""
        oid, i_text = request.match_info["oid"], request.match_info["i"]
        if not model.is_hash(oid) or not i_text.isdigit() or len(i_text) > 9:
            return self._refuse("bad_id", "an object id (64 hex) and a shard number", 400)
        entry, i = self.cache.entries.get(oid), int(i_text)
        if entry is None or i not in entry.done or self._cdn_gate.locked():
            self.counters["fstream_cdn_absent"] += 1
            return web.json_response({"error": "not_cached"}, status=404)
        at = i * entry.ss
        async with self._cdn_gate:
            try:
                data = await asyncio.to_thread(self.cache.read, entry, at, min(entry.ss, entry.size - at))
            except CacheError:  # evicted meanwhile
                self.counters["fstream_cdn_absent"] += 1
                return web.json_response({"error": "not_cached"}, status=404)
        self.counters["fstream_cdn_served"] += 1
        return web.Response(body=data, content_type="application/octet-stream")

    @route("mon", "GET", "/cached/{oid}")
    async def _handle_cached_whole(self, request: web.Request) -> web.StreamResponse:
        """A whole object if this cache holds all of it, for another fStream cell (`cdn`); never pulled."""
        oid = request.match_info["oid"]
        if not model.is_hash(oid):
            return self._refuse("bad_id", "an object id (64 hex)", 400)
        entry = self.cache.entries.get(oid)
        if not isinstance(entry, Entry) or not entry.complete or self._cdn_gate.locked():
            self.counters["fstream_cdn_absent"] += 1
            return web.json_response({"error": "not_cached"}, status=404)
        async with self._cdn_gate:
            try:
                f = await asyncio.to_thread(open, entry.path, "rb")  # kept open: an eviction cannot cut it
            except FileNotFoundError:
                self.counters["fstream_cdn_absent"] += 1
                return web.json_response({"error": "not_cached"}, status=404)
            try:
                resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
                resp.content_length = entry.size
                await resp.prepare(request)
                transport = request.transport
                if transport is None:
                    raise ConnectionResetError("connection lost")
                await asyncio.get_running_loop().sendfile(transport, f, 0, entry.size)
                await resp.write_eof()
            finally:
                f.close()
        self.counters["fstream_cdn_served_whole"] += 1
        return resp

    async def _redirect(self, kind: str, oid: str, hop: int) -> web.Response:
        target = await self.least_busy() if hop < MAX_HOPS else None
        if target is None:
            response = self._refuse("busy", "every fStream endpoint is at capacity; retry", 503)
            response.headers["Retry-After"] = "1"
            return response
        self.counters["fstream_redirected"] += 1
        host = f"[{target}]" if ":" in target else target
        location = f"http://{host}:{self.dna.mon_port}/{kind}/{oid}?hop={hop + 1}"
        return web.Response(status=307, headers={"Location": location, "Cache-Control": "no-store"})

    # ------------------------------------------------------------ the door

    @route("mon", "GET", "/stream/{oid}")
    async def _handle_stream(self, request: web.Request) -> web.StreamResponse:
        """A published stream: the map's object id; its media, typed as the map says."""
        return await self._door(request, "stream")

    @route("mon", "GET", "/object/{oid}")
    async def _handle_object(self, request: web.Request) -> web.StreamResponse:
        """Any object's bytes by its id, untyped (the conduit types and, if private, decrypts them)."""
        return await self._door(request, "object")

    @route("mon", "GET", "/seek/{oid}")
    async def _handle_seek(self, request: web.Request) -> web.Response:
        """The byte offset to play a published stream from time ``t`` (ms), its shards pulled first."""
        mid, t_text = request.match_info["oid"], request.query.get("t", "")
        if not model.is_hash(mid):
            return self._refuse("bad_id", "name a stream by its map's id (64 hex)", 400)
        if not t_text.isdigit() or len(t_text) > 15:
            return self._refuse("bad_time", "t is the time to play from, in ms (an integer)", 400)
        try:
            smap = await self.stream_map(mid)
            found = smap.seek(int(t_text))
            if found is None:
                return self._refuse("no_offsets", "this map names no key frame offsets (not media, or version 1)", 422)
            key_ms, offset = found
            shard = offset // smap.ss
            entry = await self.cache.open(smap.id)
        except CacheError as exc:
            return self._refuse(exc.reason, str(exc), exc.status)
        try:
            self.cache.prefer(entry, shard)
        finally:
            self.cache.release(entry)
        self.counters["fstream_seeks"] += 1
        body = {"t": key_ms, "offset": offset, "shard": shard, "size": smap.size, "type": smap.type}
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def _door(self, request: web.Request, kind: str) -> web.StreamResponse:
        oid = request.match_info["oid"]
        if not model.is_hash(oid):
            return self._refuse("bad_id", "name an object by its id (64 hex)", 400)
        hop_text = request.query.get("hop", "0")
        hop = int(hop_text) if hop_text.isdigit() and len(hop_text) < 3 else MAX_HOPS
        try:
            payer = self._viewer(request, oid)
        except viewer.BadViewer as exc:
            return self._refuse(exc.reason, str(exc), 401)
        if self.clients >= self.settings.capacity:
            return await self._redirect(kind, oid, hop)
        try:
            self.credit.may_start(payer, self.clock.now_ms())  # counted by the book
        except RequestError as exc:
            return refusal(exc)
        self.clients += 1
        try:
            if kind == "stream":
                smap = await self.stream_map(oid)
                return await self._answer(request, smap.id, smap.type, oid, payer)
            return await self._answer(request, oid, "application/octet-stream", oid, payer)
        except CacheError as exc:
            return self._refuse(exc.reason, str(exc), exc.status)
        except TimeoutError:
            return self._refuse("stalled", "the shards this range needs did not arrive in time", 504)
        finally:
            self.clients -= 1

    async def _answer(
        self, request: web.Request, oid: str, content_type: str, etag: str, payer: str
    ) -> web.StreamResponse:
        """Object `oid` (or the Range of it asked for) as it arrives in the cache; its bytes charged to `payer`."""
        entry = await self.cache.open(oid)
        reader = next(self._readers)
        try:
            size = entry.size
            answer = ranges.answer(request.headers.get("Range"), size)
            headers = {
                "Accept-Ranges": "bytes",
                "Content-Type": content_type,
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "public, max-age=31536000, immutable",  # an id names its bytes forever
                "ETag": f'"{etag}"',
            }
            if isinstance(answer, ranges.Unsatisfiable):
                self.counters["fstream_refused:unsatisfiable"] += 1
                return web.Response(status=416, headers=dict(headers, **{"Content-Range": answer.content_range}))
            if size == 0:
                return web.Response(status=200, headers=headers)
            first, last = (answer.first, answer.last) if isinstance(answer, ranges.Part) else (0, size - 1)
            spans = ranges.spans(first, last, size, entry.ss)
            self.cache.prefer(entry, spans[0][0])
            wait_s = self.settings.wait_ms / 1000
            await self.cache.wait(entry, spans[0][0], wait_s, reader)  # before the head: a failure can still be said
            response = web.StreamResponse(status=206 if isinstance(answer, ranges.Part) else 200, headers=headers)
            if isinstance(answer, ranges.Part):
                response.headers["Content-Range"] = answer.content_range
            response.content_length = last - first + 1
            await response.prepare(request)
            await self._send(response, entry, spans, wait_s, reader, payer)
            return response
        finally:
            self.cache.release(entry, reader)

    async def _send(
        self,
        response: web.StreamResponse,
        entry: Cached,
        spans: list[tuple[int, int, int]],
        wait_s: float,
        reader: int,
        payer: str,
    ) -> None:
        """The spans' bytes as each shard is in, each chunk charged to `payer` as it is written; the body
        is cut when the payer's free share and credit run out (its next request is answered 402). Once
        the head is sent a failure can only cut the body short (the connection is closed: the player
        asks again, maybe elsewhere), counted."""
        try:
            for i, off, n in spans:
                await self.cache.wait(entry, i, wait_s, reader)
                at = i * entry.ss + off
                end = at + n
                while at < end:
                    if not self.credit.allows(payer, self.clock.now_ms()):
                        raise CacheError("payment_required", "the free share and the credit ran out", 402)
                    data = await asyncio.to_thread(self.cache.read, entry, at, min(CHUNK, end - at))
                    await response.write(data)
                    self.credit.charge(payer, len(data), self.clock.now_ms())
                    at += len(data)
        except ConnectionResetError:
            self.counters["fstream_client_gone"] += 1
            return
        except (TimeoutError, CacheError) as exc:
            reason = exc.reason if isinstance(exc, CacheError) else "stalled"
            self.counters[f"fstream_cut:{reason}"] += 1
            response.force_close()
            return
        await response.write_eof()

    def status(self) -> dict[str, Any]:
        doc = super().status()
        doc["fstream"] = {
            "clients": self.clients,
            "capacity": self.settings.capacity,
            "maps": len(self.maps),
            "cache": dict(
                self.cache.stats, objects=len(self.cache.entries), bytes=self.cache.used, recent=list(self.cache.recent)
            ),
        }
        return doc


def _room(e: dict[str, Any]) -> int:
    """Clients an endpoint the registry lists can still take (0 when its load is not said)."""
    load = e.get("load")
    clients, capacity = (load.get("clients"), load.get("capacity")) if isinstance(load, dict) else (0, 0)
    if not isinstance(clients, int) or not isinstance(capacity, int):
        return 0
    return capacity - clients


def _is_ip(text: Any) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
