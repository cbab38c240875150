"""PayClient: what the CLI, the conduit and other cells call on a peerPaysCell.

A client talks to its *local* cell with `submit` (``pay.send``), `balance`, `history` and
`unsettled_tx`, and for hash-time locks `lock`, `claim`, `refund` and `lock_status`; the cell does
the holder work (offer, certify, deliver, quorum reads). `accept`, `confirm`, `account`, `resolve`, `settle` and
`lock_state` are the holder-to-holder requests, one holder at a time (pass ``pubkey=`` the
holder's node key, so only that key's reply counts).
"""

from __future__ import annotations

from typing import Any

from ...ledger.directory import proves
from ...ledger.errors import LedgerError
from ...ledger.htlc import Resolution
from ...ledger.tx import Tx, check_tx
from ...net.peer import PeerRejected
from ..kit import CellClient

MAX_UNSETTLED = 8  # transactions of one seq looked at: an account has at most R holders voting there


def _doc(reply: Any) -> dict[str, Any]:
    return reply if isinstance(reply, dict) else {}


class PayClient(CellClient):
    cell = "peerPaysCell"

    # ------------------------------------------------------------ what a wallet calls on its local cell

    async def submit(self, tx: Tx | dict[str, Any], work: dict[str, Any] | None = None) -> dict[str, Any]:
        """Have the cell confirm a payer-signed transaction: ``{"id", "certificate": {...}, "delivered"}``.
        A reward claim carries its work record (`ledger.work`), which every reserve holder checks."""
        payload: dict[str, Any] = {"tx": tx.to_dict() if isinstance(tx, Tx) else tx}
        if work is not None:
            payload["work"] = work
        return _doc(await self.call("pay.send", payload))

    async def balance(self, account: str) -> dict[str, Any]:
        """The quorum-agreed ``{"account", "balance", "seq", "head", "holders"}`` (else `PeerRejected`
        with reason ``disagreement``)."""
        return _doc(await self.call("pay.balance", {"account": account}))

    async def unsettled_tx(self, account: str) -> tuple[Tx | None, dict[str, Any]]:
        """The transaction of `account`'s that its holders voted for after its agreed head, the most voted
        (unsettled.py), or None, and that head (``{"seq", "head"}``: what a new transaction follows when
        there is none). The transaction is sent again before the wallet signs another for that seq; it is
        checked here as the wallet's own copy would be (payer-signed, the next seq, the head as prev)."""
        doc = _doc(await self.call("pay.unsettled", {"account": account}))
        txs, seq, head = doc.get("txs"), doc.get("seq"), doc.get("head")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1 or not isinstance(head, str):
            raise PeerRejected(502, "bad_reply", "the node answered no head for the account")
        for item in txs[:MAX_UNSETTLED] if isinstance(txs, list) else []:
            try:
                tx = check_tx(item.get("tx") if isinstance(item, dict) else None)
            except LedgerError:
                continue
            if tx.account == account and tx.seq == seq and tx.prev == head:
                return tx, {"seq": seq - 1, "head": head}
        return None, {"seq": seq - 1, "head": head}

    async def history(self, account: str) -> dict[str, Any]:
        """The account's recent history as its first holder that answers knows it."""
        return _doc(await self.call("pay.history", {"account": account}))

    async def whois(self, h160: str) -> str:
        """The account key behind a Doge address's HASH160 (`ledger.directory.address_hash`), checked
        here against the hash (`PeerRejected` ``unknown_account`` when no node has seen one)."""
        doc = _doc(await self.call("pay.whois", {"h160": h160}))
        key = doc.get("key")
        if not proves(key, h160):
            raise PeerRejected(502, "bad_reply", "the node answered a key that is not behind that address")
        assert isinstance(key, str)
        return key

    async def verify(self, cert: dict[str, Any]) -> dict[str, Any]:
        """Whether a quorum of its payer's holders signed this certificate, checked by the cell in its view:
        ``{"id", "tx", "signers", "quorum"}`` (else `PeerRejected` with the reason)."""
        return _doc(await self.call("pay.verify", {"cert": cert}))

    async def lock(self, tx: Tx | dict[str, Any]) -> dict[str, Any]:
        """Have the cell confirm a payer-signed ``htlc-lock`` (`ledger.sign_lock`): its units leave the payer
        and wait for a claim or a refund. The reply is `submit`'s."""
        return await self.submit(tx)

    async def claim(self, res: Resolution | dict[str, Any]) -> dict[str, Any]:
        """Have the lock's holders certify a claim (`ledger.sign_claim`) and credit the claimant:
        ``{"id", "lock", "beneficiary", "amount", "certificate", "cert", "delivered", "of", "refused"}``."""
        return _doc(await self.call("pay.claim", {"resolution": _res(res)}))

    async def refund(self, res: Resolution | dict[str, Any]) -> dict[str, Any]:
        """Have the lock's holders certify a refund (`ledger.sign_refund`) once it expired: as `claim`."""
        return _doc(await self.call("pay.refund", {"resolution": _res(res)}))

    async def lock_status(self, account: str, lock_id: str) -> dict[str, Any]:
        """A lock of `account` as a quorum of its holders says: ``{"state": "open" | "claimed" | "refunded" |
        "unknown", "preimage", "resolution", "cert", ...}`` (else `PeerRejected` ``disagreement``)."""
        return _doc(await self.call("pay.lock_status", {"account": account, "lock": lock_id}))

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

    async def resolve(self, res: Resolution | dict[str, Any], view: str = "") -> dict[str, Any]:
        """Offer a claim or refund to one of the lock's holders: its signed vote (``{"vote": {...}}``)."""
        return _doc(await self.call("pay.resolve", {"resolution": _res(res), "view": view}))

    async def settle(self, cert: dict[str, Any]) -> dict[str, Any]:
        """Deliver a resolution certificate to one holder of the lock's payer or of its beneficiary."""
        return _doc(await self.call("pay.settle", {"cert": cert}))

    async def lock_state(self, account: str, lock_id: str) -> dict[str, Any]:
        """One holder's view of a lock."""
        return _doc(await self.call("pay.lock", {"account": account, "lock": lock_id}))


def _res(res: Resolution | dict[str, Any]) -> dict[str, Any]:
    return res.to_dict() if isinstance(res, Resolution) else res
