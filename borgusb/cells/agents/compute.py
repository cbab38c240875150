"""What the agent cell's thinking costs the people it thinks for: the ``compute`` price, prepaid.

A session (``agent.session``, paid by the agent's owner) and a chat answer (``agent.chat``, paid by
the asker) spend the brain's thinking time, the ``compute`` quantity of `ledger.rules` (milliseconds;
the brain thinks one question at a time, so its time per question is the machine's). Each key
thinks `free_ms` a day for nothing here (all keys together at most `pool_ms`: keys cost nothing to
make); beyond it the time is paid ahead to this node's account
(`ledger.credit`): the person pays with a transfer whose ref is ``credit_ref("compute")`` and
hands this cell the certificate (``agent.credit``; ``borgusb pay credit`` does both), which the
node's own peerPaysCell checks (``pay.verify``). The node's own key (its System Monitor) is never
charged. The book is kept in ``credit.json`` beside the roster, so a restart forgets no payment.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ...keystore import atomic_write
from ...ledger.credit import CreditBook, CreditRefused
from ...ledger.errors import LedgerError
from ...ledger.tx import check_tx
from ...net.peer import PeerError, PeerRejected
from ..kit import RequestError

log = logging.getLogger("borgusb.agents")

RULE = "compute"
REFUSAL_STATUS = {"payment_required": 402, "again": 409, "full": 507}


class MeteredBrain:
    """The brain as a session sees it, adding up each answer's thinking time (also of a session that
    fails partway: what was thought is charged)."""

    def __init__(self, brain: Any) -> None:
        self.brain, self.ms = brain, 0

    async def think(
        self, messages: list[dict[str, str]], allowed: tuple[str, ...], agents: tuple[str, ...], max_tokens: int
    ) -> Any:
        thought = await self.brain.think(messages, allowed, agents, max_tokens)
        self.ms += max(0, int(thought.ms))
        return thought


class ComputeCredit:
    """The cell's compute book, paid in through `verify` (the node's ``pay.verify``) and kept at `path`."""

    def __init__(
        self,
        path: Path | None,
        node: str,
        free_ms: int,
        pool_ms: int,
        verify: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
        counters: Counter[str],
    ) -> None:
        self.path, self.node, self.verify, self.counters = path, node, verify, counters
        self.book = CreditBook(RULE, node, free_ms, pool_ms)
        if path is not None and path.is_file():
            try:
                dropped = self.book.load(json.loads(path.read_text()))
            except (OSError, ValueError) as exc:
                dropped = 1
                log.warning("agents: the compute book could not be read: %s", exc)
            self.counters["agent_credit_dropped"] += dropped

    def _refuse(self, exc: CreditRefused) -> RequestError:
        self.counters[f"agent_refused:{exc.reason}"] += 1
        return RequestError(exc.reason, exc.detail, REFUSAL_STATUS.get(exc.reason, 400))

    def may_start(self, key: str, now_ms: int) -> None:
        if key != self.node:
            try:
                self.book.may_start(key, now_ms)
            except CreditRefused as exc:
                raise self._refuse(exc) from None

    def charge(self, key: str, ms: int, now_ms: int) -> int:
        """Charge a finished use; the units it cost (0 for the node's own key)."""
        if key == self.node or ms <= 0:
            return 0
        try:
            units = self.book.charge(key, ms, now_ms)
        except CreditRefused:  # the book filled with paying keys while this use ran: served, not billed
            self.counters["agent_compute_unbilled"] += 1
            return 0
        self.counters["agent_compute_ms"] += ms
        self._save()
        return units

    async def pay_in(self, cert: Any, now_ms: int) -> dict[str, Any]:
        """Credit a payment after the node's peerPaysCell confirmed its certificate. What this book would
        never credit (another payee or ref, stale, credited already) is refused first, unverified."""
        try:
            tx = check_tx(cert.get("tx") if isinstance(cert, dict) else None)
            self.book.precheck(tx, now_ms)
        except LedgerError as exc:
            self.counters["agent_refused:malformed"] += 1
            raise RequestError("malformed", f"cert is the payment's certificate: {exc}") from None
        except CreditRefused as exc:
            raise self._refuse(exc) from None
        assert isinstance(cert, dict)
        try:
            checked = await self.verify(cert)
        except PeerRejected as exc:
            self.counters[f"agent_refused:{exc.reason}"] += 1
            status = 503 if exc.status >= 500 else 402  # the ledger could not tell, or said it is not confirmed
            raise RequestError(exc.reason, f"the payment is not confirmed: {exc.detail}", status) from None
        except PeerError as exc:
            self.counters["agent_refused:ledger_unreachable"] += 1
            raise RequestError("ledger_unreachable", f"this node's peerPaysCell did not answer: {exc}", 503) from None
        if checked.get("id") != tx.id:
            self.counters["agent_refused:bad_reply"] += 1
            raise RequestError("bad_reply", "the ledger answered for another transaction", 502)
        try:
            units = self.book.pay_in(tx, now_ms)
        except CreditRefused as exc:
            raise self._refuse(exc) from None
        self.counters["agent_credit_paid_in"] += 1
        self._save()
        return {"credited": units, "id": tx.id, "usage": self.book.usage(tx.account, now_ms)}

    def usage(self, key: str, now_ms: int) -> dict[str, Any]:
        doc = self.book.usage(key, now_ms)
        doc["exempt"] = key == self.node
        return doc

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            atomic_write(self.path, json.dumps(self.book.to_dict(), sort_keys=True).encode())
        except OSError as exc:
            self.counters["agent_credit_unsaved"] += 1
            log.warning("agents: the compute book could not be written: %s", exc)
