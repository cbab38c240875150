"""ServiceMgrClient: announce, withdraw and list services; what the node injects into a cell as its registry link."""

from __future__ import annotations

from typing import Any

from ... import envelope
from ..kit import CellClient
from .registry import STATEMENT


class ServiceMgrClient(CellClient):
    cell = "serviceMgrCell"

    async def announce(self, entry: dict[str, Any]) -> None:
        """Tell the serviceMgr on this machine that the calling cell is alive.

        The entry goes as the cell's own signed statement (addressed to every serviceMgr, which
        each verifies), so no serviceMgr can list, alter or forge it for a cell that did not sign."""
        peers = self.peers
        statement = envelope.sign(
            peers.key, STATEMENT, entry, peers.clock, ip=peers.ip, port=peers.port, to=envelope.everyone(self.port)
        )
        await self.send("svc.announce", {"entry": statement})

    async def withdraw(self, entry: dict[str, Any]) -> None:
        """The calling cell stops: its entry (cell, ip) goes at once."""
        await self.send("svc.withdraw", {"cell": entry.get("cell"), "ip": entry.get("ip")})

    async def services(self, cell: str | None = None) -> list[dict[str, Any]]:
        """Every live service the registry knows (of one cell type when named)."""
        reply = await self.call("svc.list", {"cell": cell} if cell else {})
        found = reply.get("services") if isinstance(reply, dict) else None
        return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []
