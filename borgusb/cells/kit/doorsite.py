"""The doors' listening sites: each connection admitted by its remote address before anything is read.

The request guard (guard.py) sees only requests, so a client that opens connections and
never finishes one (slowloris: trickling the TLS handshake or the request head) got past it,
each connection holding a socket, a 64 KiB TLS buffer and a parser; and every new connection
costs the cell a TLS handshake (an ECDHE and a signature), the dearest thing a stranger can
make it do. So, at accept, before the handshake:

* no new connection from an address already over its request rate (the guard's bucket for it is
  empty: its requests would be refused after the handshake anyway) (``refused:conn_requests``);
* a token bucket of new connections per remote address (``refused:conn_rate``);
* at most `ConnLimits.per_address` connections open at once per address (``refused:conn_limit``);
* the TLS handshake must end within `ConnLimits.handshake_s`, and the first request head
  within `IDLE_S` of the connection being made (aiohttp's keep-alive timer starts with the
  connection and a partial head does not restart it); a kept-alive connection idle for
  `IDLE_S` is closed too (an idle TLS connection holds about 330 KB).

A refused connection is closed at once, unread. The rate is judged as the connection is
accepted, before asyncio makes a transport and a task for it (the site accepts for itself,
`ACCEPT_BATCH` at a time, so a flood of new connections costs an accept and a close each and
honest traffic gets its turn between batches: asyncio's own accept loop takes up to its
backlog at once and builds each a transport first, and under the chaos suite's connection
burst an honest request's p99 tripled). The TLS layer is the one asyncio's own
``create_server(ssl=...)`` builds (`asyncio.sslproto.SSLProtocol`), put in place after the
admission instead of before it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from asyncio.sslproto import SSLProtocol
from collections import Counter
from dataclasses import dataclass

from aiohttp import web

from .guard import TokenBuckets

IDLE_S = 10.0  # a connection with no request head (or idle after a reply) is closed after this
ACCEPT_BATCH = 16  # connections accepted per turn of the event loop
NO_DESCRIPTORS_PAUSE_S = 0.1  # accepting stops this long when the process is out of descriptors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnLimits:
    """Connections per remote address; far above what a node's pooled clients open (8 per peer)."""

    rate: float = 50.0  # new connections per second per address
    burst: int = 200
    per_address: int = 128  # open at once
    handshake_s: int = 10
    shutdown_s: int = 5  # a TLS close the peer does not answer
    max_addresses: int = 10_000  # rate buckets kept (least recently used dropped)


class ConnectionGate:
    """One cell's admission of connections (shared by its doors), by remote address.

    Open connections are kept as their transports and counted lazily: a closed one is
    dropped from its address's list when that address connects again, and addresses with
    none open are forgotten when the table outgrows `ConnLimits.max_addresses`."""

    def __init__(
        self, counters: Counter[str], limits: ConnLimits | None = None, requests: TokenBuckets | None = None
    ) -> None:
        self.limits = limits or ConnLimits()
        self.counters = counters
        self.rates = TokenBuckets(self.limits.rate, self.limits.burst, self.limits.max_addresses)
        self.requests = requests  # the guard's request buckets per address, looked at, never drawn from
        self._open: dict[str, list[asyncio.BaseTransport]] = {}

    def open_from(self, address: str) -> int:
        return sum(not t.is_closing() for t in self._open.get(address, ()))

    def allow_new(self, address: str) -> bool:
        """Whether address may open a new connection now (its requests' rate, then its connections'),
        judged as it is accepted: a connection refused here costs no TLS handshake."""
        now = time.monotonic()
        if self.requests is not None and not self.requests.would_allow(address, now):
            self.counters["refused:conn_requests"] += 1
            return False
        if self.rates.allow(address, now):
            return True
        self.counters["refused:conn_rate"] += 1
        return False

    def admit(self, address: str, transport: asyncio.BaseTransport) -> bool:
        """Whether a connection allowed by its rate may stay (the cap on open ones from its address)."""
        live = [t for t in self._open.get(address, ()) if not t.is_closing()]
        if len(live) >= self.limits.per_address:
            self.counters["refused:conn_limit"] += 1
            self._open[address] = live
            return False
        self._open[address] = [*live, transport]
        if len(self._open) > self.limits.max_addresses:
            self._open = {a: ts for a, ts in self._open.items() if any(not t.is_closing() for t in ts)}
        return True


class _Admission(asyncio.Protocol):
    """A new connection's first protocol: admit it, then hand it to TLS and aiohttp."""

    def __init__(self, site: GuardedSite) -> None:
        self.site = site

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if not self.site.gate.admit(address, transport):
            transport.abort()
            return
        server = self.site.runner_server()
        handler = server()
        limits = self.site.gate.limits
        protocol: asyncio.BaseProtocol = handler
        if self.site.tls is not None:
            protocol = SSLProtocol(
                asyncio.get_running_loop(),
                handler,
                self.site.tls,
                None,  # type: ignore[arg-type]  # no waiter: asyncio's SSLProtocol takes None; typeshed says Future
                server_side=True,
                ssl_handshake_timeout=limits.handshake_s,
                ssl_shutdown_timeout=limits.shutdown_s,
            )
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


class GuardedSite(web.TCPSite):
    """`web.TCPSite` whose connections pass a `ConnectionGate` first (the runner should be made
    with ``keepalive_timeout=IDLE_S``, the deadline of the first request head)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        gate: ConnectionGate,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, reuse_address=True)
        self.gate = gate
        self.tls = ssl_context
        self._connecting: set[asyncio.Task[None]] = set()

    def runner_server(self) -> web.Server:
        server = self._runner.server
        assert server is not None
        return server

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in (self._host or "") else socket.AF_INET
        listener = socket.create_server((self._host or "", self._port), family=family, backlog=self._backlog)
        listener.setblocking(False)
        # an asyncio Server that never accepts (start_serving=False) gives aiohttp the listener's
        # lifecycle: closing it removes the reader added here and closes the socket
        self._server = await loop.create_server(lambda: _Admission(self), sock=listener, start_serving=False)
        self._bound_port = listener.getsockname()[1]
        loop.add_reader(listener.fileno(), self._accept, loop, listener)

    def _accept(self, loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
        """Accept up to ACCEPT_BATCH connections; one over its address's rate is closed before a
        transport is made for it."""
        for _ in range(ACCEPT_BATCH):
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept failed: %s", exc)
                    return
                self.gate.counters["refused:no_descriptors"] += 1
                loop.remove_reader(listener.fileno())  # the listener stays readable: pause, not spin
                loop.call_later(NO_DESCRIPTORS_PAUSE_S, self._resume, loop, listener)
                return
            if not self.gate.allow_new(str(peer[0])):
                conn.close()
                continue
            conn.setblocking(False)
            task = loop.create_task(self._connect(loop, conn))
            self._connecting.add(task)  # held: the loop keeps only a weak reference to a task
            task.add_done_callback(self._connecting.discard)

    async def _connect(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(lambda: _Admission(self), conn)
        except OSError:  # the peer was gone before its transport was made
            conn.close()

    def _resume(self, loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
        if listener.fileno() >= 0:  # not closed meanwhile (the site stopped)
            loop.add_reader(listener.fileno(), self._accept, loop, listener)
