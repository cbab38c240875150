"""Equivocation evidence: two signed votes of one holder for one (account, seq).

A holder promises, with each acceptance it signs, "for this (account, seq) I
accept this transaction id, and no other, ever" (`certificate.Acceptance`).
Two acceptances by one key for two ids at one (account, seq) break that
promise in the holder's own hand: anyone can check them, nobody needs to
trust who found them. Such a pair is **evidence**, and a holder it names is
dropped from every member view (the cell: ``cells/peerpays/cell.py``).

Where pairs are found, without extra messages:

* **two certificates for one (account, seq)**: each was checked against its
  holder set, so each holder that signed both broke the rule (quorum
  intersection means a double confirmation always has such holders: at
  least ``2q - R`` of them). A payer's holder meets the second certificate
  when it is delivered (`holder.Holder` refuses it as ``conflicting_spend``);
  `VoteWitness` also remembers the signers of recent certificates a cell
  has seen, on either side, so a payee's holder finds the pair too;
* **an acceptance and a certificate**: the entry cell that collected a
  holder's acceptance of one id meets a certificate of another.

Sans-I/O: nothing here sends, stores or reads a clock.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import canonical
from .certificate import Acceptance, Certificate, check_acceptance
from .errors import LedgerError, Malformed

VERSION = 1
WITNESS_CAPACITY = 16_384  # (account, seq) slots remembered; ~1 KiB each at R = 5


class NotEvidence(LedgerError):
    """Two valid acceptances that do not prove a broken promise (another holder, seq or the same id)."""

    reason = "not_evidence"


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two acceptances by `holder` for two ids at one (account, seq), in id order (one pair, one form)."""

    a: Acceptance
    b: Acceptance

    @property
    def holder(self) -> str:
        return self.a.holder

    def to_dict(self) -> dict[str, Any]:
        return {"v": VERSION, "a": self.a.to_dict(), "b": self.b.to_dict()}

    @property
    def id(self) -> str:
        return hashlib.sha256(canonical.encode_unchecked(self.to_dict())).hexdigest()


def evidence_of(x: Acceptance, y: Acceptance) -> Evidence:
    """The evidence two acceptances make, or `NotEvidence`. Both signatures are checked here."""
    if x.holder != y.holder or (x.account, x.seq) != (y.account, y.seq) or x.id == y.id:
        raise NotEvidence("evidence is one holder's votes for two ids at one (account, seq)")
    a, b = sorted((x, y), key=lambda acc: acc.id)
    if not (a.verify() and b.verify()):
        raise NotEvidence("an acceptance is not signed by the holder it names")
    return Evidence(a, b)


def check_evidence(doc: Any) -> Evidence:
    """`Evidence` from its wire form ``{"v", "a", "b"}``: each acceptance's shape and signature checked
    (`Malformed`, `BadHolderSignature`), then that together they break the holder's promise."""
    if not isinstance(doc, dict) or doc.keys() != {"v", "a", "b"} or doc["v"] != VERSION:
        raise Malformed("evidence has exactly v, a, b")
    return evidence_of(check_acceptance(doc["a"]), check_acceptance(doc["b"]))


def acceptances(cert: Certificate) -> list[Acceptance]:
    """The acceptances a certificate carries (as good as the certificate's check, which verified them)."""
    tx = cert.tx
    return [Acceptance(tx.id, tx.account, tx.seq, holder, cert.set_id, sig) for holder, sig in cert.sigs]


def between_certificates(first: Certificate, second: Certificate) -> list[Evidence]:
    """The evidence against every holder that signed both of two certificates for one (account, seq)."""
    if (first.tx.account, first.tx.seq) != (second.tx.account, second.tx.seq) or first.tx.id == second.tx.id:
        return []
    theirs = {a.holder: a for a in acceptances(second)}
    found = []
    for acc in acceptances(first):
        other = theirs.get(acc.holder)
        if other is not None:
            try:
                found.append(evidence_of(acc, other))
            except NotEvidence:
                continue  # a signature that does not verify: that certificate was never checked
    return found


class VoteWitness:
    """The votes this cell has seen lately, by (account, seq): where a second id shows a broken promise.

    Fed only acceptances that were verified (a checked certificate's, an acceptance a holder
    answered). Bounded: `capacity` (account, seq) slots, least recently seen forgotten first;
    per slot one id and its signers (a third id at the same slot is compared with the first)."""

    def __init__(self, capacity: int = WITNESS_CAPACITY) -> None:
        self.capacity = capacity
        self._slots: OrderedDict[tuple[str, int], dict[str, Acceptance]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._slots)

    def observe(self, votes: Iterable[Acceptance]) -> list[Evidence]:
        """Remember `votes` (all for one transaction); the evidence they make with what was seen before."""
        found: list[Evidence] = []
        for acc in votes:
            slot = (acc.account, acc.seq)
            seen = self._slots.get(slot)
            if seen is None:
                seen = self._slots[slot] = {}
                while len(self._slots) > self.capacity:
                    self._slots.popitem(last=False)
            self._slots.move_to_end(slot)
            before = seen.get(acc.holder)
            if before is None:
                if not seen or next(iter(seen.values())).id == acc.id:
                    seen[acc.holder] = acc
            elif before.id != acc.id:
                try:
                    found.append(evidence_of(before, acc))
                except NotEvidence:
                    continue
        return found


__all__ = [
    "Evidence",
    "NotEvidence",
    "VoteWitness",
    "acceptances",
    "between_certificates",
    "check_evidence",
    "evidence_of",
]
