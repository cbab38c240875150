"""The host's Unix-socket protocol: one request, the caller's three fds, one reply. Bounded."""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE = 64 << 10
MAX_ARGS = 256


class WireError(Exception):
    """A request or reply that does not have the protocol's shape."""


@dataclass(frozen=True)
class SpawnRequest:
    """Start one cell: its `borgusb cell` arguments and the environment it runs with."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]

    def to_bytes(self) -> bytes:
        return json.dumps({"argv": list(self.argv), "env": dict(self.env)}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SpawnRequest:
        try:
            doc = json.loads(data)
        except ValueError:
            raise WireError("a request is JSON") from None
        argv, env = (doc.get("argv"), doc.get("env")) if isinstance(doc, dict) else (None, None)
        if (
            not isinstance(argv, list)
            or not 1 <= len(argv) <= MAX_ARGS
            or not all(isinstance(a, str) for a in argv)
            or argv[0] != "run"
        ):
            raise WireError("argv is a list of strings that starts with 'run'")
        if (
            not isinstance(env, dict)
            or len(env) > MAX_ARGS
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise WireError("env is an object of strings")
        return cls(tuple(argv), tuple(sorted(env.items())))


def send_message(sock: socket.socket, payload: bytes, fds: list[int] | None = None) -> None:
    if len(payload) > MAX_MESSAGE:
        raise WireError(f"a message is at most {MAX_MESSAGE} bytes")
    data = struct.pack("!I", len(payload)) + payload
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


def recv_message(sock: socket.socket, max_fds: int = 0) -> tuple[bytes, list[int]]:
    """One length-prefixed message (and up to max_fds descriptors that came with its first bytes)."""
    head, fds, _, _ = (
        socket.recv_fds(sock, 4 + MAX_MESSAGE, max_fds) if max_fds else (sock.recv(4 + MAX_MESSAGE), [], 0, None)
    )
    try:
        if len(head) < 4:
            raise WireError("the connection closed before a message")
        (n,) = struct.unpack("!I", head[:4])
        if n > MAX_MESSAGE:
            raise WireError(f"a message is at most {MAX_MESSAGE} bytes")
        body = bytearray(head[4:])
        while len(body) < n:
            more = sock.recv(n - len(body))
            if not more:
                raise WireError("the connection closed inside a message")
            body += more
        if len(body) != n:
            raise WireError("more bytes than the message's length")
        return bytes(body), fds
    except BaseException:
        for fd in fds:
            _close(fd)
        raise


def reply(sock: socket.socket, doc: dict[str, Any]) -> None:
    send_message(sock, json.dumps(doc).encode())


def _close(fd: int) -> None:
    import os

    try:
        os.close(fd)
    except OSError:
        pass
