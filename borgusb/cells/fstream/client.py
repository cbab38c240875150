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
