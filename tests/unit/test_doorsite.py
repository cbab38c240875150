"""The doors' connection admission (`kit/doorsite.py`): per-address rate and cap, and the
deadlines of the TLS handshake and of the first request head, over real sockets on loopback."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web

from borgusb.cells.kit.doorsite import ConnectionGate, ConnLimits, GuardedSite
from borgusb.cells.kit.guard import TokenBuckets
from borgusb.net.tls import make_tls_identity

HOST = "127.0.0.1"


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hi")


@asynccontextmanager
async def door(
    limits: ConnLimits, *, tls: bool = False, head_deadline_s: float = 10.0, requests: TokenBuckets | None = None
) -> AsyncIterator[tuple[int, ConnectionGate]]:
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=head_deadline_s)
    await runner.setup()
    context = make_tls_identity("doorsite-test").server_context if tls else None
    gate = ConnectionGate(Counter(), limits, requests)
    site = GuardedSite(runner, HOST, 0, gate, ssl_context=context)
    await site.start()
    try:
        yield site.port, gate
    finally:
        await runner.cleanup()


async def closed_within(reader: asyncio.StreamReader, timeout_s: float) -> bool:
    """Whether the server closes the connection within timeout_s (reading whatever it sends)."""
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if not await asyncio.wait_for(reader.read(4096), deadline - time.monotonic()):
                return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return False


async def get(port: int, *, tls: bool = False) -> str:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    scheme = "https" if tls else "http"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{scheme}://{HOST}:{port}/", ssl=context if tls else False) as resp:
            return await resp.text()


async def poll(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_connections_past_the_per_address_cap_are_closed_unread_and_counted() -> None:
    async with door(ConnLimits(per_address=3)) as (port, gate):
        held = [await asyncio.open_connection(HOST, port) for _ in range(3)]
        assert await poll(lambda: gate.open_from(HOST) == 3)
        reader, writer = await asyncio.open_connection(HOST, port)
        assert await closed_within(reader, 10)
        assert gate.counters["refused:conn_limit"] == 1 and gate.open_from(HOST) == 3
        writer.close()
        held[0][1].close()  # one of the three leaves: room for another
        assert await poll(lambda: gate.open_from(HOST) == 2)
        assert await get(port) == "hi"
        assert gate.counters["refused:conn_limit"] == 1
        for _, w in held[1:]:
            w.close()


async def test_new_connections_past_the_per_address_rate_are_refused() -> None:
    async with door(ConnLimits(rate=0.01, burst=2)) as (port, gate):
        assert await get(port) == "hi" and await get(port) == "hi"
        reader, writer = await asyncio.open_connection(HOST, port)
        assert await closed_within(reader, 10)
        writer.close()
        assert gate.counters["refused:conn_rate"] == 1


async def test_an_address_over_its_request_rate_gets_no_new_connection() -> None:
    """Its requests would be refused after the handshake: the connection is closed at accept instead."""
    requests = TokenBuckets(rate=0.01, burst=1, max_keys=10)  # the guard's, per address
    async with door(ConnLimits(), requests=requests) as (port, gate):
        assert await get(port) == "hi"  # a full bucket: connected
        assert requests.allow(HOST, time.monotonic())  # the guard lets one request through: now empty
        reader, writer = await asyncio.open_connection(HOST, port)
        assert await closed_within(reader, 10)
        writer.close()
        assert gate.counters["refused:conn_requests"] == 1 and gate.counters["refused:conn_rate"] == 0


async def test_a_trickled_request_head_is_cut_off_at_its_deadline() -> None:
    async with door(ConnLimits(), head_deadline_s=1.0) as (port, _):
        reader, writer = await asyncio.open_connection(HOST, port)
        t0 = time.monotonic()
        closed = False
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:  # never ends its head
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                closed = True
                break
            if reader.at_eof():
                closed = True
                break
            await asyncio.sleep(0.05)
            if time.monotonic() - t0 > 8:
                break
        closed = closed or await closed_within(reader, 1)
        assert closed and time.monotonic() - t0 < 8, "a slow head held its connection past the deadline"
        writer.close()
        assert await get(port) == "hi"  # an honest request is still served


async def test_a_tls_handshake_that_never_ends_is_cut_off_and_tls_still_serves() -> None:
    async with door(ConnLimits(handshake_s=1), tls=True) as (port, _):
        assert await get(port, tls=True) == "hi"
        reader, writer = await asyncio.open_connection(HOST, port)  # TCP only: no ClientHello
        t0 = time.monotonic()
        assert await closed_within(reader, 8)
        assert time.monotonic() - t0 < 8
        writer.close()
        assert await get(port, tls=True) == "hi"


async def test_a_burst_past_the_rate_is_closed_at_accept_and_the_door_still_serves() -> None:
    """100 connections at once (within the listener's backlog of 128) from one address past its
    rate: each is closed as it is accepted, before a transport is made (none reaches the
    per-address table), and another address is served."""
    async with door(ConnLimits(rate=0.01, burst=1), head_deadline_s=1.0) as (port, gate):

        async def touch() -> None:
            try:
                reader, writer = await asyncio.open_connection(HOST, port, local_addr=("127.0.0.2", 0))
            except OSError:
                return
            await closed_within(reader, 10)
            writer.close()

        await asyncio.gather(*(touch() for _ in range(100)))
        assert await poll(lambda: gate.counters["refused:conn_rate"] >= 99)
        assert gate.open_from("127.0.0.2") <= 1
        assert await get(port) == "hi"  # 127.0.0.1 has its own rate


async def test_a_tls_door_sends_no_session_tickets() -> None:
    """No client resumes a session (each pins the certificate on a full handshake), so a handshake
    costs no tickets; a TLS 1.3 server sends two by default."""
    async with door(ConnLimits(), tls=True) as (port, _):
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        reader, writer = await asyncio.open_connection(HOST, port, ssl=context)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await reader.read()).endswith(b"hi")  # the tickets, if any, came before the reply
        session = writer.get_extra_info("ssl_object").session
        writer.close()
        assert session is not None and not session.has_ticket
