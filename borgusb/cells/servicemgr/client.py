"""ServiceMgrClient: announce, withdraw and list services; RegistryLink, what the node injects into a cell."""

from __future__ import annotations

from typing import Any

from ..kit import CellClient


class ServiceMgrClient(CellClient):
    cell = "serviceMgrCell"

    async def announce(self, entry: dict[str, Any]) -> None:
        await self.send("svc.announce", entry)

    async def withdraw(self, entry: dict[str, Any]) -> None:
        await self.send("svc.withdraw", entry)

    async def services(self, cell: str | None = None) -> list[dict[str, Any]]:
        """Every live service the registry knows (of one cell type when named)."""
        reply = await self.call("svc.list", {"cell": cell} if cell else {})
        found = reply.get("services") if isinstance(reply, dict) else None
        return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []
