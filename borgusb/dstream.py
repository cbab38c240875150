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
import errno
import hashlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


HeadCallback = Callable[[int, dict[str, str], int], list[memoryview]]
MAX_BATCH = 16  # shards named by one data-channel request


class _HttpConn(asyncio.BufferedProtocol):
    """One keep-alive HTTP/1.1 connection to a holder's data channel, for GETs whose body the
    kernel reads straight into the caller's buffers (no chunk list, no join, no copy in
    Python). Once the reply's head is in, `on_head(status, headers, length)` returns the
    buffers the body is scattered into, in order. Strict: a reply must have a Content-Length
    and no transfer coding; anything else closes the connection and fails the request."""

    HEAD_MAX = 64 * 1024

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head = bytearray(16 * 1024)
        self.hlen = 0
        self.views: list[memoryview] = []
        self.at = 0  # index into views
        self.got = 0  # bytes in views[at]
        self.reading_body = False
        self.on_head: HeadCallback | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.fut: asyncio.Future[None] | None = None
        self.reusable = True

    # protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self.transport = None
        self._fail(ConnectionResetError("connection closed"))

    def eof_received(self) -> bool:
        self.reusable = False
        self._fail(ConnectionResetError("connection closed by the holder"))
        return False

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.reading_body:
            return self.views[self.at][self.got :]
        if self.hlen == len(self.head):
            self.head.extend(bytes(len(self.head)))
        return memoryview(self.head)[self.hlen :]

    def buffer_updated(self, nbytes: int) -> None:
        if self.reading_body:
            self.got += nbytes
            self._advance()
            return
        if self.fut is None:  # bytes with no request outstanding: the stream is out of step
            self._fail(ConnectionError("unexpected bytes"))
            return
        self.hlen += nbytes
        end = self.head.find(b"\r\n\r\n", 0, self.hlen)
        if end < 0:
            if self.hlen >= self.HEAD_MAX:
                self._fail(ConnectionError("reply headers too long"))
            return
        try:
            length = self._parse_head(bytes(self.head[:end]))
        except ValueError as exc:
            self._fail(ConnectionError(f"bad reply: {exc}"))
            return
        try:
            assert self.on_head is not None
            views = [v for v in self.on_head(self.status, self.headers, length) if len(v)]
            if sum(len(v) for v in views) != length:
                raise ValueError("the reply's length does not match its envelope")
        except PeerRejected as exc:
            self._fail(exc)
            return
        except Exception as exc:  # noqa: BLE001 - any refusal of the head fails this request
            self._fail(PeerRejected(self.status, f"bad reply: {exc}"))
            return
        extra = memoryview(self.head)[end + 4 : self.hlen]
        if len(extra) > length:
            self._fail(ConnectionError("more bytes than the reply's length"))
            return
        self.views, self.at, self.got, self.hlen = views, 0, 0, 0
        self.reading_body = True
        while len(extra):  # body bytes that came in with the head
            take = min(len(extra), len(self.views[self.at]) - self.got)
            self.views[self.at][self.got : self.got + take] = extra[:take]
            extra = extra[take:]
            self.got += take
            self._advance()
        if self.reading_body:
            self._advance()

    # helpers
    def _advance(self) -> None:
        while self.at < len(self.views) and self.got >= len(self.views[self.at]):
            self.at += 1
            self.got = 0
        if self.at >= len(self.views):
            self._done()

    def _parse_head(self, head: bytes) -> int:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ValueError("status line")
        self.status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError("header line")
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers or not headers.get("content-length", "").isdigit():
            raise ValueError("a reply needs a Content-Length and no transfer coding")
        if headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0":
            self.reusable = False
        self.headers = headers
        return int(headers["content-length"])

    def _done(self) -> None:
        self.reading_body = False
        self.views = []
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self.reusable = False
        self.reading_body = False
        self.views = []
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    async def get(self, request: bytes, on_head: HeadCallback) -> int:
        """Send one request; returns the reply's status once its whole body is in."""
        assert self.fut is None and self.transport is not None
        self.on_head = on_head
        self.hlen = 0
        self.fut = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            await self.fut
        except BaseException:  # failed, timed out or cancelled: the kernel must stop writing into our buffers
            self.fut = None
            self._fail(ConnectionError("request abandoned"))
            raise
        finally:
            self.on_head = None
        return self.status

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class DataChannel:
    """Keep-alive connections to holders' plain data channels.

    ``GET /shard/<h1>,<h2>,...`` names up to `MAX_BATCH` shards; the request's
    ``X-Borg-Envelope`` header is a ``shard.get`` envelope whose payload's ``hs`` lists the
    same hashes. The reply's header is the holder's ``shard.get.reply`` envelope with ``hs``
    (the same list) and ``ns``: per shard its size if it is in the body, else the refusal's
    HTTP status as a negative number (-404 not held, -410 corrupt copy dropped). The body is
    the served shards' bytes, one after another, in the order asked."""

    def __init__(self, port: int = DATA_PORT, timeout_s: float = 30.0) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self.idle: dict[str, list[_HttpConn]] = {}
        self.open: set[_HttpConn] = set()

    async def _conn(self, ip: str) -> _HttpConn:
        idle = self.idle.get(ip)
        while idle:
            conn = idle.pop()
            if conn.reusable and conn.transport is not None:
                return conn
        _, conn = await asyncio.get_running_loop().create_connection(_HttpConn, ip, self.port)
        self.open.add(conn)
        return conn

    async def get(self, peers: PeerClient, holder: "Holder", payload: dict[str, Any],
                  dests: list[Callable[[int], memoryview]]) -> list[memoryview | int]:
        """Fetch the shards payload["hs"]; dests[j](size) gives the buffer for the j-th. Returns
        per shard its bytes (a view of that buffer) or the holder's refusal status. Raises
        PeerUnreachable (no connection, cut, timed out) or PeerRejected (refused, bad reply)."""
        hs = payload["hs"]
        wire = peers.sign("shard.get", payload)
        request = (f"GET /shard/{','.join(hs)} HTTP/1.1\r\nHost: {holder.ip}:{self.port}\r\n"
                   f"{ENVELOPE_HEADER}: ").encode("ascii") + wire + b"\r\n\r\n"
        out: list[memoryview | int] = []
        error: list[bytearray] = []

        def on_head(status: int, headers: dict[str, str], length: int) -> list[memoryview]:
            if status >= 400:
                if length > 1 << 16:
                    raise ValueError("an error reply too long")
                error.append(bytearray(length))
                return [memoryview(error[0])]
            try:
                env = peers.verifier.verify(headers.get(ENVELOPE_HEADER.lower(), "").encode(),
                                            expected_signer=holder.pubkey, expected_type="shard.get.reply")
            except envelope.EnvelopeError as exc:
                raise PeerRejected(status, f"reply rejected: {exc.reason}") from None
            p = env.payload
            ns = p.get("ns") if isinstance(p, dict) else None
            if (p.get("hs") != hs or not isinstance(ns, list) or len(ns) != len(hs)
                    or not all(isinstance(n, int) and not isinstance(n, bool) for n in ns)):
                raise PeerRejected(status, "reply rejected: it does not answer the request")
            views: list[memoryview] = []
            for j, n in enumerate(ns):
                if n < 0:
                    out.append(-n)
                else:
                    view = dests[j](n)  # raises ValueError if n is not the shard's size
                    out.append(view)
                    views.append(view)
            return views

        conn: _HttpConn | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                conn = await self._conn(holder.ip)
                status = await conn.get(request, on_head)
        except (OSError, asyncio.TimeoutError) as exc:
            if conn is not None:
                conn.close()
                self.open.discard(conn)
            raise PeerUnreachable(f"{holder.ip}:{self.port} unreachable: {exc.__class__.__name__}") from None
        except PeerRejected:
            conn.close()  # type: ignore[union-attr]
            self.open.discard(conn)  # type: ignore[arg-type]
            raise
        if conn.reusable:
            self.idle.setdefault(holder.ip, []).append(conn)
        else:
            conn.close()
            self.open.discard(conn)
        if status >= 400:
            raise PeerRejected(status, _reason(bytes(error[0]) if error else b""))
        return out

    def close(self) -> None:
        for conn in self.open:
            conn.close()
        self.open.clear()
        self.idle.clear()


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


class _Buffers:
    """Shard buffers reused across shards and streams: a fresh 1 MiB buffer per shard costs
    more in page faults than the copy it receives. Bounded; a lost buffer is only garbage."""

    def __init__(self, keep_bytes: int = 64 << 20) -> None:
        self.free: dict[int, list[bytearray]] = {}
        self.kept = 0
        self.keep_bytes = keep_bytes
        self.lock = threading.Lock()

    def take(self, n: int) -> bytearray:
        with self.lock:
            free = self.free.get(n)
            if free:
                self.kept -= n
                return free.pop()
        return bytearray(n)

    def give(self, buf: bytearray) -> None:
        with self.lock:
            if self.kept + len(buf) <= self.keep_bytes:
                self.free.setdefault(len(buf), []).append(buf)
                self.kept += len(buf)


_BUFFERS = _Buffers()


class _InOrderHash:
    """The whole file's SHA-256, computed while the stream runs: shards are fed in file order
    by one background thread as they land, from the buffer they arrived in (up to `hold`
    buffers kept for shards that landed early) or else read back from ``FILE.part``."""

    def __init__(self, fd: int, bounds: list[tuple[int, int]], hold: int = 8) -> None:
        self.fd = fd
        self.bounds = bounds
        self.hold = hold
        self.sha = hashlib.sha256()
        self.next = 0
        self.held = 0
        self.ready: dict[int, tuple[memoryview | None, bytearray | None]] = {}
        self.cv = threading.Condition()
        self.busy = False
        self.error: BaseException | None = None
        self.reread = 0  # shards hashed from the file (resumed, or landed too early to be kept)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="dstream-sha")

    def on_disk(self, i: int) -> None:
        """Shard i is already right in FILE.part (resumed)."""
        with self.cv:
            self.ready[i] = (None, None)

    def offer(self, i: int, view: memoryview, buf: bytearray | None) -> None:
        """Shard i was checked and written; takes the buffer (given back to the pool once hashed)."""
        with self.cv:
            if i != self.next and self.held >= self.hold:
                self.ready[i] = (None, None)
                if buf is not None:
                    _BUFFERS.give(buf)
            else:
                self.ready[i] = (view, buf)
                self.held += 1
            if self.busy:
                return
            self.busy = True
        self.pool.submit(self._drain)

    def _drain(self) -> None:
        scratch: bytearray | None = None
        try:
            while True:
                with self.cv:
                    item = self.ready.pop(self.next, None)
                    if item is None:
                        self.busy = False
                        self.cv.notify_all()
                        return
                    i = self.next
                    self.next += 1
                    if item[0] is not None:
                        self.held -= 1
                view, buf = item
                if view is None:
                    self.reread += 1
                    off, n = self.bounds[i]
                    if scratch is None or len(scratch) < n:
                        scratch = _BUFFERS.take(max(n, self.bounds[0][1]))
                    got = os.preadv(self.fd, [memoryview(scratch)[:n]], off)
                    if got != n:
                        raise OSError(f"short read of shard #{i} from the .part file")
                    view = memoryview(scratch)[:n]
                self.sha.update(view)
                if buf is not None:
                    _BUFFERS.give(buf)
        except BaseException as exc:  # reported by finish()
            with self.cv:
                self.error = exc
                self.busy = False
                self.cv.notify_all()
        finally:
            if scratch is not None:
                _BUFFERS.give(scratch)

    def finish(self) -> str:
        """Wait for the background thread, hash what is left, return the hex digest."""
        with self.cv:
            while self.busy:
                self.cv.wait()
            self.busy = True
        self._drain()
        self.close()
        if self.error is not None:
            raise self.error
        if self.next != len(self.bounds):
            raise StreamError(f"only {self.next} of {len(self.bounds)} shards were hashed")
        return self.sha.hexdigest()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        with self.cv:
            for view, buf in self.ready.values():
                if buf is not None:
                    _BUFFERS.give(buf)
            self.ready.clear()


def check_free_space(directory: Path, size: int) -> None:
    """Refuse, before a byte is fetched, an object that cannot fit: a full disk is said, not
    found out halfway through."""
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    if free < size:
        raise StreamError(f"{directory}: not enough free space for {size} bytes ({free} bytes free)")


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
        batch: int = 4,
    ) -> None:
        self.peers = peers
        self.tls = tls
        self.batch = batch
        self._plain: DataChannel | None = None
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
        self._whole: _InOrderHash | None = None
        self._prealloc_error: StreamError | None = None
        self._jobs: set[asyncio.Future[bool]] = set()

    def _resume(self) -> set[int] | None:
        """Shards whose bytes are already right in FILE.part; None if it was created (and sized)."""
        size = self.m["size"]
        done: set[int] = set()
        if self.part.exists() and self.part.stat().st_size == size:
            with open(self.part, "rb") as f:
                for i, (off, n) in enumerate(self.bounds):
                    f.seek(off)
                    if hashlib.sha256(f.read(n)).hexdigest() == self.m["shards"][i]:
                        done.add(i)
            return done
        self.part.parent.mkdir(parents=True, exist_ok=True)
        check_free_space(self.part.parent, size)
        fd = os.open(self.part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        return None

    def _preallocate(self, fd: int, size: int) -> None:
        """Reserve the file's blocks, while the first shards are already on their way (on tmpfs
        this zeroes every page: ~7 ms for 30 MB, no longer a pause before the first request),
        so the disk cannot fill up under the transfer."""
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._prealloc_error = StreamError(
                    f"{self.part.parent}: no room for {size} bytes (the disk filled up as the transfer began)")
            # other errors: the file system cannot reserve; the sized file is enough

    def _check_and_write(self, fd: int, i: int, data: memoryview, buf: bytearray | None = None) -> bool:
        """In a worker thread: the shard's SHA-256 before it is written at its offset. Takes buf."""
        off, n = self.bounds[i]
        if len(data) != n or hashlib.sha256(data).hexdigest() != self.m["shards"][i]:
            if buf is not None:
                _BUFFERS.give(buf)
            return False
        try:
            os.pwrite(fd, data, off)
        except OSError as exc:
            if buf is not None:
                _BUFFERS.give(buf)
            if exc.errno == errno.ENOSPC:
                raise StreamError(f"{self.part.parent}: the disk is full ({exc.strerror})") from None
            raise
        assert self._whole is not None
        self._whole.offer(i, data, buf)
        return True

    def _check_and_write_all(self, fd: int, got: list[tuple[int, memoryview, bytearray | None]]) -> list[bool]:
        return [self._check_and_write(fd, i, data, buf) for i, data, buf in got]

    async def _checked_write(self, fd: int, got: list[tuple[int, memoryview, bytearray | None]]) -> list[bool]:
        """_check_and_write in a thread; the job is tracked so the file is not closed under it."""
        job = asyncio.get_running_loop().run_in_executor(None, self._check_and_write_all, fd, got)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return await asyncio.shield(job)

    async def _fetch(self, fd: int, batch: list[int], holder: Holder, win: Window) -> list[tuple[int, Holder, str]]:
        """Fetch shards `batch` (all from `holder`): one request on the data channel, or one
        TLS frame per shard; each shard's outcome is "ok", "bad" or "unreachable"."""
        hs = [self.m["shards"][i] for i in batch]
        base = {"sid": self.sid, "done": len(win.done), "of": win.total}
        results: list[tuple[int, Holder, str]] = []
        got: list[tuple[int, memoryview, bytearray | None]] = []
        if self.tls:
            for i, h in zip(batch, hs):
                try:
                    reply, data = await post_frame(self.peers, holder.ip, holder.port, "shard.get",
                                                   dict(base, h=h), expect_pubkey=holder.pubkey)
                except PeerUnreachable:
                    results.append((i, holder, "unreachable"))
                    continue
                except PeerRejected:
                    results.append((i, holder, "bad"))
                    continue
                if not isinstance(reply, dict) or reply.get("h") != h:
                    results.append((i, holder, "bad"))
                else:
                    got.append((i, data, None))
        else:
            assert self._plain is not None
            taken: dict[int, bytearray] = {}

            def dest(i: int) -> Callable[[int], memoryview]:
                def view(n: int) -> memoryview:
                    if n != self.bounds[i][1]:
                        raise ValueError(f"shard #{i} is {self.bounds[i][1]} bytes, not {n}")
                    buf = taken[i] = _BUFFERS.take(self.m["ss"])
                    return memoryview(buf)[:n]
                return view

            try:
                out = await self._plain.get(self.peers, holder, dict(base, hs=hs), [dest(i) for i in batch])
            except (PeerUnreachable, PeerRejected) as exc:
                for buf in taken.values():
                    _BUFFERS.give(buf)
                outcome = "unreachable" if isinstance(exc, PeerUnreachable) else "bad"
                return [(i, holder, outcome) for i in batch]
            for i, o in zip(batch, out):
                if isinstance(o, int):
                    results.append((i, holder, "bad"))  # not held there, or its copy was corrupt
                else:
                    got.append((i, o, taken[i]))
        if got:
            for (i, _, _), ok in zip(got, await self._checked_write(fd, got)):
                results.append((i, holder, "ok" if ok else "bad"))
        if self.throttle_ms:
            await asyncio.sleep(self.throttle_ms / 1000)
        return results

    def _batches(self, issued: list[tuple[int, str]]) -> list[tuple[list[int], str]]:
        """Group the window's new requests by holder into data-channel requests of up to
        `batch` shards (a quarter of the window, so several requests stay in flight)."""
        size = 1 if self.tls else max(1, min(self.batch, MAX_BATCH, self.window_size // 4))
        by_holder: dict[str, list[int]] = {}
        for i, pk in issued:
            by_holder.setdefault(pk, []).append(i)
        return [(idx[k : k + size], pk) for pk, idx in by_holder.items() for k in range(0, len(idx), size)]

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        resumed = await asyncio.to_thread(self._resume)
        done = resumed or set()
        self.stats["resumed"] = len(done)
        by_id = {h.pubkey: h for hs in self.holders for h in hs}
        win = Window([[h.pubkey for h in hs] for hs in self.holders], done=done,
                     window=self.window_size, per_holder=self.per_holder)
        total_bytes = self.m["size"]
        got = sum(self.bounds[i][1] for i in done)
        if self.progress:
            self.progress(got, total_bytes)
        fd = os.open(self.part, os.O_RDWR)
        if resumed is None and total_bytes:
            job = asyncio.get_running_loop().run_in_executor(None, self._preallocate, fd, total_bytes)
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)
        whole = self._whole = _InOrderHash(fd, self.bounds, hold=max(8, self.window_size))
        for i in done:
            whole.on_disk(i)
        tasks: set[asyncio.Task[list[tuple[int, Holder, str]]]] = set()
        if not self.tls:
            self._plain = DataChannel()
        finished_ok = False
        try:
            while not win.finished:
                if self._prealloc_error is not None:
                    raise self._prealloc_error
                if self.stop_after is not None and self.stats["fetched"] >= self.stop_after:
                    raise StreamError(f"stopped after {self.stats['fetched']} shards (--stop-after)")
                for batch, pk in self._batches(win.next()):
                    tasks.add(asyncio.ensure_future(self._fetch(fd, batch, by_id[pk], win)))
                if not tasks:
                    stuck = win.stuck()
                    raise StreamError(f"{len(stuck)} shards could not be fetched from any holder "
                                      f"(first: #{stuck[0] if stuck else '?'})")
                finished, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for i, holder, outcome in (r for task in finished for r in task.result()):
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
            digest = await asyncio.to_thread(whole.finish)
            finished_ok = True
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._jobs:  # threads still writing into the file: let them end before it is closed
                await asyncio.wait(set(self._jobs))
            if not finished_ok:
                await asyncio.to_thread(whole.close)
            os.close(fd)
            if self._plain is not None:
                self._plain.close()
                self._plain = None
        if digest != self.m["id"]:
            raise StreamError(f"the assembled file's SHA-256 {digest} is not the object id {self.m['id']}")
        os.replace(self.part, self.path)
        self.stats["retries"] = win.retries
        self.stats["reread"] = whole.reread
        self.stats["seconds"] = round(time.monotonic() - started, 4)
        return self.stats


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
