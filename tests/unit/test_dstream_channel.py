"""The data channel's client against hostile holders: a real loopback server that answers with
scripted bytes. Every broken rule fails the request with a typed error and drops the
connection; no buffer grows past its bound; a silent holder is cut at the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from borgusb import envelope
from borgusb.clock import SystemClock
from borgusb.dstream import ENVELOPE_HEADER, BadReply, DataChannel, Holder
from borgusb.dstream.channel import HEAD_MAX, ChannelConn
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient, PeerRejected, PeerUnreachable

DEADLINE_S = 5.0
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A loopback holder that answers each request head with what the test's script writes."""

    def __init__(self) -> None:
        self.script: Script | None = None
        self.requests: list[bytes] = []
        self.connections = 0
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                assert self.script is not None
                await self.script(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    srv.server = await asyncio.start_server(srv.handle, "127.0.0.1", 0, limit=1 << 16)
    srv.port = srv.server.sockets[0].getsockname()[1]
    yield srv
    srv.server.close()
    for writer in srv.writers:  # each handler then ends by itself
        writer.close()
    if srv.tasks:
        await asyncio.wait(srv.tasks, timeout=DEADLINE_S)


def writes(*parts: bytes, close: bool = False) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for part in parts:
            writer.write(part)
            await writer.drain()
        if close:
            writer.close()
            raise ConnectionError("closed by the script")

    return script


def sized(*sizes: int) -> tuple[Callable[[int, dict[str, str], int], list[memoryview]], list[bytearray]]:
    """An on_head that gives buffers of these sizes, whatever the head says."""
    bufs = [bytearray(n) for n in sizes]
    seen: list[Any] = []

    def on_head(status: int, headers: dict[str, str], length: int) -> list[memoryview]:
        seen.append((status, headers, length))
        return [memoryview(b) for b in bufs]

    return on_head, bufs


async def connect(server: Server) -> ChannelConn:
    _, conn = await asyncio.get_running_loop().create_connection(ChannelConn, "127.0.0.1", server.port)
    return conn


async def get(conn: ChannelConn, on_head: Any) -> int:
    async with asyncio.timeout(DEADLINE_S):
        return await conn.get("/shard/x", [("Host", "h")], on_head)


async def test_body_lands_in_the_buffers_however_it_is_cut_and_the_connection_is_kept(server: Server) -> None:
    body = bytes(range(256)) * 64  # 16 KiB
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 16384\r\n\r\n"
    conn = await connect(server)
    for script in (writes(head + body), writes(head, body[:10], body[10:]), writes(head + body[:5000], body[5000:])):
        server.script = script
        on_head, bufs = sized(1000, 15384)
        assert await get(conn, on_head) == 200
        assert bytes(bufs[0] + bufs[1]) == body
        assert conn.reusable
    assert server.connections == 1  # keep-alive: three requests, one connection


async def test_empty_body_and_error_status(server: Server) -> None:
    conn = await connect(server)
    server.script = writes(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    on_head, _ = sized()
    assert await get(conn, on_head) == 404


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"HTTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "malformed"),
        (b"garbage\r\n\r\n", "malformed"),
        (b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nX-Borg-Envelope: a\r\nX-Borg-Envelope: b\r\nContent-Length: 0\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n", "transfer-coding"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
            "transfer-coding",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\n\r\nabcd", "no-length"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd", "informational"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcdEXTRA", "extra-bytes"),
    ],
)
async def test_broken_replies_fail_with_their_reason(server: Server, reply: bytes, reason: str) -> None:
    conn = await connect(server)
    server.script = writes(reply)
    on_head, _ = sized(4)
    with pytest.raises(BadReply) as err:
        await get(conn, on_head)
    assert err.value.reason == reason
    assert not conn.reusable
    await asyncio.wait_for(wait_closed(conn), DEADLINE_S)


async def wait_closed(conn: ChannelConn) -> None:
    while conn.transport is not None:
        await asyncio.sleep(0.01)


async def test_endless_head_is_cut_at_its_bound(server: Server) -> None:
    conn = await connect(server)
    sent = [0]

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        while sent[0] < 1024 * HEAD_MAX:  # 64 MiB, far past the bound: the client must cut it first
            writer.write(b"X-Pad: " + b"a" * 1000 + b"\r\n")
            sent[0] += 1009
            await writer.drain()

    server.script = endless
    on_head, _ = sized(4)
    with pytest.raises(BadReply) as err:
        await get(conn, on_head)
    assert err.value.reason == "head-too-long"
    assert sent[0] < 1024 * HEAD_MAX


async def test_one_huge_header_line(server: Server) -> None:
    conn = await connect(server)
    server.script = writes(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (HEAD_MAX + 10) + b"\r\nContent-Length: 0\r\n\r\n")
    on_head, _ = sized()
    with pytest.raises(BadReply) as err:
        await get(conn, on_head)
    assert err.value.reason in ("head-too-long", "malformed")


async def test_truncated_body_and_closed_before_a_reply(server: Server) -> None:
    conn = await connect(server)
    server.script = writes(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 40, close=True)
    on_head, _ = sized(100)
    with pytest.raises(BadReply) as err:
        await get(conn, on_head)
    assert err.value.reason == "truncated"

    conn = await connect(server)
    server.script = writes(close=True)
    with pytest.raises(BadReply) as err:
        await get(conn, sized(4)[0])
    assert err.value.reason == "closed"


async def test_a_length_the_buffers_do_not_take_is_refused(server: Server) -> None:
    conn = await connect(server)
    server.script = writes(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" + b"a" * 8)
    on_head, _ = sized(4)
    with pytest.raises(PeerRejected):
        await get(conn, on_head)
    assert not conn.reusable


async def test_bytes_with_no_request_outstanding_drop_the_connection(server: Server) -> None:
    conn = await connect(server)
    server.script = writes(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd")
    assert await get(conn, sized(4)[0]) == 200
    server.writers[-1].write(b"HTTP/1.1 200 OK\r\n")  # after the reply was taken: nobody asked
    await asyncio.wait_for(wait_closed(conn), DEADLINE_S)  # the stray bytes closed it
    assert not conn.reusable


async def test_a_closing_or_old_holder_is_not_reused(server: Server) -> None:
    for reply in (
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    ):
        conn = await connect(server)
        server.script = writes(reply)
        assert await get(conn, sized()[0]) == 200
        assert not conn.reusable


# ------------------------------------------------------------------ DataChannel.get: the signed protocol

H = "ab" * 32
CLIENT_KEY = SigningKey.generate()
TO_CLIENT = envelope.address(CLIENT_KEY.public_key_hex, 0)  # where the holder's replies go
ELSEWHERE = envelope.address(SigningKey.generate().public_key_hex, 0)


@pytest.fixture
async def peers() -> AsyncIterator[PeerClient]:
    clock = SystemClock()
    client = PeerClient(CLIENT_KEY, clock, envelope.Verifier(clock))
    yield client
    await client.close()


def signed_reply(key: SigningKey, payload: Any, body: bytes, status: str = "200 OK", to: str = TO_CLIENT) -> bytes:
    wire = envelope.encode(envelope.sign(key, "shard.get.reply", payload, SystemClock(), to=to))
    return (
        f"HTTP/1.1 {status}\r\n{ENVELOPE_HEADER}: ".encode()
        + wire
        + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def dest(size: int) -> tuple[Callable[[int], memoryview], bytearray]:
    buf = bytearray(size)

    def view(n: int) -> memoryview:
        if n != size:
            raise ValueError(f"not {size} bytes")
        return memoryview(buf)[:n]

    return view, buf


async def test_data_channel_get_serves_and_refuses(server: Server, peers: PeerClient) -> None:
    holder_key = SigningKey.generate()
    holder = Holder(holder_key.public_key_hex, "127.0.0.1", 1)
    channel = DataChannel(server.port, timeout_s=DEADLINE_S)
    try:
        d0, buf0 = dest(5)
        d1, _ = dest(7)
        server.script = writes(signed_reply(holder_key, {"hs": [H, H], "ns": [5, -404]}, b"hello"))
        out = await channel.get(peers, holder, {"hs": [H, H]}, [d0, d1])
        assert out[1] == 404 and bytes(out[0]) == b"hello" == bytes(buf0)
        assert ENVELOPE_HEADER.encode() in server.requests[0] and b"GET /shard/" + H.encode() in server.requests[0]

        cases: list[tuple[bytes, type[Exception]]] = [
            (signed_reply(SigningKey.generate(), {"hs": [H], "ns": [5]}, b"hello"), PeerRejected),  # wrong signer
            (signed_reply(holder_key, {"hs": [H, H], "ns": [5]}, b"hello"), PeerRejected),  # not this request
            (signed_reply(holder_key, {"hs": [H], "ns": [6]}, b"hello!"), PeerRejected),  # not the shard's size
            (signed_reply(holder_key, {"hs": [H], "ns": [True]}, b""), PeerRejected),
            (signed_reply(holder_key, {"hs": [H], "ns": [5]}, b"hello", to=ELSEWHERE), PeerRejected),  # not to us
            (signed_reply(holder_key, {"hs": [H], "ns": [5]}, b"hello", to=""), PeerRejected),  # unaddressed
            (b'HTTP/1.1 404 Not Found\r\nContent-Length: 30\r\n\r\n{"error":"gone","detail":"xy"}', PeerRejected),
            (b"HTTP/1.1 500 Oops\r\nContent-Length: 1000000\r\n\r\n", PeerRejected),  # refusal body too long
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", PeerUnreachable),
            (b"nonsense\r\n\r\n", PeerUnreachable),
        ]
        for reply, exc in cases:
            server.script = writes(reply)
            d, _ = dest(5)
            with pytest.raises(exc) as err:
                await channel.get(peers, holder, {"hs": [H]}, [d])
            if b"gone" in reply:
                assert (err.value.reason, err.value.detail) == ("gone", "xy")  # type: ignore[attr-defined]
        assert not channel.open  # every failed connection was dropped

        with pytest.raises(ValueError):
            await channel.get(peers, holder, {"hs": [H] * 17}, [d] * 17)
    finally:
        channel.close()


async def test_a_silent_holder_is_cut_at_the_deadline(server: Server, peers: PeerClient) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # never answers; returns when the client gives up

    server.script = silent
    holder = Holder(SigningKey.generate().public_key_hex, "127.0.0.1", 1)
    channel = DataChannel(server.port, timeout_s=0.3)
    d, _ = dest(5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(PeerUnreachable):
        await asyncio.wait_for(channel.get(peers, holder, {"hs": [H]}, [d]), DEADLINE_S)
    assert loop.time() - started < 2.0
    assert not channel.open
    channel.close()


async def test_no_listener_is_unreachable(peers: PeerClient) -> None:
    channel = DataChannel(1, timeout_s=DEADLINE_S)  # nothing listens on port 1
    d, _ = dest(5)
    with pytest.raises(PeerUnreachable):
        await channel.get(peers, Holder(ELSEWHERE.split(":")[0], "127.0.0.1", 1), {"hs": [H]}, [d])
    channel.close()
