"""A selling cell's prepaid credit for one price (`ledger.credit`), kept on disk and paid in through
the node's own ledger.

The agent cell sells thinking time (``compute``) and the fStream cell streamed bytes (``stream``)
the same way: each key uses `free` of the quantity a UTC day for nothing (all keys together at most
`pool`), and beyond it pays this node ahead with a transfer whose ref is ``credit_ref(rule)``. The
person hands the cell the transfer's certificate; the cell's cheap checks (payee, ref, age, credited
already) run first, then the node's own peerPaysCell checks the certificate (``pay.verify``: a quorum
of the payer's holders signed it) and must answer for that same transaction, and only then is it
credited, once. The node's own key is never charged.

The book is kept in a JSON file: a payment is written at once (a restart forgets none); charges are
written at most every `save_every_s` (a stream charges on every range: the file is not rewritten per
request) and on `flush`, so a crash forgets at most that long of charges, in the payer's favour.
"""

from __future__ import annotations

import json
import logging
import time
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

log = logging.getLogger("borgusb.prepaid")

REFUSAL_STATUS = {"payment_required": 402, "again": 409, "full": 507}


class Prepaid:
    """One rule's book at one cell, paid in through `verify` (the node's ``pay.verify``), kept at `path`.
    Counters are named ``<prefix>_refused:<reason>``, ``<prefix>_credit_paid_in`` and so on."""

    def __init__(
        self,
        rule: str,
        prefix: str,
        path: Path | None,
        node: str,
        free: int,
        pool: int,
        verify: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
        counters: Counter[str],
        *,
        save_every_s: float = 0.0,
        describe: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self.rule, self.prefix, self.path, self.node = rule, prefix, path, node
        self.verify, self.counters, self.save_every_s = verify, counters, save_every_s
        self.describe = describe  # what the cell adds to a key's usage (a holder: the bytes it holds)
        self.book = CreditBook(rule, node, free, pool)
        self._dirty, self._saved_at = False, time.monotonic()
        if path is not None and path.is_file():
            try:
                dropped = self.book.load(json.loads(path.read_text()))
            except (OSError, ValueError) as exc:
                dropped = 1
                log.warning("%s: the %s book could not be read: %s", prefix, rule, exc)
            self.counters[f"{prefix}_credit_dropped"] += dropped

    def _refuse(self, exc: CreditRefused) -> RequestError:
        self.counters[f"{self.prefix}_refused:{exc.reason}"] += 1
        return RequestError(exc.reason, exc.detail, REFUSAL_STATUS.get(exc.reason, 400))

    def may_start(self, key: str, now_ms: int) -> None:
        """Nothing when `key` may start a use now, else a `RequestError` (402 ``payment_required``)."""
        if key != self.node:
            try:
                self.book.may_start(key, now_ms)
            except CreditRefused as exc:
                raise self._refuse(exc) from None

    def allows(self, key: str, now_ms: int) -> bool:
        """Whether `key` may go on using now (`may_start`'s rule, not counted: the caller counts its cut)."""
        if key == self.node:
            return True
        try:
            self.book.may_start(key, now_ms)
        except CreditRefused:
            return False
        return True

    def charge(self, key: str, quantity: int, now_ms: int) -> int:
        """Charge a finished use; the units it cost (0 for the node's own key)."""
        if key == self.node or quantity <= 0:
            return 0
        try:
            units = self.book.charge(key, quantity, now_ms)
        except CreditRefused:  # the book filled with paying keys while this use ran: served, not billed
            self.counters[f"{self.prefix}_{self.rule}_unbilled"] += 1
            return 0
        self.counters[f"{self.prefix}_{self.rule}_used"] += quantity
        self._dirty = True
        if time.monotonic() - self._saved_at >= self.save_every_s:
            self.flush()
        return units

    async def pay_in(self, cert: Any, now_ms: int) -> dict[str, Any]:
        """Credit a payment after the node's peerPaysCell confirmed its certificate. What this book would
        never credit (another payee or ref, stale, credited already) is refused first, unverified."""
        try:
            tx = check_tx(cert.get("tx") if isinstance(cert, dict) else None)
            self.book.precheck(tx, now_ms)
        except LedgerError as exc:
            self.counters[f"{self.prefix}_refused:malformed"] += 1
            raise RequestError("malformed", f"cert is the payment's certificate: {exc}") from None
        except CreditRefused as exc:
            raise self._refuse(exc) from None
        assert isinstance(cert, dict)
        try:
            checked = await self.verify(cert)
        except PeerRejected as exc:
            self.counters[f"{self.prefix}_refused:{exc.reason}"] += 1
            status = 503 if exc.status >= 500 else 402  # the ledger could not tell, or said it is not confirmed
            raise RequestError(exc.reason, f"the payment is not confirmed: {exc.detail}", status) from None
        except PeerError as exc:
            self.counters[f"{self.prefix}_refused:ledger_unreachable"] += 1
            raise RequestError("ledger_unreachable", f"this node's peerPaysCell did not answer: {exc}", 503) from None
        if checked.get("id") != tx.id:
            self.counters[f"{self.prefix}_refused:bad_reply"] += 1
            raise RequestError("bad_reply", "the ledger answered for another transaction", 502)
        try:
            units = self.book.pay_in(tx, now_ms)
        except CreditRefused as exc:
            raise self._refuse(exc) from None
        self.counters[f"{self.prefix}_credit_paid_in"] += 1
        self._dirty = True
        self.flush()
        return {"credited": units, "id": tx.id, "usage": self.usage(tx.account, now_ms)}

    def usage(self, key: str, now_ms: int) -> dict[str, Any]:
        doc = self.book.usage(key, now_ms)
        doc["exempt"] = key == self.node
        if self.describe is not None:
            doc.update(self.describe(key))
        return doc

    def flush(self) -> None:
        """Write the book if it changed since it was last written."""
        if self.path is None or not self._dirty:
            return
        self._dirty, self._saved_at = False, time.monotonic()
        try:
            atomic_write(self.path, json.dumps(self.book.to_dict(), sort_keys=True).encode())
        except OSError as exc:
            self._dirty = True
            self.counters[f"{self.prefix}_credit_unsaved"] += 1
            log.warning("%s: the %s book could not be written: %s", self.prefix, self.rule, exc)
