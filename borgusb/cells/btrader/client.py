"""BtraderClient: what the CLI, the conduit and other cells call on a btraderOrganCell.

`place` and `cancel` carry an owner-signed order or cancel (`borgusb.exchange.order`): the
caller's envelope key need not be the owner's, the order's own signature is what counts.
`digest` and `fetch` are the replicas' anti-entropy requests.
"""

from __future__ import annotations

from typing import Any

from ...exchange.order import Cancel, Order
from ..kit import CellClient


def _doc(reply: Any) -> dict[str, Any]:
    return reply if isinstance(reply, dict) else {}


class BtraderClient(CellClient):
    cell = "btraderOrganCell"

    async def place(self, order: Order | dict[str, Any]) -> dict[str, Any]:
        """``{"id", "new"}``; a refusal is `PeerRejected` with the book's reason word."""
        return _doc(await self.call("bt.place", {"order": order.to_dict() if isinstance(order, Order) else order}))

    async def cancel(self, cancel: Cancel | dict[str, Any]) -> dict[str, Any]:
        return _doc(
            await self.call("bt.cancel", {"cancel": cancel.to_dict() if isinstance(cancel, Cancel) else cancel})
        )

    async def book(self) -> dict[str, Any]:
        """``{"bids": [...], "asks": [...], "pending", "horizon"}``: resting orders with what is left."""
        return _doc(await self.call("bt.book", {}))

    async def fills(self, owner: str = "") -> dict[str, Any]:
        """``{"fills": [{..., "final"}]}``, all or only those `owner` bought or sold in."""
        return _doc(await self.call("bt.fills", {"owner": owner}))

    async def swaps(self, owner: str) -> dict[str, Any]:
        """``{"swaps": [{"fill", "role", "state", ...}]}``: the settlement of each of `owner`'s fills."""
        return _doc(await self.call("bt.swaps", {"owner": owner}))

    async def note(self, fill: str, **data: Any) -> str:
        """Tell the fill's other party, through every replica, where this party's lock is (``lock=`` the
        Shell lock's id, ``doge=`` the HTLC's outpoint and locktime); signed by the caller, a party."""
        return await self.broadcast("bt.note", {"fill": fill, **data})

    async def notes(self, fill: str) -> dict[str, dict[str, Any]]:
        """The notes this replica holds for a fill, by the party's key."""
        got = _doc(await self.call("bt.notes", {"fill": fill})).get("notes")
        return got if isinstance(got, dict) else {}

    async def digest(self) -> dict[str, Any]:
        """``{"ids": [...], "horizon"}``: the ids of the events inside this replica's settle window."""
        return _doc(await self.call("bt.digest", {}))

    async def fetch(self, ids: list[str]) -> dict[str, Any]:
        """``{"events": [...]}``: the events of those ids this replica has."""
        return _doc(await self.call("bt.fetch", {"ids": ids}))
