"""DogeNodeClient: what the exchange, the conduit and wallets call on a dogeNodeCell.

Refusals arrive as `PeerRejected` with the bridge's reason word: ``no_node``
(no Dogecoin node configured), ``not_owner`` (watching another key's
address), ``tx_rejected`` (the node refused a transaction; the detail is the
node's own code and message), ``node_unavailable`` (the node did not answer,
after bounded retries), ``bad_address``, ``malformed``, ``not_found``.
"""

from __future__ import annotations

from typing import Any

from ..kit import CellClient


def _doc(reply: Any) -> dict[str, Any]:
    return reply if isinstance(reply, dict) else {}


class DogeNodeClient(CellClient):
    cell = "dogeNodeCell"

    async def watch(self, address: str, script: bytes | None = None) -> dict[str, Any]:
        """Watch the caller's own address (its key's P2PKH address), or an HTLC's P2SH address whose
        script names the caller's key: ``{"address", "watching": True, "new": bool}``."""
        body: dict[str, Any] = {"address": address}
        if script is not None:
            body["script"] = script.hex()
        return _doc(await self.call("doge.watch", body))

    async def deposits(self, address: str, limit: int = 100) -> list[dict[str, Any]]:
        """Deposits seen to a watched address, newest first: txid, vout, amount (koinu), height,
        confirmations, coinbase, spent_by, credited (once-only, with credited_ms)."""
        reply = _doc(await self.call("doge.deposits", {"address": address, "limit": limit}))
        items = reply.get("deposits")
        return items if isinstance(items, list) else []

    # the name the exchange calls; this cell has no tree broadcasts, so the kit's `broadcast(kind, data)`
    # is not needed on its client
    async def broadcast(self, raw_hex: str) -> str:  # type: ignore[override]
        """Hand a signed transaction to the node: its txid (or `PeerRejected` ``tx_rejected``)."""
        return str(_doc(await self.call("doge.broadcast", {"hex": raw_hex})).get("txid", ""))

    async def tx(self, txid: str) -> dict[str, Any]:
        """A transaction by id: ``{"txid", "hex", "confirmations", "blockhash"}``."""
        return _doc(await self.call("doge.tx", {"txid": txid}))

    async def height(self) -> int:
        """The node's best block height."""
        value = _doc(await self.call("doge.height", {})).get("height")
        return value if isinstance(value, int) else -1

    async def tip(self) -> dict[str, Any]:
        """The best block: ``{"height", "hash", "mediantime", "chain"}``. A refund time-locked to a Unix
        time is final once ``mediantime`` has passed it (BIP-113), not the wall clock."""
        return _doc(await self.call("doge.tip", {}))

    async def node_key(self) -> str:
        """The node key of the bridge that answers at this address (the key its replies are signed with)."""
        return (await self.peers.pin_for(self.ip, self.port, self.pubkey)).pubkey

    async def voucher(self, voucher: dict[str, Any], script: bytes) -> dict[str, Any]:
        """Hand the bridge a voucher signed by this caller's key (`ledger.bridgework.sign_voucher`) with the
        HTLC's redeem script: ``{"txid", "op", "kept": True, "new"}``."""
        return _doc(await self.call("doge.voucher", {"voucher": voucher, "script": script.hex()}))

    async def earn(self) -> dict[str, Any]:
        """Have the bridge claim its reward now: ``{"results": [{txid, party, op, state, reason}], "paid"}``."""
        return _doc(await self.call("doge.earn", {}))

    async def status(self) -> dict[str, Any]:
        """The bridge's own status: network, node, tip, scan position, watches, deposits, credits."""
        return _doc(await self.call("doge.status", {}))
