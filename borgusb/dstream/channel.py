"""The data channel's client: shard bytes over plain keep-alive HTTP/1.1, straight into buffers.

Why plain HTTP: integrity rests on the owner-signed manifest (the receiver checks
each shard's SHA-256 before it is written), not on the channel, and skipping TLS
was measured faster. Why not aiohttp's client: its body is a list of chunks that
must be joined; here the kernel reads each shard's bytes straight into the buffer
they are hashed and written from.

The reply's head is parsed by h11 (a sans-I/O HTTP/1.1 parser): status line,
headers, Content-Length and transfer codings by the RFC, not by hand. Its body
bypasses h11 (whose Data events are copies): once the head is in, the bytes h11
already holds are copied out, and the rest is read by the kernel into the
caller's buffers, exactly Content-Length bytes. A fresh h11 connection per
request keeps that bypass honest.

Every input is hostile: the head is bounded (`HEAD_MAX`), the body must have a
Content-Length and no transfer coding, its length must be exactly what the
caller's buffers take, bytes past it or with no request outstanding close the
connection, and each request has a deadline. A broken rule fails the request
with `BadReply` (its ``reason`` says which rule) and the connection is dropped.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import h11

from .. import envelope
from ..net.peer import PeerClient, PeerRejected, PeerUnreachable
from .frames import ENVELOPE_HEADER, Holder

HEAD_MAX = 64 * 1024  # a reply's status line and headers, at most
HEAD_READ = 16 * 1024  # one read while the head is awaited
ERROR_MAX = 64 * 1024  # the body of a refusal (>= 400), at most
MAX_BATCH = 16  # shards named by one data-channel request
IDLE_PER_HOLDER = 16  # keep-alive connections kept per holder
# A new connection's receive buffer, set at once: autotuning starts at 128 KiB and a 30 MB read is
# over before it has grown, so the holder's sendfile stalls and the receiver wakes for small reads
# (bench_dstream, fresh connections: receiver CPU 62 -> 56 ms per read, best read 47 -> 43 ms). The
# kernel doubles it; at most 4 MiB per connection, beside the receiver's 32 MiB of shard buffers.
RCVBUF = 2 << 20

HeadCallback = Callable[[int, dict[str, str], int], list[memoryview]]


class BadReply(ConnectionError):
    """A reply that breaks the channel's rules. ``reason``: malformed, head-too-long,
    no-length, transfer-coding, informational, extra-bytes, unexpected-bytes, closed,
    truncated."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class ChannelConn(asyncio.BufferedProtocol):
    """One keep-alive connection to a holder's data channel, one request at a time.

    `get` sends a request; once the reply's head is in, ``on_head(status, headers,
    length)`` returns the buffers its body is scattered into, in order (their sizes must
    add up to the Content-Length), and `get` returns the status when the body is in."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: h11.Connection | None = None
        self.readbuf = memoryview(bytearray(HEAD_READ))
        self.fed = 0  # bytes given to the parser for this reply
        self.views: list[memoryview] | None = None  # the body's buffers, once the head is in
        self.at = 0  # index into views
        self.got = 0  # bytes in views[at]
        self.bypass = False  # the body is read straight into views, past the parser
        self.on_head: HeadCallback | None = None
        self.on_view: Callable[[int], None] | None = None
        self.status = 0
        self.fut: asyncio.Future[None] | None = None
        self.reusable = True

    # ---------------------------------------------------------------- protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(self._cut())

    def eof_received(self) -> bool:
        self._fail(self._cut())
        return False

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.bypass:
            assert self.views is not None
            return self.views[self.at][self.got :]
        return self.readbuf

    def buffer_updated(self, nbytes: int) -> None:
        if self.bypass:
            self.got += nbytes
            self._advance()
            return
        if self.fut is None or self.parser is None:  # no request outstanding: out of step
            self._fail(BadReply("unexpected-bytes", f"{nbytes} bytes with no request outstanding"))
            return
        self.fed += nbytes
        try:
            self.parser.receive_data(bytes(self.readbuf[:nbytes]))
            self._pump()
        except h11.RemoteProtocolError as exc:
            self._fail(BadReply("malformed", str(exc)[:200]))
        except (BadReply, PeerRejected) as exc:
            self._fail(exc)
        except Exception as exc:  # noqa: BLE001 - the caller refused the head: this request fails
            self._fail(PeerRejected(self.status, "bad_reply", str(exc)))

    # ---------------------------------------------------------------- parsing
    def _pump(self) -> None:
        """Take the parser's events: the head, then the body bytes it already holds."""
        assert self.parser is not None
        while self.fut is not None:
            event = self.parser.next_event()
            if event is h11.NEED_DATA:
                if self.views is None:
                    if self.fed > HEAD_MAX:
                        raise BadReply("head-too-long", f"no end of the head in {self.fed} bytes")
                    return
                self.bypass, self.parser = True, None  # the rest of the body goes straight in
                self._advance()
                return
            if isinstance(event, h11.Response):
                head = self.fed - len(self.parser.trailing_data[0])
                if head > HEAD_MAX:
                    raise BadReply("head-too-long", f"a head of {head} bytes")
                self._head(event)
            elif isinstance(event, h11.Data):
                self._copy(memoryview(event.data))
            elif isinstance(event, h11.EndOfMessage):
                if self.parser.trailing_data[0]:
                    raise BadReply("extra-bytes", "bytes past the reply's Content-Length")
                self._advance()
                return
            elif isinstance(event, h11.InformationalResponse):
                raise BadReply("informational", f"an unasked-for {event.status_code} reply")
            else:  # ConnectionClosed and the like
                raise BadReply("truncated", f"the reply ended early ({type(event).__name__})")

    def _head(self, event: h11.Response) -> None:
        self.status = event.status_code
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("ascii")
            if key in headers:
                raise BadReply("malformed", f"header {key} repeated")
            headers[key] = value.decode("latin-1")
        if "transfer-encoding" in headers:
            raise BadReply("transfer-coding", f"Transfer-Encoding {headers['transfer-encoding'][:40]} refused")
        if "content-length" not in headers:
            raise BadReply("no-length", "a reply needs a Content-Length")
        length = int(headers["content-length"])  # h11 has checked it is a number
        if event.http_version != b"1.1" or "close" in headers.get("connection", "").lower():
            self.reusable = False
        assert self.on_head is not None
        views = [v for v in self.on_head(self.status, headers, length) if len(v)]
        if sum(len(v) for v in views) != length:
            raise PeerRejected(self.status, "bad_reply", "its length does not match its envelope")
        self.views, self.at, self.got = views, 0, 0

    def _copy(self, data: memoryview) -> None:
        """Body bytes that came with the head (the parser never gives more than the length)."""
        assert self.views is not None
        while len(data):
            view = self.views[self.at]
            take = min(len(data), len(view) - self.got)
            view[self.got : self.got + take] = data[:take]
            data = data[take:]
            self.got += take
            while self.at < len(self.views) and self.got >= len(self.views[self.at]):
                self._landed()

    def _advance(self) -> None:
        assert self.views is not None
        while self.at < len(self.views) and self.got >= len(self.views[self.at]):
            self._landed()
        if self.at >= len(self.views):
            self._done()

    def _landed(self) -> None:
        """views[at] is full: say so (its bytes can be checked while the next ones arrive)."""
        if self.on_view is not None:
            self.on_view(self.at)
        self.at, self.got = self.at + 1, 0

    def _cut(self) -> BadReply:
        self.reusable = False
        if self.views is not None or self.fed:
            return BadReply("truncated", "the holder closed the connection mid-reply")
        return BadReply("closed", "the holder closed the connection")

    def _reset(self) -> None:
        self.parser, self.views, self.bypass, self.fed = None, None, False, 0

    def _done(self) -> None:
        self._reset()
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self.reusable = False
        self._reset()
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    # ---------------------------------------------------------------- requests
    async def get(
        self,
        target: str,
        headers: list[tuple[bytes, bytes]],
        on_head: HeadCallback,
        on_view: Callable[[int], None] | None = None,
    ) -> int:
        """Send one GET; returns the reply's status once its whole body is in its buffers;
        ``on_view(k)`` as each buffer on_head gave is filled."""
        if self.fut is not None or self.transport is None:
            raise BadReply("closed", "the connection is busy or closed")
        self.parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_MAX + HEAD_READ)
        request = self.parser.send(h11.Request(method="GET", target=target, headers=headers))
        self.parser.send(h11.EndOfMessage())
        self.on_head, self.on_view, self.status, self.fed = on_head, on_view, 0, 0
        self.fut = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            await self.fut
        except BaseException:  # failed, timed out or cancelled: the kernel must stop writing into our buffers
            self.fut = None
            self._fail(ConnectionError("request abandoned"))
            raise
        finally:
            self.on_head = self.on_view = None
        return self.status

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class DataChannel:
    """Keep-alive connections to holders' plain data channels on `port` (the monitoring port
    of the cell that serves them; the shard cell's for DStream).

    ``GET /shard/<h1>,<h2>,...`` names up to `MAX_BATCH` shards; the request's
    ``X-Borg-Envelope`` header is a ``shard.get`` envelope whose payload's ``hs`` lists the
    same hashes. The reply's header is the holder's ``shard.get.reply`` envelope with ``hs``
    (the same list) and ``ns``: per shard its size if it is in the body, else the refusal's
    HTTP status as a negative number (-404 not held, -410 corrupt copy dropped). The body is
    the served shards' bytes, one after another, in the order asked."""

    def __init__(self, port: int, timeout_s: float = 30.0) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self.idle: dict[str, list[ChannelConn]] = {}
        self.open: set[ChannelConn] = set()

    async def _conn(self, ip: str) -> ChannelConn:
        idle = self.idle.get(ip)
        while idle:
            conn = idle.pop()
            if conn.reusable and conn.transport is not None:
                return conn
            self._drop(conn)
        transport, conn = await asyncio.get_running_loop().create_connection(ChannelConn, ip, self.port)
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.open.add(conn)
        return conn

    def _drop(self, conn: ChannelConn) -> None:
        conn.close()
        self.open.discard(conn)

    async def get(
        self,
        peers: PeerClient,
        holder: Holder,
        payload: dict[str, Any],
        dests: list[Callable[[int], memoryview]],
        landed: Callable[[int], None] | None = None,
    ) -> list[memoryview | int]:
        """Fetch the shards payload["hs"]; dests[j](size) gives the buffer for the j-th, and
        ``landed(j)`` says it is full (before the rest of the reply is in). Returns
        per shard its bytes (a view of that buffer) or the holder's refusal status. Raises
        PeerUnreachable (no connection, cut, timed out, a reply breaking the channel's rules)
        or PeerRejected (refused, a reply that does not answer the request)."""
        hs = payload["hs"]
        if not 1 <= len(hs) <= MAX_BATCH or len(dests) != len(hs):
            raise ValueError(f"1 to {MAX_BATCH} shards per request, one buffer each")
        wire = peers.sign("shard.get", payload, envelope.address(holder.pubkey, self.port))
        headers = [(b"Host", f"{holder.ip}:{self.port}".encode()), (ENVELOPE_HEADER.encode(), wire)]
        out: list[memoryview | int] = []
        error: list[bytearray] = []
        order: list[int] = []  # which shard each buffer of the body is for

        def on_head(status: int, head: dict[str, str], length: int) -> list[memoryview]:
            if status >= 400:
                if length > ERROR_MAX:
                    raise ValueError("an error reply too long")
                error.append(bytearray(length))
                return [memoryview(error[0])]
            try:
                env = peers.verifier.verify(
                    head.get(ENVELOPE_HEADER.lower(), "").encode("latin-1"),
                    expected_signer=holder.pubkey,
                    expected_type="shard.get.reply",
                )
            except envelope.EnvelopeError as exc:
                raise PeerRejected(status, "bad_reply", f"reply rejected: {exc.reason}") from None
            p = env.payload
            ns = p.get("ns") if isinstance(p, dict) else None
            if (
                not isinstance(p, dict)
                or p.get("hs") != hs
                or not isinstance(ns, list)
                or len(ns) != len(hs)
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in ns)
            ):
                raise PeerRejected(status, "bad_reply", "it does not answer the request")
            views: list[memoryview] = []
            for j, n in enumerate(ns):
                if n < 0:
                    out.append(-n)
                else:
                    view = dests[j](n)  # raises ValueError if n is not the shard's size
                    out.append(view)
                    if len(view):
                        views.append(view)
                        order.append(j)
            return views

        def on_view(k: int) -> None:
            if landed is not None and order:  # an error reply's body is no shard
                landed(order[k])

        conn: ChannelConn | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                conn = await self._conn(holder.ip)
                status = await conn.get(f"/shard/{','.join(hs)}", headers, on_head, on_view)
        except BadReply as exc:
            if conn is not None:
                self._drop(conn)
            raise PeerUnreachable(f"{holder.ip}:{self.port} bad reply ({exc})") from None
        except (TimeoutError, OSError) as exc:
            if conn is not None:
                self._drop(conn)
            raise PeerUnreachable(f"{holder.ip}:{self.port} unreachable: {exc.__class__.__name__}") from None
        except PeerRejected:
            if conn is not None:
                self._drop(conn)
            raise
        idle = self.idle.setdefault(holder.ip, [])
        if conn.reusable and len(idle) < IDLE_PER_HOLDER:
            idle.append(conn)
        else:
            self._drop(conn)
        if status >= 400:
            raise PeerRejected.from_reply(status, bytes(error[0]) if error else b"")
        return out

    def close(self) -> None:
        for conn in self.open:
            conn.close()
        self.open.clear()
        self.idle.clear()
