"""Frames: a signed envelope and the raw bytes it names, in one HTTP body.

Envelopes carry JSON; shard bytes travel beside them. A frame is the signed
envelope's canonical JSON (which never contains a raw newline), one ``\\n``,
then the raw bytes. The envelope names the bytes' SHA-256 and size (a shard
record), so the signature covers the bytes without base64 (base64 in the
envelope costs a third more bytes and a JSON parse of the whole shard). Frames
go to ``POST /shard`` on a shardTreeCell's receptor, over the same key-pinned
TLS as everything else, and the reply to a frame is a frame signed by the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import envelope
from ..net.peer import PeerClient, PeerRejected
from ..shard import model

FRAME_PATH = "/frame"  # on every cell's receptor (the cell kit serves it)
ENVELOPE_HEADER = "X-Borg-Envelope"
MAX_FRAME = model.MAX_SHARD + envelope.DEFAULT_MAX_BYTES + 1


class StreamError(Exception):
    """A transfer that cannot complete (not found, no holder left, disk full, wrong bytes)."""


@dataclass(frozen=True)
class Holder:
    """A node holding shards: its key, and the address of its shard cell's receptor."""

    pubkey: str
    ip: str
    port: int

    def to_json(self) -> list[Any]:
        return [self.pubkey, self.ip, self.port]

    @classmethod
    def from_json(cls, doc: Any) -> Holder:
        if (
            not isinstance(doc, list)
            or len(doc) != 3
            or not isinstance(doc[0], str)
            or not isinstance(doc[1], str)
            or not isinstance(doc[2], int)
            or isinstance(doc[2], bool)
        ):
            raise ValueError("a holder is [pubkey, ip, port]")
        return cls(doc[0], doc[1], doc[2])


def frame(wire: bytes, data: bytes | memoryview = b"") -> bytes:
    return b"".join((wire, b"\n", data))


def unframe(body: bytes) -> tuple[bytes, memoryview]:
    """The envelope's wire bytes and a view of the bytes after it (no copy of those)."""
    at = body.find(b"\n")
    if at < 0:
        raise envelope.Malformed("a frame is an envelope, a newline, then bytes")
    view = memoryview(body)
    return bytes(view[:at]), view[at + 1 :]


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
    """Send a signed frame by the one pinned POST (`PeerClient.exchange`, direct: frames are
    not relayed); return the verified reply payload and a view of the reply's bytes."""
    parts = (peers.sign(type, payload, await peers.address(ip, port, expect_pubkey)), b"\n", data)
    status, raw, pin = await peers.exchange(
        ip,
        port,
        FRAME_PATH,
        parts,
        expect_pubkey,
        content_type="application/octet-stream",
        direct=True,
        max_reply=MAX_FRAME,
    )
    if status >= 400:
        raise PeerRejected.from_reply(status, raw)
    try:
        wire, rest = unframe(raw)
        env = peers.verifier.verify(wire, expected_signer=pin.pubkey, expected_type=type + ".reply")
    except envelope.EnvelopeError as exc:
        raise PeerRejected(status, "bad_reply", f"reply rejected: {exc.reason}") from None
    return env.payload, rest
