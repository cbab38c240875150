"""Client side of node-to-node and receptor traffic: signed, pinned, bounded.

`PeerClient.post` signs a message, sends it over TLS pinned to the peer's
node key (see tls.py), and verifies a signed reply through the node's one
`Verifier`. A peer that cannot be reached raises `PeerUnreachable`; one that
refuses the message raises `PeerRejected` with its reason. Nothing here
retries silently: callers (the tree, the conduit's failover) decide.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import aiohttp

from .. import envelope
from ..clock import Clock
from ..keys import SigningKey
from . import relaygrant
from .tls import client_context

HELLO = "net.hello"
IDLE_S = 5.0  # a pooled connection idle this long is dropped here first (cells close theirs after 10 s)
MAX_REPLY = 8 << 20  # the largest reply any cell sends is a shard frame (4 MiB + its envelope)


class PeerError(Exception):
    pass


class PeerUnreachable(PeerError):
    """Connection refused, timed out, or TLS pin mismatch that a new hello did not fix.

    ``refused``: the address actively refused the connection (nothing listens there), the one
    failure that proves something about the peer rather than the path to it."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class ClientClosed(PeerUnreachable):
    """This client was closed: it opens no new connections (a late task would leak its session)."""

    def __init__(self) -> None:
        super().__init__("this peer client is closed")


def _unreachable(ip: str, port: int, exc: BaseException) -> PeerUnreachable:
    return PeerUnreachable(f"{ip}:{port} unreachable: {_why(exc)}", refused=_refused(exc))


def _refused(exc: BaseException) -> bool:
    """Whether the address refused the connection (aiohttp's connector errors wrap the OSError)."""
    return isinstance(getattr(exc, "os_error", exc), ConnectionRefusedError)


class PeerRejected(PeerError):
    """The peer answered and refused the message."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(f"peer refused ({status}): {reason}" + (f": {detail}" if detail else ""))
        self.status = status
        self.reason = reason  # a short word for programs (the handler's RequestError reason)
        self.detail = detail  # for people

    @classmethod
    def from_reply(cls, status: int, body: bytes) -> PeerRejected:
        """The refusal a cell sent: ``{"error": reason, "detail": ...}`` (anything else is ``unexplained``)."""
        try:
            doc = json.loads(body)
        except ValueError:
            return cls(status, "unexplained", body[:200].decode("utf-8", "replace"))
        error = doc.get("error") if isinstance(doc, dict) else None
        detail = doc.get("detail") if isinstance(doc, dict) else None
        if not isinstance(error, str) or not error:
            return cls(status, "unexplained", str(doc)[:200])
        return cls(status, error[:48], str(detail)[:300] if detail else "")


def _why(exc: BaseException) -> str:
    """A failed connection in words: the message reaches people, who cannot act on a class name."""
    if _refused(exc):
        return "connection refused (nothing listens there)"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "no answer in time"
    if isinstance(exc, OverflowError):
        return "not a port number"
    return "cannot connect"


@dataclass(frozen=True)
class Pin:
    """Who answers at an address, the certificate they vouched for, what else they said."""

    pubkey: str
    fingerprint: str
    info: dict[str, Any]

    def relays_for(self, node: str, now_ms: int) -> bool:
        """Whether this node (a NAT gateway, see nat.py) shows `node`'s own current grant naming it."""
        return relaygrant.relays_for(self.info.get("relays"), self.pubkey, node, now_ms)

    @property
    def observed(self) -> str | None:
        """Our own address as this peer sees it."""
        observed = self.info.get("observed")
        return observed if isinstance(observed, str) else None


class PeerClient:
    def __init__(
        self,
        key: SigningKey,
        clock: Clock,
        verifier: envelope.Verifier,
        *,
        ip: str = "",
        port: int = 0,
        timeout_s: float = 3.0,
        bind: str | None = None,
    ) -> None:
        self.key = key
        self.clock = clock
        self.verifier = verifier
        self.ip = ip  # the address we advertise in envelopes (the public one behind NAT)
        # the local address outgoing connections leave from, so peers see us where we listen
        self._local_addr = (bind, 0) if bind else None
        self.port = port
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(1.0, timeout_s))
        self.pins: dict[tuple[str, int], Pin] = {}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._ssl = client_context()
        verifier.answer_to(key.public_key_hex, (port,))  # replies are addressed to us

    async def __aenter__(self) -> PeerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The pooled session, made on first use; `ClientClosed` once `close` began."""
        if self._closed:
            raise ClientClosed()
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=256,
                limit_per_host=8,
                ssl=self._ssl,
                force_close=False,
                local_addr=self._local_addr,
                keepalive_timeout=IDLE_S,
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        """Close the session for good (idempotent): set first, so nothing reopens it mid-close."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def sign(self, type: str, payload: Any, to: str) -> bytes:
        """Wire bytes of a message from us to `to` (`envelope.address` of the receiving cell)."""
        return envelope.encode(envelope.sign(self.key, type, payload, self.clock, ip=self.ip, port=self.port, to=to))

    async def address(self, ip: str, port: int, expect_pubkey: str | None = None) -> str:
        """The `to` of a message for the cell at ip:port: the expected node's key, else whoever answers
        there. The route is learnt first (and kept for the post), so an unreachable peer is found
        before anything is signed."""
        pin, _ = await self.route(ip, port, expect_pubkey)
        return envelope.address(expect_pubkey or pin.pubkey, port)

    async def hello(self, ip: str, port: int, expect_pubkey: str | None = None) -> Pin:
        """Learn (and pin) the node key and TLS certificate of the node at ip:port."""
        session = self.session  # a closed client refuses before it connects
        try:
            cert = await self._peer_certificate(ip, port)
            fingerprint = hashlib.sha256(cert).hexdigest()
            # the hello must come over a connection presenting that same certificate
            async with session.get(f"https://{ip}:{port}/hello", ssl=_fingerprint(fingerprint)) as resp:
                body = await resp.read()
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError, OverflowError) as exc:
            # OverflowError: a port outside 0..65535, which a hostile payload may name
            raise _unreachable(ip, port, exc) from None
        if resp.status != 200:
            raise PeerUnreachable(f"{ip}:{port} gave no hello (HTTP {resp.status})")
        try:
            env = self.verifier.verify(body, expected_type=HELLO, expected_signer=expect_pubkey, unaddressed=True)
        except envelope.EnvelopeError as exc:
            raise PeerUnreachable(f"{ip}:{port} hello rejected: {exc.reason}") from None
        claimed = env.payload.get("tls_sha256") if isinstance(env.payload, dict) else None
        if not isinstance(claimed, str) or not hmac.compare_digest(claimed.encode(), fingerprint.encode()):
            raise PeerUnreachable(f"{ip}:{port} TLS certificate is not the one its node key vouches for")
        pin = Pin(env.signer, fingerprint, env.payload)
        self.pins[(ip, port)] = pin
        return pin

    async def _peer_certificate(self, ip: str, port: int) -> bytes:
        """The DER certificate the peer presents (read on a short TLS connection). The connect is
        bounded by ``sock_connect`` (an address where nothing answers is known at once), the TLS
        handshake by the request's whole timeout: a busy node (a Pi, a guest under emulation
        loading its cells) may take more than a second to answer its first handshake, and a
        one-second bound on both had a guest's own `borgusb put` give up twice within 2 s of its
        120 s timeout."""
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(ip, port, local_addr=self._local_addr), self.timeout.sock_connect or 1.0
        )
        try:
            await asyncio.wait_for(writer.start_tls(self._ssl, server_hostname=ip), self.timeout.total or 3.0)
            ssl_object = writer.get_extra_info("ssl_object")
            cert = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        finally:
            writer.close()
        if not cert:
            raise ValueError("no certificate")
        return cert

    async def pin_for(self, ip: str, port: int, expect_pubkey: str | None = None) -> Pin:
        """The pin for a direct conversation with expect_pubkey (or whoever answers)."""
        pin, relay = await self.route(ip, port, expect_pubkey)
        if relay:
            raise PeerUnreachable(f"{ip}:{port} only relays for that node")
        return pin

    async def route(self, ip: str, port: int, expect_pubkey: str | None) -> tuple[Pin, str]:
        """How to reach expect_pubkey at ip:port: directly ("") or through a gateway's relay path.

        A node behind NAT advertises its gateway's public address; the gateway's
        hello shows, for each node it relays for, that node's signed grant naming
        the gateway (relaygrant.py): a bare claim is not taken. Signatures stay end to end: the
        gateway passes the bytes on untouched, and replies are checked against
        the expected node's key, not the gateway's.
        """
        pin: Pin | None = None
        for fresh in (False, True):
            pin = self.pins.get((ip, port))
            if pin is None or fresh:
                pin = await self.hello(ip, port)
            if expect_pubkey is None or pin.pubkey == expect_pubkey:
                return pin, ""
            if pin.relays_for(expect_pubkey, self.clock.now_ms()):
                return pin, f"/relay/{expect_pubkey}"
        assert pin is not None
        raise PeerUnreachable(
            f"{ip}:{port} answers as another node ({pin.pubkey[:12]}…) and does not relay for this one"
        )

    async def exchange(
        self,
        ip: str,
        port: int,
        path: str,
        data: bytes | Sequence[bytes | memoryview],
        expect_pubkey: str | None = None,
        *,
        content_type: str = "application/json",
        direct: bool = False,
        max_reply: int = MAX_REPLY,
    ) -> tuple[int, bytes, Pin]:
        """POST bytes over the pinned (or relayed) connection; return status, body, pin.

        The one pinned POST every caller uses (posts, DStream frames, crono's time exchange):
        a certificate that no longer matches (the peer restarted) is re-learnt by one new
        hello and retried once; anything else is `PeerUnreachable` at once. ``data`` may be
        parts (a frame's envelope and shard bytes), sent as one body. ``direct`` refuses a
        relay (crono: a relayed path would skew the round trip it measures). The reply is
        bounded by ``max_reply`` bytes (`PeerRejected` past it)."""
        body = data if isinstance(data, (bytes, bytearray)) else b"".join(data)
        for attempt in (0, 1):
            if direct:
                pin, relay = await self.pin_for(ip, port, expect_pubkey), ""
            else:
                pin, relay = await self.route(ip, port, expect_pubkey)
            try:
                async with self.session.post(
                    f"https://{ip}:{port}{relay}{path}",
                    data=body,
                    headers={"Content-Type": content_type},
                    ssl=_fingerprint(pin.fingerprint),
                ) as resp:
                    return resp.status, await _read_bounded(resp, max_reply), pin
            except aiohttp.ServerFingerprintMismatch:
                self.pins.pop((ip, port), None)  # the node restarted with a new certificate
                if attempt:
                    raise PeerUnreachable(f"{ip}:{port} TLS certificate changed and no longer matches") from None
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self.pins.pop((ip, port), None)
                raise _unreachable(ip, port, exc) from None
        raise PeerUnreachable(f"{ip}:{port} unreachable")  # pragma: no cover - loop always returns or raises

    async def post(
        self,
        ip: str,
        port: int,
        path: str,
        type: str,
        payload: Any,
        *,
        expect_pubkey: str | None = None,
        signed_reply: bool = False,
        direct: bool = False,
        broadcast: bool = False,
    ) -> Any:
        """Send one signed message, addressed to the node that answers (or is expected) at ip:port,
        or, to be broadcast by it, to every cell on that port; return the reply (its verified
        payload when signed_reply)."""
        to = envelope.everyone(port) if broadcast else await self.address(ip, port, expect_pubkey)
        data = self.sign(type, payload, to)
        status, body, pin = await self.exchange(ip, port, path, data, expect_pubkey, direct=direct)
        if status >= 400:
            raise PeerRejected.from_reply(status, body)
        if not signed_reply:
            return None
        try:
            return self.verifier.verify(body, expected_signer=expect_pubkey or pin.pubkey).payload
        except envelope.EnvelopeError as exc:
            raise PeerRejected(status, "bad_reply", f"reply rejected: {exc.reason}") from None


@lru_cache(maxsize=4096)
def _fingerprint(hex_digest: str) -> aiohttp.Fingerprint:
    """One Fingerprint object per certificate, the only cache of them: aiohttp pools
    connections by the ``ssl`` argument's identity (Fingerprint has no equality), so a fresh
    object per request would pay a TLS handshake per request (~2 ms here; for crono, an
    asymmetry in the very round trip it measures)."""
    return aiohttp.Fingerprint(bytes.fromhex(hex_digest))


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The reply's body, refused past `limit` bytes before it is all read."""
    if resp.content_length is not None:
        if resp.content_length > limit:
            raise PeerRejected(resp.status, "too_large", f"reply of {resp.content_length} bytes exceeds {limit}")
        return await resp.read()
    body = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            raise PeerRejected(resp.status, "too_large", f"reply exceeds {limit} bytes")
    return bytes(body)
