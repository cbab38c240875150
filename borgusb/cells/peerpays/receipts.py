"""``pay.verify``: a node's other cells ask their own peerPaysCell whether a payment is confirmed.

A cell that sells a priced use (the agent cell's compute: `ledger.credit`) is handed the payer's
certificate. Only a peerPaysCell knows the member view, so it checks the certificate here against
the payer's holder set (`check_certificate`: distinct holders of that set, a quorum, every signature)
and answers the checked transaction. It does not credit anything: the asking cell's book does, once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ... import envelope
from ...ledger.certificate import HolderSets, certificate_from_dict, check_certificate
from ...ledger.errors import LedgerError
from ..kit import RequestError, receptor
from ..kit.holdercell import HolderCell


class ReceiptReceptors(HolderCell):
    """Certificates checked for the node's other cells (see the module docstring)."""

    if TYPE_CHECKING:

        @property
        def sets(self) -> HolderSets: ...
        def _holders(self, account: str) -> tuple[tuple[str, ...], int]: ...
        def _refuse(self, exc: LedgerError) -> RequestError: ...

    def verify_local(self, doc: Any) -> dict[str, Any]:
        """The transaction of a certificate a quorum of its payer's holders signed, in this view or one of the
        last handover window (the certificate names its set)."""
        try:
            cert = certificate_from_dict(doc)
            self._holders(cert.tx.account)  # too few members: refused before any check
            holders, quorum = self.sets.known(cert.tx.account, cert.set_id)
            check_certificate(cert, holders, quorum)
        except LedgerError as exc:
            raise self._refuse(exc) from None
        self.counters["pay_receipts_verified"] += 1
        return {"id": cert.tx.id, "tx": cert.tx.to_dict(), "signers": len(cert.sigs), "quorum": quorum}

    @receptor("pay.verify")
    async def _r_verify(self, env: envelope.Envelope) -> Any:
        return self.verify_local(env.payload.get("cert") if isinstance(env.payload, dict) else None)
