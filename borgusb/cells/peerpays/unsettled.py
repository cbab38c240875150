"""peerPaysCell's answer to a wallet that lost its unconfirmed transaction: what the holders voted for.

A transaction that gathered votes but no quorum (holders down) must be sent again, the same bytes,
before its payer signs another for that seq: a second one there splits the holders' votes, and a split
that no skip can prove (3 against 2 at R = 5, `skip.py`) stops the account for good. The wallet keeps
it (the CLI in its pay directory, the conduit in memory), but a conduit restarts, a stick moves to
another computer, a cache is cleared. Each holder that voted keeps it too, payer-signed, in its chain.

* **Asked**: ``pay.vote {account, seq}`` (skipping.py, `vote_and_tx`) answers the holder's acceptance
  there and, when the holder has it, the transaction voted for (``tx``).
* **Gathered**: ``pay.unsettled {account}`` reads the quorum-agreed head (``disagreement`` otherwise),
  asks every holder of the account for its vote at the next seq, and answers the distinct transactions
  found, most votes first (``{"account", "seq", "head", "txs": [{"tx", "votes"}]}``). A vote counts only
  with its holder's signature, for a transaction whose payer signed it, after that head.
* **Used**: a wallet with no copy of its own sends the first such transaction again before it signs
  anything new (`client.PayClient.unsettled_tx`, which checks it as the wallet checks its own: the
  payer's signature, the next seq, the head as prev). An entry cell that lies can only withhold one.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ... import envelope
from ...ledger.balance import Disagreement
from ...ledger.certificate import Acceptance
from ...ledger.tx import Tx
from ..kit import RequestError, receptor
from ..kit.holdercell import HolderCell


class UnsettledReceptors(HolderCell):
    """The transactions an account's holders voted for after its head (see the module docstring)."""

    if TYPE_CHECKING:

        def _holders(self, account: str) -> tuple[tuple[str, ...], int]: ...
        @staticmethod
        def _account(payload: Any) -> str: ...
        async def _read(self, account: str) -> tuple[Any, dict[str, dict[str, Any] | str], int]: ...
        async def vote_and_tx(self, holder: str, account: str, seq: int) -> tuple[Acceptance, Tx | None] | None: ...

    @receptor("pay.unsettled")
    async def _r_unsettled(self, env: envelope.Envelope) -> Any:
        """The payer-signed transactions the account's holders voted for after its agreed head."""
        account = self._account(env.payload)
        res, _, _ = await self._read(account)
        if isinstance(res, Disagreement):
            raise RequestError("disagreement", f"the holders agree on no head to look past ({res.why})", 503)
        seq = res.seq + 1
        holders, _ = self._holders(account)
        voted = await asyncio.gather(*(self.vote_and_tx(h, account, seq) for h in holders))
        found: dict[str, tuple[Tx, int]] = {}
        for tx in (v[1] for v in voted if v is not None):
            if tx is not None and tx.prev == res.head:
                found[tx.id] = (tx, found[tx.id][1] + 1 if tx.id in found else 1)
        ranked = sorted(found.values(), key=lambda pair: (-pair[1], pair[0].id))
        if ranked:
            self.counters["pay_unsettled_found"] += 1
        return {
            "account": account,
            "seq": seq,
            "head": res.head,
            "txs": [{"tx": tx.to_dict(), "votes": n} for tx, n in ranked],
        }
