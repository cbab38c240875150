"""PayClient: what the CLI, the conduit and other cells call on a peerPaysCell.

A client talks to its *local* cell with `submit` (``pay.send``), `balance` and `history`; the
cell does the holder work (offer, certify, deliver, quorum reads). `accept`,
`confirm` and `account` are the holder-to-holder requests, one holder at a
time (pass ``pubkey=`` the holder's node key, so only that key's reply counts).
"""

from __future__ import annotations

from typing import Any

from ...ledger.tx import Tx
from ..kit import CellClient


def _doc(reply: Any) -> dict[str, Any]:
    return reply if isinstance(reply, dict) else {}


class PayClient(CellClient):
    cell = "peerPaysCell"

    # ------------------------------------------------------------ what a wallet calls on its local cell

    async def submit(self, tx: Tx | dict[str, Any]) -> dict[str, Any]:
        """Have the cell confirm a payer-signed transaction: ``{"id", "certificate": {...}, "delivered"}``."""
        return _doc(await self.call("pay.send", {"tx": tx.to_dict() if isinstance(tx, Tx) else tx}))

    async def balance(self, account: str) -> dict[str, Any]:
        """The quorum-agreed ``{"account", "balance", "seq", "head", "holders"}`` (else `PeerRejected`
        with reason ``disagreement``)."""
        return _doc(await self.call("pay.balance", {"account": account}))

    async def history(self, account: str) -> dict[str, Any]:
        """The account's recent history as its first holder that answers knows it."""
        return _doc(await self.call("pay.history", {"account": account}))

    # ------------------------------------------------------------ holder to holder

    async def accept(self, tx: Tx | dict[str, Any], view: str = "") -> dict[str, Any]:
        """Offer a transaction to one holder: its signed acceptance (``{"acceptance": {...}}``)."""
        body = tx.to_dict() if isinstance(tx, Tx) else tx
        return _doc(await self.call("pay.accept", {"tx": body, "view": view}))

    async def confirm(self, cert: dict[str, Any]) -> dict[str, Any]:
        """Deliver a certificate to one holder of the payer or the payee."""
        return _doc(await self.call("pay.confirm", {"cert": cert}))

    async def account(self, account: str) -> dict[str, Any]:
        """One holder's view of an account: balance, seq, head, available, recent history."""
        return _doc(await self.call("pay.account", {"account": account}))
