"""FStreamClient: what the CLI and the conduit call on an fStreamCell's receptor (its ranges are plain HTTP)."""

from __future__ import annotations

from typing import Any

from ..kit import CellClient


def _doc(reply: Any) -> dict[str, Any]:
    return reply if isinstance(reply, dict) else {}


class FStreamClient(CellClient):
    cell = "fStreamCell"

    async def usage(self) -> dict[str, Any]:
        """The caller's streamed bytes and credit on this cell: ``{"free", "free_left", "paid", "charged",
        "balance", "payee", "ref", "exempt"}`` (bytes and units; pay ``payee`` with ``ref`` to add credit)."""
        return _doc(await self.call("fstream.usage", {}))

    async def credit(self, cert: dict[str, Any]) -> dict[str, Any]:
        """Hand the cell a payment's certificate: ``{"credited", "id", "usage"}``."""
        return _doc(await self.call("fstream.credit", {"cert": cert}))

    async def read(self, receipt: dict[str, Any]) -> dict[str, Any]:
        """Hand in the caller's read receipt of a public map (`ledger.contentwork.sign_read`):
        ``{"kept", "map", "day"}`` (``kept`` False: this cell had it already)."""
        return _doc(await self.call("fstream.read", {"read": receipt}))

    async def reads(self, day: int) -> list[dict[str, Any]]:
        """The caller's read receipts of `day` (UTC day number) as a map owner, as this cell keeps them."""
        found = _doc(await self.call("fstream.reads", {"day": day})).get("reads")
        return [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []
