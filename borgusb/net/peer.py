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
from dataclasses import dataclass
from typing import Any

import aiohttp

from .. import envelope
from ..clock import Clock
from ..keys import SigningKey
from .tls import client_context

HELLO = "net.hello"


class PeerError(Exception):
    pass


class PeerUnreachable(PeerError):
    """Connection refused, timed out, or TLS pin mismatch that a new hello did not fix."""


class PeerRejected(PeerError):
    """The peer answered and refused the message."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"peer refused ({status}): {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Pin:
    pubkey: str
    fingerprint: str
    info: dict[str, Any]


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
    ) -> None:
        self.key = key
        self.clock = clock
        self.verifier = verifier
        self.ip = ip
        self.port = port
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(1.0, timeout_s))
        self.pins: dict[tuple[str, int], Pin] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ssl = client_context()

    async def __aenter__(self) -> "PeerClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=256, limit_per_host=8, ssl=self._ssl, force_close=False)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def sign(self, type: str, payload: Any) -> bytes:
        return envelope.encode(envelope.sign(self.key, type, payload, self.clock, ip=self.ip, port=self.port))

    async def hello(self, ip: str, port: int, expect_pubkey: str | None = None) -> Pin:
        """Learn (and pin) the node key and TLS certificate of the node at ip:port."""
        try:
            cert = await self._peer_certificate(ip, port)
            fingerprint = hashlib.sha256(cert).hexdigest()
            # the hello must come over a connection presenting that same certificate
            async with self.session.get(
                f"https://{ip}:{port}/hello", ssl=aiohttp.Fingerprint(bytes.fromhex(fingerprint))
            ) as resp:
                body = await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            raise PeerUnreachable(f"{ip}:{port} unreachable: {exc.__class__.__name__}") from None
        if resp.status != 200:
            raise PeerUnreachable(f"{ip}:{port} gave no hello (HTTP {resp.status})")
        try:
            env = self.verifier.verify(body, expected_type=HELLO, expected_signer=expect_pubkey)
        except envelope.EnvelopeError as exc:
            raise PeerUnreachable(f"{ip}:{port} hello rejected: {exc.reason}") from None
        claimed = env.payload.get("tls_sha256") if isinstance(env.payload, dict) else None
        if not isinstance(claimed, str) or not hmac.compare_digest(claimed.encode(), fingerprint.encode()):
            raise PeerUnreachable(f"{ip}:{port} TLS certificate is not the one its node key vouches for")
        pin = Pin(env.signer, fingerprint, env.payload)
        self.pins[(ip, port)] = pin
        return pin

    async def _peer_certificate(self, ip: str, port: int) -> bytes:
        """The DER certificate the peer presents (read on a short TLS connection)."""
        timeout = self.timeout.sock_connect or 1.0
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port, ssl=self._ssl), timeout)
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            cert = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        finally:
            writer.close()
        if not cert:
            raise ValueError("no certificate")
        return cert

    async def pin_for(self, ip: str, port: int, expect_pubkey: str | None = None) -> Pin:
        pin = self.pins.get((ip, port))
        if pin is None or (expect_pubkey is not None and pin.pubkey != expect_pubkey):
            pin = await self.hello(ip, port, expect_pubkey)
        return pin

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
        wire: bytes | None = None,
    ) -> Any:
        """Send one signed message; return the reply (verified payload when signed_reply)."""
        data = wire if wire is not None else self.sign(type, payload)
        for attempt in (0, 1):
            pin = await self.pin_for(ip, port, expect_pubkey)
            try:
                async with self.session.post(
                    f"https://{ip}:{port}{path}",
                    data=data,
                    headers={"Content-Type": "application/json"},
                    ssl=aiohttp.Fingerprint(bytes.fromhex(pin.fingerprint)),
                ) as resp:
                    body = await resp.read()
                    status = resp.status
                break
            except aiohttp.ServerFingerprintMismatch:
                self.pins.pop((ip, port), None)  # the node restarted with a new certificate
                if attempt:
                    raise PeerUnreachable(f"{ip}:{port} TLS certificate changed and no longer matches") from None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                self.pins.pop((ip, port), None)
                raise PeerUnreachable(f"{ip}:{port} unreachable: {exc.__class__.__name__}") from None
        if status >= 400:
            raise PeerRejected(status, _reason(body))
        if not signed_reply:
            return None
        try:
            return self.verifier.verify(body, expected_signer=pin.pubkey).payload
        except envelope.EnvelopeError as exc:
            raise PeerRejected(status, f"reply rejected: {exc.reason}") from None


def _reason(body: bytes) -> str:
    import json

    try:
        doc = json.loads(body)
        return str(doc.get("error", doc))[:200]
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")
