"""A closed PeerClient refuses instead of opening a new session: a late background task (a receipt
hand-in, a handler finishing during a cell's stop) would otherwise leave an "Unclosed client session"."""

from __future__ import annotations

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


async def test_a_closed_client_refuses_and_opens_no_session() -> None:
    clock = SystemClock()
    peers = PeerClient(SigningKey.generate(), clock, Verifier(clock), timeout_s=1.0)
    first = peers.session  # in use before the close, as a cell's client is
    await peers.close()
    await peers.close()  # idempotent
    assert first.closed
    with pytest.raises(PeerUnreachable, match="client is closed") as err:
        await peers.post("127.0.0.1", closed_port(), "/net", "tree.hb", {})
    assert not err.value.refused  # says nothing about the peer
    with pytest.raises(PeerUnreachable, match="client is closed"):
        _ = peers.session
    assert peers._session is None
