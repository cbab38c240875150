"""The doors' guard: per-address and per-key rates, the body budget and deadline (issue 15 item 5)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from borgusb import dna, envelope
from borgusb.cells.kit import Cell
from borgusb.cells.kit.guard import BodyBudget, Guard, Limits, TokenBuckets
from borgusb.clock import SystemClock
from borgusb.keys import SigningKey


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    b = TokenBuckets(rate=10, burst=5, max_keys=100)
    assert [b.allow("a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert b.allow("b", 0.0)  # another key has its own bucket
    assert not b.allow("a", 0.05) and b.allow("a", 0.1)  # one token per 0.1 s


def test_would_allow_says_what_allow_would_and_takes_nothing() -> None:
    b = TokenBuckets(rate=10, burst=2, max_keys=100)
    assert all(b.would_allow("a", 0.0) for _ in range(5))  # an unknown key: a full bucket, none taken
    assert b.allow("a", 0.0) and b.would_allow("a", 0.0) and b.allow("a", 0.0)
    assert not b.would_allow("a", 0.0) and not b.allow("a", 0.0)
    assert not b.would_allow("a", 0.05) and b.would_allow("a", 0.1) and b.allow("a", 0.1)


def test_buckets_are_bounded() -> None:
    b = TokenBuckets(rate=1, burst=1, max_keys=50)
    for i in range(1000):
        b.allow(f"k{i}", 0.0)
    assert len(b) == 50


def test_the_body_budget_is_per_address_and_in_all() -> None:
    budget = BodyBudget(per_address=10, total=15)
    assert budget.reserve("a", 6) and not budget.reserve("a", 6)  # a's own budget
    assert budget.reserve("b", 9) and not budget.reserve("c", 1)  # everyone's budget
    budget.release("a", 6)
    assert budget.reserve("c", 1) and budget.in_flight == 10
    budget.release("b", 9)
    budget.release("c", 1)
    assert budget.in_flight == 0 and budget.addresses() == 0


async def guarded_app(limits: Limits, counters: Counter[str]) -> TestClient:
    guard = Guard(counters, limits)

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    app = web.Application(client_max_size=1 << 20, middlewares=[guard.middleware(1000)])
    app.router.add_post("/x", echo)
    server = TestServer(app)
    await server.start_server(lingering_time=0)  # as the cell's doors run: a refused body is never read
    client = TestClient(server)
    await client.start_server()
    return client


async def test_an_address_past_its_rate_is_refused_and_counted() -> None:
    counters: Counter[str] = Counter()
    client = await guarded_app(Limits(address_rate=0.001, address_burst=3), counters)
    try:
        codes = [(await client.post("/x", data=b"hi")).status for _ in range(5)]
    finally:
        await client.close()
    assert codes == [200, 200, 200, 429, 429]
    assert counters["refused:rate_limited"] == 2


async def test_a_body_past_the_limit_or_without_a_length_is_refused_unread() -> None:
    counters: Counter[str] = Counter()
    client = await guarded_app(Limits(), counters)
    try:
        assert (await client.post("/x", data=b"x" * 1001)).status == 413

        async def chunks():
            yield b"abc"

        assert (await client.post("/x", data=chunks())).status == 411
    finally:
        await client.close()
    assert counters["refused:too_large"] == 1 and counters["refused:length_required"] == 1


async def test_a_held_back_body_is_cut_off_at_the_deadline() -> None:
    counters: Counter[str] = Counter()
    client = await guarded_app(Limits(body_deadline_s=0.3), counters)
    try:
        host, port = client.server.host, client.server.port
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 30)
        assert b" 408 " in head
        assert await asyncio.wait_for(reader.read(), 30) is not None  # and the connection is closed
        writer.close()
    finally:
        await client.close()
    assert counters["refused:body_timeout"] == 1


async def test_a_key_past_its_rate_is_refused_at_the_receptor() -> None:
    cell = Cell(dna.get("peerTreeNet"), "127.0.0.1")
    cell.guard = Guard(cell.counters, Limits(key_rate=0.001, key_burst=2))
    key, clock = SigningKey.generate(), SystemClock()
    to = envelope.address(cell.key.public_key_hex, cell.dna.recp_port)
    try:
        statuses = []
        for _ in range(3):
            env = cell.verifier.verify(envelope.sign_bytes(key, "cell.status", {}, clock, to=to))
            statuses.append((await cell._dispatch(env, "_r_status", (env,), "application/json")).status)
        assert statuses == [200, 200, 429]
        other = cell.verifier.verify(envelope.sign_bytes(SigningKey.generate(), "cell.status", {}, clock, to=to))
        assert (await cell._dispatch(other, "_r_status", (other,), "application/json")).status == 200
        assert cell.counters["refused:rate_limited"] == 1
    finally:
        await cell.peers.close()
        cell.key.close()


@pytest.mark.parametrize("deadline", ["0.5", "12"])
def test_the_deadline_comes_from_the_environment(monkeypatch, deadline: str) -> None:
    monkeypatch.setenv("BORGUSB_BODY_DEADLINE_S", deadline)
    assert Limits.from_env().body_deadline_s == float(deadline)
