"""What every reward check of a reserve holder shares (hold and serve, agent, content, bridge).

The core's ``verify_work(tx)`` is synchronous; a check takes the network. So each rule's check runs
before the core is asked and records the ref it verified, with the claimant and amount it verified
it for (bounded: a claim is offered and accepted within seconds); `approves` is the core's question.
Each refusal is counted as ``pay_work_refused:<reason>``, each approval as ``pay_work_verified``.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import ClassVar

from ...ledger.tx import Tx
from ...net.peer import PeerClient
from ..kit import RequestError

REFUSAL_STATUS = 403


class WorkChecks:
    """A rule's verified refs and its refusals; subclasses do the rule's own `check`."""

    max_verified: ClassVar[int] = 1024

    def __init__(self, peers: PeerClient, ip: str, counters: Counter[str]) -> None:
        self.peers, self.ip, self.counters = peers, ip, counters
        self.verified: OrderedDict[str, tuple[str, int]] = OrderedDict()  # ref -> (claimant, amount)

    def approves(self, tx: Tx) -> bool:
        """The core's question: did this holder verify the work `tx` claims, for this claimant and amount?"""
        return self.verified.get(tx.ref) == (tx.to, tx.amount)

    def _refuse(self, reason: str, detail: str, status: int = REFUSAL_STATUS) -> RequestError:
        self.counters[f"pay_work_refused:{reason}"] += 1
        return RequestError(reason, detail, status)

    def _approve(self, tx: Tx) -> None:
        """Record that the work `tx` claims was verified, for its claimant and amount."""
        self.counters["pay_work_verified"] += 1
        self.verified[tx.ref] = (tx.to, tx.amount)
        while len(self.verified) > self.max_verified:
            self.verified.popitem(last=False)
