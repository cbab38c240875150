"""The conduit's view of the network: live endpoints per cell type, failover.

The browser never talks to the network. The conduit keeps, for each cell
type, the list of nodes that run it (read from that cell's tree through the
`tree.members` receptor request), sends every request signed, verifies every
signed reply through its own `Verifier`, and when an endpoint stops
answering moves on to the next one. The caller learns which endpoint served.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .. import dna
from ..cells import dna_of, specs
from ..clock import Clock
from ..envelope import Verifier
from ..keys import SigningKey
from ..net.peer import PeerClient, PeerError, PeerUnreachable


class NoEndpoint(Exception):
    """No node of this cell type answered."""


@dataclass
class Served:
    """A reply and where it came from."""

    result: Any
    endpoint: str
    tried: list[str] = field(default_factory=list)


@dataclass
class CellEndpoints:
    cell: str
    endpoints: list[str] = field(default_factory=list)  # IPs, preferred first
    members: list[dict[str, Any]] = field(default_factory=list)
    tree: str | None = None
    k: int = 1
    refreshed: float = 0.0
    error: str | None = None
    source: str = "tree"  # where the endpoint list came from: "registry" or "tree"


class Network:
    """Endpoints per cell type and signed calls with failover."""

    def __init__(self, seeds: list[str], clock: Clock, *, timeout_s: float = 3.0) -> None:
        self.seeds = list(seeds)
        self.clock = clock
        self.verifier = Verifier(clock)
        self.timeout_s = timeout_s
        specs()  # the DNA rows of cells shipped elsewhere join the table with their SPECs
        self.cells: dict[str, CellEndpoints] = {name: CellEndpoints(name) for name in dna.CELLS}
        # read-only calls (status, members) are signed by a throwaway key: they need no identity
        self._anon = PeerClient(SigningKey.generate(), clock, self.verifier, timeout_s=timeout_s)
        # one client per (key, reply wait): a request that may think for minutes (an agent's chat) gets
        # a client of its own, so every other request still gives up on a silent node in `timeout_s`
        self._clients: dict[tuple[str, float], PeerClient] = {}
        self._registry: list[dict[str, Any]] = []
        self._registry_at = -1e9

    async def close(self) -> None:
        """Close every client. An idle lock closes them and the conduit goes on serving, so the anonymous
        client is replaced by a fresh one (same throwaway key): a closed PeerClient refuses all use."""
        anon = self._anon
        self._anon = PeerClient(anon.key, self.clock, self.verifier, timeout_s=self.timeout_s)
        await anon.close()
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    def client_for(self, key: SigningKey | None, reply_s: float | None = None) -> PeerClient:
        """The client that signs with `key` (None: the throwaway key); with `reply_s`, one whose
        requests wait that long for their reply instead of `timeout_s`."""
        if key is None:
            return self._anon
        slot = (key.public_key_hex, max(reply_s or 0.0, self.timeout_s))
        client = self._clients.get(slot)
        if client is None or client.key is not key:  # a new unlock gives a new key object
            if client is not None:
                asyncio.ensure_future(client.close())
            client = self._clients[slot] = PeerClient(key, self.clock, self.verifier, timeout_s=slot[1])
        return client

    @staticmethod
    def port_of(cell: str) -> int:
        return dna_of(cell).recp_port

    async def forget_key(self, key: SigningKey) -> None:
        for slot in [s for s in self._clients if s[0] == key.public_key_hex]:
            await self._clients.pop(slot).close()

    async def registry(self) -> list[dict[str, Any]]:
        """All live services from the serviceMgr registry (cached briefly; [] when none answers)."""
        if time.monotonic() - self._registry_at < 2.0:
            return self._registry
        port = dna_of("serviceMgrCell").recp_port
        self._registry, self._registry_at = [], time.monotonic()
        for ip in self.seeds:
            try:
                reply = await self._anon.post(ip, port, "/recp", "svc.list", {}, signed_reply=True)
            except PeerError:
                continue
            services = reply.get("services") if isinstance(reply, dict) else None
            if isinstance(services, list):
                self._registry = [e for e in services if isinstance(e, dict)]
                break
        return self._registry

    async def refresh(self, cell: str) -> CellEndpoints:
        """Endpoints from the service registry when it runs, members from the cell's own tree."""
        entry = self.cells[cell]
        port = dna_of(cell).recp_port
        registered = [e["ip"] for e in await self.registry() if e.get("cell") == cell and isinstance(e.get("ip"), str)]
        entry.source = "registry" if registered else "tree"
        candidates = list(dict.fromkeys(entry.endpoints + registered + self.seeds))
        for ip in candidates:
            try:
                reply = await self._anon.post(ip, port, "/recp", "tree.members", {}, signed_reply=True)
            except PeerError as exc:
                entry.error = str(exc)
                continue
            members = reply.get("members", []) if isinstance(reply, dict) else []
            ips = [m["ip"] for m in members if isinstance(m, dict) and isinstance(m.get("ip"), str)]
            # keep the endpoint that answered first, then the registry's (or the tree's) order
            entry.endpoints = [ip] + [x for x in (registered or ips) if x != ip]
            entry.members, entry.tree, entry.k = members, reply.get("tree"), int(reply.get("k", 1))
            entry.refreshed, entry.error = time.monotonic(), None
            return entry
        entry.endpoints, entry.members = [], []
        entry.error = entry.error or "no seed node runs this cell"
        return entry

    async def refresh_all(self) -> None:
        await asyncio.gather(*(self.refresh(name) for name in self.cells))

    async def call(
        self, cell: str, type: str, payload: Any, *, key: SigningKey | None = None, timeout_s: float | None = None
    ) -> Served:
        """Send one signed request of a type to the first endpoint that answers."""
        port = dna_of(cell).recp_port
        return await self.use(
            cell,
            lambda peers, ip: peers.post(ip, port, "/recp", type, payload, signed_reply=True),
            key=key,
            timeout_s=timeout_s,
        )

    async def use(
        self,
        cell: str,
        call: Callable[[PeerClient, str], Awaitable[Any]],
        *,
        key: SigningKey | None = None,
        timeout_s: float | None = None,
        reply_s: float | None = None,
    ) -> Served:
        """``call(peers, ip)`` (a typed client's method) on the first endpoint that answers; fail over on silence.

        `reply_s`: how long one reply may take (signed by `key`); the whole call then waits at least that."""
        entry = self.cells[cell]
        if not entry.endpoints or time.monotonic() - entry.refreshed > 30:
            await self.refresh(cell)
        client = self.client_for(key, reply_s)
        timeout_s = max(timeout_s or self.timeout_s, reply_s or 0.0)
        tried: list[str] = []
        for ip in list(entry.endpoints):
            tried.append(ip)
            try:
                result = await asyncio.wait_for(call(client, ip), timeout_s)
            except (TimeoutError, PeerUnreachable):
                # move the silent endpoint to the back and try the next one
                entry.endpoints = [e for e in entry.endpoints if e != ip] + [ip]
                continue
            return Served(result, ip, tried)
        await self.refresh(cell)
        raise NoEndpoint(f"no {cell} node answered (tried {', '.join(tried) or 'none'})")
