"""PeerUnreachable tells a refused connection (nothing listens: proof about the peer, which the
PeerTree acts on at once) from a timeout (proof of nothing: a lossy or busy path)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient, PeerUnreachable


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(timeout_s: float) -> PeerClient:
    clock = SystemClock()
    return PeerClient(SigningKey.generate(), clock, Verifier(clock), timeout_s=timeout_s)


async def test_a_closed_port_is_refused() -> None:
    async with client(3.0) as peers:
        with pytest.raises(PeerUnreachable) as err:
            await peers.post("127.0.0.1", closed_port(), "/net", "tree.hb", {})
    assert err.value.refused and "connection refused" in str(err.value)


async def test_a_silent_listener_times_out_and_is_not_refused() -> None:
    """A listener that accepts and never answers TLS: the connection is made, so nothing was refused."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with client(0.5) as peers:
            with pytest.raises(PeerUnreachable) as err:
                await peers.post("127.0.0.1", port, "/net", "tree.hb", {})
        assert not err.value.refused and accepted
    finally:
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()
