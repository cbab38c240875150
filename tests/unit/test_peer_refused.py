"""PeerUnreachable tells a refused connection (nothing listens: proof about the peer, which the
PeerTree acts on at once) from a timeout (proof of nothing: a lossy or busy path)."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient, PeerUnreachable
from borgusb.net.tls import make_tls_identity


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


async def test_a_slow_first_handshake_is_waited_for_within_the_request_timeout() -> None:
    """A node too busy to answer its first TLS handshake within a second (a Pi, a guest under emulation)
    is still reached when the caller's timeout allows it; the connect alone keeps its short bound."""
    identity = make_tls_identity("slow node")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    released = threading.Event()

    def serve(silent_s: float) -> None:  # in a thread: accept, stay silent (until released), then answer
        conn, _ = listener.accept()
        released.wait(silent_s)
        try:
            with identity.server_context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)  # until the client closes
        except OSError:
            pass

    thread = threading.Thread(target=serve, args=(1.5,), daemon=True)  # past the 1 s connect bound
    thread.start()
    try:
        async with client(10.0) as peers:
            assert await peers._peer_certificate("127.0.0.1", port) == identity.cert_der
        await asyncio.to_thread(thread.join, 10)
        thread = threading.Thread(target=serve, args=(60.0,), daemon=True)  # silent until the client gave up
        thread.start()
        async with client(0.5) as peers:  # a caller that allows less gives up at its own timeout
            with pytest.raises(TimeoutError):
                await peers._peer_certificate("127.0.0.1", port)
    finally:
        released.set()
        listener.close()
        await asyncio.to_thread(thread.join, 10)
