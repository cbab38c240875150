"""The memory cells as an agent reaches them: through this node's peerMemoryCell.

A put that no holder kept, or a memory cell that does not answer, is a `Refused` the session
records; search results come back already checked against their owners' signatures (`MemoryClient`).
"""

from __future__ import annotations

from ...agents.session import Refused
from ...memory.query import Query, Result
from ...memory.record import Memory
from ...net.peer import PeerClient, PeerError, PeerRejected
from ..memory.client import MemoryClient


class NetworkMemory:
    def __init__(self, peers: PeerClient, ip: str) -> None:
        self.client = MemoryClient(peers, ip)

    async def put(self, m: Memory) -> str:
        try:
            reply = await self.client.put(m)
        except PeerRejected as exc:
            raise Refused(exc.reason, str(exc)) from None
        except PeerError as exc:
            raise Refused("memory_unreachable", f"no memory cell answered: {exc}") from None
        stored = reply.get("stored")
        if not isinstance(stored, int) or stored < 1:
            raise Refused("not_stored", "no memory holder kept it")
        return m.id

    async def search(self, q: Query) -> list[Result]:
        try:
            return (await self.client.search(q)).results
        except PeerRejected as exc:
            raise Refused(exc.reason, str(exc)) from None
        except PeerError as exc:
            raise Refused("memory_unreachable", f"no memory cell answered: {exc}") from None

    async def get(self, ids: list[str]) -> list[Memory]:
        try:
            return await self.client.get(ids)
        except PeerRejected as exc:
            raise Refused(exc.reason, str(exc)) from None
        except PeerError as exc:
            raise Refused("memory_unreachable", f"no memory cell answered: {exc}") from None
