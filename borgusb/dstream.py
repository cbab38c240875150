"""DStream: shards moved as binary frames, pulled in windows from several holders.

**Frames.** Envelopes carry JSON; shard bytes travel beside them. A frame is
one HTTP body: the signed envelope's canonical JSON (which never contains a
raw newline), one ``\\n``, then the raw bytes. The envelope names the bytes'
SHA-256 and size (a shard record), so the signature covers the bytes without
base64 (measured: base64 in the envelope costs a third more bytes and a
JSON parse of the whole shard; see README). Frames go to ``POST /shard`` on a
shardTreeCell's receptor port, over the same key-pinned TLS as everything
else, and the reply to a frame is a frame signed by the node.

**Receiving** (`Receiver`): the manifest arrives in a normal signed envelope
(``shard.locate``); the receiver pre-allocates ``FILE.part``, keeps a window
of requests in flight over the holders (`shard.window.Window`), checks each
shard's SHA-256 before writing it at its offset (hashing and ``pwrite`` in a
worker thread, so two cores work), asks another holder when bytes are bad or
a holder dies, and at the end checks the whole file's SHA-256 against the
object id before renaming it into place.

**Resuming**: a ``FILE.part`` of the right size is re-read shard by shard at
the start; every shard whose bytes already match its hash is done. So a
receiver killed at any moment resumes from what is on disk, with no journal
to get out of step with the data.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from . import dna, envelope
from .keys import SigningKey
from .net.peer import PeerClient, PeerRejected, PeerUnreachable, _reason
from .shard import model
from .shard.window import FairQueue, Window

FRAME_PATH = "/shard"
ENVELOPE_HEADER = "X-Borg-Envelope"
DATA_PORT = dna.get("shardTreeCell").mon_port  # plain-HTTP data channel: GET /shard/<sha256>
MAX_FRAME = model.MAX_SHARD + envelope.DEFAULT_MAX_BYTES + 1


class StreamError(Exception):
    pass


@dataclass(frozen=True)
class Holder:
    pubkey: str
    ip: str
    port: int

    def to_json(self) -> list[Any]:
        return [self.pubkey, self.ip, self.port]

    @classmethod
    def from_json(cls, doc: Any) -> "Holder":
        if (not isinstance(doc, list) or len(doc) != 3 or not isinstance(doc[0], str)
                or not isinstance(doc[1], str) or not isinstance(doc[2], int)):
            raise ValueError("a holder is [pubkey, ip, port]")
        return cls(doc[0], doc[1], doc[2])


# ------------------------------------------------------------------ frames

def frame(wire: bytes, data: bytes | memoryview = b"") -> bytes:
    return b"".join((wire, b"\n", data))


def unframe(body: bytes) -> tuple[bytes, memoryview]:
    at = body.find(b"\n")
    if at < 0:
        raise envelope.Malformed("a frame is an envelope, a newline, then bytes")
    view = memoryview(body)
    return bytes(view[:at]), view[at + 1 :]


_FINGERPRINTS: dict[str, aiohttp.Fingerprint] = {}


def _fingerprint(hexdigest: str) -> aiohttp.Fingerprint:
    """One Fingerprint object per pin: aiohttp pools connections by the ssl argument's
    identity, so a fresh object per request would mean a TLS handshake per shard."""
    fp = _FINGERPRINTS.get(hexdigest)
    if fp is None:
        if len(_FINGERPRINTS) > 4096:
            _FINGERPRINTS.clear()
        fp = _FINGERPRINTS[hexdigest] = aiohttp.Fingerprint(bytes.fromhex(hexdigest))
    return fp


async def post_frame(
    peers: PeerClient,
    ip: str,
    port: int,
    type: str,
    payload: Any,
    data: bytes | memoryview = b"",
    *,
    expect_pubkey: str | None = None,
) -> tuple[Any, memoryview]:
    """Send a signed frame; return the verified reply payload and the reply's bytes."""
    body = frame(peers.sign(type, payload), data)
    for attempt in (0, 1):
        pin = await peers.pin_for(ip, port, expect_pubkey)
        try:
            async with peers.session.post(
                f"https://{ip}:{port}{FRAME_PATH}",
                data=body,
                headers={"Content-Type": "application/octet-stream"},
                ssl=_fingerprint(pin.fingerprint),
            ) as resp:
                raw = await resp.read()
                status = resp.status
            break
        except aiohttp.ServerFingerprintMismatch:
            peers.pins.pop((ip, port), None)
            if attempt:
                raise PeerUnreachable(f"{ip}:{port} TLS certificate changed") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            peers.pins.pop((ip, port), None)
            raise PeerUnreachable(f"{ip}:{port} unreachable: {exc.__class__.__name__}") from None
    if status >= 400:
        raise PeerRejected(status, _reason(raw))
    try:
        wire, rest = unframe(raw)
        env = peers.verifier.verify(wire, expected_signer=pin.pubkey, expected_type=type + ".reply")
    except envelope.EnvelopeError as exc:
        raise PeerRejected(status, f"reply rejected: {exc.reason}") from None
    return env.payload, rest


async def get_plain(
    peers: PeerClient,
    session: aiohttp.ClientSession,
    holder: "Holder",
    payload: dict[str, Any],
    port: int = DATA_PORT,
) -> tuple[Any, bytes]:
    """Fetch shard payload["h"] over the plain data channel; the reply envelope must be the holder's."""
    try:
        async with session.get(f"http://{holder.ip}:{port}/shard/{payload['h']}",
                               headers={ENVELOPE_HEADER: peers.sign("shard.get", payload).decode("ascii")}) as resp:
            raw = await resp.read()
            status = resp.status
            header = resp.headers.get(ENVELOPE_HEADER, "")
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise PeerUnreachable(f"{holder.ip}:{port} unreachable: {exc.__class__.__name__}") from None
    if status >= 400:
        raise PeerRejected(status, _reason(raw))
    try:
        env = peers.verifier.verify(header.encode(), expected_signer=holder.pubkey, expected_type="shard.get.reply")
    except envelope.EnvelopeError as exc:
        raise PeerRejected(status, f"reply rejected: {exc.reason}") from None
    return env.payload, raw


# ------------------------------------------------------------------ the holder's fair gate

class FairGate:
    """At most `slots` shard reads at once; waiting streams are served round-robin."""

    def __init__(self, slots: int = 8) -> None:
        self.free = slots
        self.queue: FairQueue[asyncio.Future[None]] = FairQueue()

    async def acquire(self, stream: str) -> None:
        if self.free > 0 and not len(self.queue):
            self.free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.push(stream, fut)
        try:
            await fut
        except asyncio.CancelledError:
            if not self.queue.remove(stream, fut):
                self.release()  # it had been granted: pass the slot on
            raise

    def release(self) -> None:
        while True:
            fut = self.queue.pop()
            if fut is None:
                self.free += 1
                return
            if not fut.done():
                fut.set_result(None)
                return


# ------------------------------------------------------------------ receiving

def parse_locate(reply: dict[str, Any], object_id: str) -> tuple[dict[str, Any], list[list[Holder]]]:
    """The manifest (checked: owner-signed, right id) and each shard's holders from a locate reply."""
    m = reply.get("manifest")
    if not reply.get("found") or m is None:
        raise StreamError(f"object {object_id} not found (no holder answered)")
    model.check_manifest(m)
    if m["id"] != object_id:
        raise StreamError("the manifest is for another object")
    holders = [Holder.from_json(h) for h in reply["holders"]]
    per_shard = [[holders[j] for j in idx] for idx in reply["shards"]]
    if len(per_shard) != len(m["shards"]):
        raise StreamError("the locate reply does not match the manifest")
    return m, per_shard


class Receiver:
    def __init__(
        self,
        peers: PeerClient,
        manifest: dict[str, Any],
        holders: list[list[Holder]],
        path: Path,
        *,
        window: int = 16,
        per_holder: int = 8,
        progress: Callable[[int, int], None] | None = None,
        stop_after: int | None = None,
        throttle_ms: int = 0,
        tls: bool = False,
    ) -> None:
        self.peers = peers
        self.tls = tls
        self._plain: aiohttp.ClientSession | None = None
        self.m = manifest
        self.bounds = model.manifest_bounds(manifest)
        self.holders = holders
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        self.window_size = window
        self.per_holder = per_holder
        self.progress = progress
        self.stop_after = stop_after
        self.throttle_ms = throttle_ms
        self.sid = os.urandom(6).hex()
        self.stats: dict[str, Any] = {"shards": len(self.bounds), "resumed": 0, "fetched": 0, "bad": 0,
                                      "unreachable": 0, "bytes": 0}

    def _resume(self) -> set[int]:
        """Shards whose bytes are already right in FILE.part (which is created and sized if absent)."""
        size = self.m["size"]
        done: set[int] = set()
        if self.part.exists() and self.part.stat().st_size == size:
            with open(self.part, "rb") as f:
                for i, (off, n) in enumerate(self.bounds):
                    f.seek(off)
                    if hashlib.sha256(f.read(n)).hexdigest() == self.m["shards"][i]:
                        done.add(i)
        else:
            self.part.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.ftruncate(fd, size)
                if size:
                    try:
                        os.posix_fallocate(fd, 0, size)
                    except OSError:
                        pass  # tmpfs and some file systems: ftruncate is enough
            finally:
                os.close(fd)
        return done

    def _check_and_write(self, fd: int, i: int, data: memoryview) -> bool:
        off, n = self.bounds[i]
        if len(data) != n or hashlib.sha256(data).hexdigest() != self.m["shards"][i]:
            return False
        os.pwrite(fd, data, off)
        return True

    async def _fetch(self, fd: int, i: int, holder: Holder, win: Window) -> tuple[int, Holder, str]:
        h = self.m["shards"][i]
        payload = {"h": h, "sid": self.sid, "done": len(win.done), "of": win.total}
        try:
            if self.tls:
                reply, data = await post_frame(self.peers, holder.ip, holder.port, "shard.get", payload,
                                               expect_pubkey=holder.pubkey)
            else:
                assert self._plain is not None
                reply, data = await get_plain(self.peers, self._plain, holder, payload)
        except PeerUnreachable:
            return i, holder, "unreachable"
        except PeerRejected:
            return i, holder, "bad"
        if not isinstance(reply, dict) or reply.get("h") != h:
            return i, holder, "bad"
        if not await asyncio.to_thread(self._check_and_write, fd, i, data):
            return i, holder, "bad"
        if self.throttle_ms:
            await asyncio.sleep(self.throttle_ms / 1000)
        return i, holder, "ok"

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        done = await asyncio.to_thread(self._resume)
        self.stats["resumed"] = len(done)
        by_id = {h.pubkey: h for hs in self.holders for h in hs}
        win = Window([[h.pubkey for h in hs] for hs in self.holders], done=done,
                     window=self.window_size, per_holder=self.per_holder)
        total_bytes = self.m["size"]
        got = sum(self.bounds[i][1] for i in done)
        if self.progress:
            self.progress(got, total_bytes)
        fd = os.open(self.part, os.O_RDWR)
        tasks: set[asyncio.Task[tuple[int, Holder, str]]] = set()
        if not self.tls:
            self._plain = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit_per_host=self.per_holder),
                timeout=aiohttp.ClientTimeout(total=30, sock_connect=3))
        try:
            while not win.finished:
                if self.stop_after is not None and self.stats["fetched"] >= self.stop_after:
                    raise StreamError(f"stopped after {self.stats['fetched']} shards (--stop-after)")
                for i, pk in win.next():
                    tasks.add(asyncio.ensure_future(self._fetch(fd, i, by_id[pk], win)))
                if not tasks:
                    stuck = win.stuck()
                    raise StreamError(f"{len(stuck)} shards could not be fetched from any holder "
                                      f"(first: #{stuck[0] if stuck else '?'})")
                finished, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    i, holder, outcome = task.result()
                    if outcome == "ok":
                        win.ok(i)
                        self.stats["fetched"] += 1
                        got += self.bounds[i][1]
                        self.stats["bytes"] += self.bounds[i][1]
                        if self.progress:
                            self.progress(got, total_bytes)
                    elif outcome == "unreachable":
                        self.stats["unreachable"] += 1
                        win.unreachable(i, holder.pubkey)
                    else:
                        self.stats["bad"] += 1
                        win.bad(i, holder.pubkey)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            os.close(fd)
            if self._plain is not None:
                await self._plain.close()
                self._plain = None
        digest = await asyncio.to_thread(_file_sha256, self.part)
        if digest != self.m["id"]:
            raise StreamError(f"the assembled file's SHA-256 {digest} is not the object id {self.m['id']}")
        os.replace(self.part, self.path)
        self.stats["retries"] = win.retries
        self.stats["seconds"] = round(time.monotonic() - started, 4)
        return self.stats


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------ sending (put)

def hash_file(path: Path, ss: int) -> tuple[str, int, list[str]]:
    whole = hashlib.sha256()
    shards: list[str] = []
    size = 0
    with open(path, "rb") as f:
        for chunk in model.split_file(f, ss):
            whole.update(chunk)
            shards.append(model.sha256_hex(chunk))
            size += len(chunk)
    return whole.hexdigest(), size, shards


async def put_file(
    peers: PeerClient,
    ip: str,
    port: int,
    path: Path,
    key: SigningKey,
    *,
    r: int = model.DEFAULT_R,
    ss: int = model.SHARD_SIZE,
    window: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Store a file as shards through the shardTreeCell at ip:port; returns the manifest reply."""
    if peers.key.public_key_hex != key.public_key_hex:
        raise ValueError("the envelopes must be signed by the owner")
    oid, size, hashes = await asyncio.to_thread(hash_file, Path(path), ss)
    now = peers.clock.now_ms()
    bounds = model.shard_bounds(size, ss)
    copies: list[int] = [0] * len(hashes)
    sent = 0
    sem = asyncio.Semaphore(window)
    fd = os.open(path, os.O_RDONLY)

    async def one(i: int) -> None:
        nonlocal sent
        off, n = bounds[i]
        async with sem:
            data = os.pread(fd, n, off)
            if model.sha256_hex(data) != hashes[i]:
                raise StreamError(f"{path} changed while it was being stored")
            rec = model.sign_record(key, hashes[i], n, now)
            reply, _ = await post_frame(peers, ip, port, "shard.put", {"rec": rec, "obj": oid, "r": r}, data)
            copies[i] = int(reply.get("copies", 0))
            sent += n
            if progress:
                progress(sent, size)

    try:
        await asyncio.gather(*(one(i) for i in range(len(hashes))))
    finally:
        os.close(fd)
    m = model.sign_manifest(key, oid, size, ss, r, hashes, now)
    reply = await peers.post(ip, port, "/recp", "shard.manifest", {"m": m}, signed_reply=True)
    return {"id": oid, "size": size, "shards": len(hashes), "r": r,
            "copies_min": min(copies, default=r), "manifest_copies": reply.get("copies"), "owner": key.public_key_hex}
