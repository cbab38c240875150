"""peerPaysCell's reads: one holder's view of an account, and the quorum-agreed balance and history.

* **A holder's view**: ``pay.account {account}`` answers this holder's balance, seq, head and recent
  history of an account it holds (``not_holder`` otherwise).
* **The agreed view**: ``pay.balance`` and ``pay.history`` ask every holder of the account in parallel
  and answer only what a quorum agrees on (`ledger.balance.read_balance`); holders that disagree are
  reported (``disagreement``, with what each said), never guessed between.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ... import envelope
from ...ledger.balance import BalanceAnswer, Disagreement, read_balance
from ...ledger.certificate import certificate_from_dict
from ...ledger.durable import DurableHolder
from ..kit import RequestError, receptor
from ..kit.holdercell import HolderCell

HISTORY_LIMIT = 50


class AccountReads(HolderCell):
    """The read receptors; `PeerPaysCell` derives from this class and supplies the holder, the holder
    sets and the requests to other holders (declared here for the type checker only)."""

    if TYPE_CHECKING:
        ledger: DurableHolder

        def _holders(self, account: str) -> tuple[tuple[str, ...], int]: ...
        @staticmethod
        def _account(payload: Any) -> str: ...
        async def _bounded(self, holder: str, type: str, payload: dict[str, Any]) -> dict[str, Any] | str: ...
        def know(self, *keys: str) -> None: ...
        def htlc_history(self, account: str, limit: int) -> list[dict[str, Any]]: ...

    def account_local(self, account: str) -> dict[str, Any]:
        self._holders(account)
        h = self.ledger.holder
        if not h.holds(account):
            self.counters["pay_refused:not_holder"] += 1
            raise RequestError("not_holder", f"{h.pubkey[:16]} does not hold {account[:16]}", 403)
        a = h.answer(account)
        return {
            "holder": h.pubkey,
            "account": account,
            "balance": a.balance,
            "seq": a.seq,
            "head": a.head,
            "available": h.available(account),
            "history": self._history(account),
        }

    @receptor("pay.account")
    async def _r_account(self, env: envelope.Envelope) -> Any:
        return self.account_local(self._account(env.payload))

    def _history(self, account: str) -> list[dict[str, Any]]:
        """The account's latest entries (sent) and credits (received), newest first."""
        out: list[dict[str, Any]] = []
        chain = self.ledger.holder.state.chains.get(account)
        if chain is not None:
            for e in chain.entries[-HISTORY_LIMIT:]:
                t = e.tx
                out.append(
                    {
                        "dir": "out",
                        "id": t.id,
                        "seq": t.seq,
                        "peer": t.to,
                        "amount": t.amount,
                        "kind": t.kind,
                        "ts": t.ts,
                        "confirmed": e.cert is not None or t.seq <= chain.confirmed,
                    }
                )
        rows = self.ledger.store.db.execute(
            "SELECT cert FROM credits WHERE account = ? ORDER BY rowid DESC LIMIT ?", (account, HISTORY_LIMIT)
        ).fetchall()
        for (cert_json,) in rows:
            t = certificate_from_dict(json.loads(cert_json), verify_tx=False).tx
            out.append(
                {
                    "dir": "in",
                    "id": t.id,
                    "seq": t.seq,
                    "peer": t.account,
                    "amount": t.amount,
                    "kind": t.kind,
                    "ts": t.ts,
                    "confirmed": True,
                }
            )
        out += self.htlc_history(account, HISTORY_LIMIT)
        out.sort(key=lambda x: (-x["ts"], x["id"]))
        return out[:HISTORY_LIMIT]

    async def _answers(self, account: str, holders: Iterable[str]) -> dict[str, dict[str, Any] | str]:
        async def one(holder: str) -> dict[str, Any] | str:
            if holder == self.key.public_key_hex:
                try:
                    return self.account_local(account)
                except RequestError as exc:
                    return exc.reason
            return await self._bounded(holder, "pay.account", {"account": account})

        hs = list(holders)
        return dict(zip(hs, await asyncio.gather(*(one(h) for h in hs)), strict=True))

    @staticmethod
    def _answer(holder: str, account: str, doc: dict[str, Any] | str) -> BalanceAnswer | None:
        if not isinstance(doc, dict):
            return None
        bal, seq, head = doc.get("balance"), doc.get("seq"), doc.get("head")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (bal, seq)) or not isinstance(head, str):
            return None
        if doc.get("account") != account:
            return None
        return BalanceAnswer(holder, account, bal, seq, head)  # type: ignore[arg-type]

    async def _read(self, account: str) -> tuple[Any, dict[str, dict[str, Any] | str], int]:
        holders, q = self._holders(account)
        docs = await self._answers(account, holders)
        answers = [a for h, d in docs.items() if (a := self._answer(h, account, d)) is not None]
        return read_balance(account, answers, holders, q), docs, q

    @receptor("pay.balance")
    async def _r_balance(self, env: envelope.Envelope) -> Any:
        account = self._account(env.payload)
        self.know(account)
        res, docs, q = await self._read(account)
        if isinstance(res, Disagreement):
            self.counters["pay_disagreements"] += 1
            said = ", ".join(
                f"{h[:8]}: {d['balance']}/{d['seq']}" if isinstance(d, dict) else f"{h[:8]}: {d}"
                for h, d in sorted(docs.items())
            )
            raise RequestError("disagreement", f"{res.why}, {q} needed; {said}", 503)
        return {
            "account": account,
            "balance": res.balance,
            "seq": res.seq,
            "head": res.head,
            "holders": list(res.holders),
            "quorum": q,
        }

    @receptor("pay.history")
    async def _r_history(self, env: envelope.Envelope) -> Any:
        """The account's recent history, from a holder whose answer the quorum agrees with."""
        account = self._account(env.payload)
        self.know(account)
        res, docs, q = await self._read(account)
        agreed = None if isinstance(res, Disagreement) else res
        candidates = [
            d for h, d in sorted(docs.items()) if isinstance(d, dict) and (agreed is None or h in agreed.holders)
        ]
        if not candidates:
            raise RequestError("disagreement", "no holder of this account answered", 503)
        best = max(candidates, key=lambda d: len(d.get("history") or []))
        return {
            "account": account,
            "balance": agreed.balance if agreed else None,
            "seq": agreed.seq if agreed else None,
            "agreed": agreed is not None,
            "from": best.get("holder"),
            "history": best.get("history") if isinstance(best.get("history"), list) else [],
        }
