"""FtreeClient: the file manager cell's receptor, typed."""

from __future__ import annotations

from typing import Any

from ...files.root import RootPointer, check_root
from ..kit import CellClient


class FtreeClient(CellClient):
    cell = "ftreeFileMgrCell"

    async def publish_root(self, ptr: RootPointer) -> dict[str, Any]:
        """Have the cell deliver `ptr` to the owner's holders: {"holders": n, "kept": m, "refused": {...}}."""
        reply = await self.call("ft.root.put", {"pointer": ptr.to_dict()})
        return reply if isinstance(reply, dict) else {}

    async def store_root(self, ptr: RootPointer) -> RootPointer:
        """Offer `ptr` to this holder only; the pointer it keeps afterwards."""
        reply = await self.call("ft.root.store", {"pointer": ptr.to_dict()})
        return check_root(reply["pointer"])

    async def held_root(self, owner: str) -> RootPointer | None:
        """What this holder keeps for `owner` (verified here, whoever answered)."""
        reply = await self.call("ft.root.held", {"owner": owner})
        return check_root(reply["pointer"]) if reply.get("pointer") is not None else None

    async def find_root(self, owner: str) -> RootPointer | None:
        """The newest pointer of `owner` among its holders, as this cell asked them (verified here)."""
        reply = await self.call("ft.root.get", {"owner": owner})
        return check_root(reply["pointer"]) if reply.get("pointer") is not None else None
