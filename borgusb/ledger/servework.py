"""The work record of a ``serve`` reward: the bytes a shard holder served, as its readers signed.

A reserve holder cannot see a read that happened an hour ago, so the rule pays only for reads the
*reader* signed (docs/ledger.md, "The serve reward"):

* **The receipt** (`borgusb.shard.receipt`), signed by the reader's key after its DStream
  `Receiver` checked the bytes against the owner-signed manifest: "holder H gave me these shards
  (SHA-256, size) at ts".
* **The record**, one per holder and period of the hold grid (whole hours): the receipts dated in
  that period, listed once each in id order. A reader's shard counts once per period however often
  it was fetched (``(reader, sha256)`` pairs), a receipt the holder signed for itself is refused
  (``self_served``), and at most `MAX_SERVE_BYTES` are paid a period, the cap that bounds what a
  holder signing receipts with keys of its own can mint (docs/ledger.md, limits).
* **Arithmetic anyone redoes**: ``amount = rules.amount("serve", counted bytes)`` exactly, and
  ``ref = sha256(canonical bytes)``, so the core's ``already_paid`` pays one record once.

Pure: no I/O, time passed in. That the claimant holds the shards it served and is placed to
(a sample fetched from it) is the cell's check, shared with the hold reward
(`borgusb.cells.peerpays.earn`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import canonical
from ..shard.receipt import check_receipt, receipt_id
from ..signed import SignedDocError
from .accounts import is_account
from .rules import GIB, amount
from .tx import Tx
from .work import HOLD_PERIOD_MS, MAX_CLAIM_AGE_MS, BadWork, CanonicalRecord, check_pays

VERSION = 1
DOMAIN = "borgusb.ledger.serve"
MAX_RECEIPTS = 32  # receipts in one record
MAX_SERVE_BYTES = GIB  # bytes paid per holder and period (0.01 Shell an hour at most)

_FIELDS = {"v", "d", "rule", "claimant", "start", "end", "receipts", "amount"}

# reason words of a refused serve claim, beyond the hold claim's (each counted as pay_work_refused:<word>)
SERVE_REASONS = ("self_served",)  # a receipt its holder signed as the reader


@dataclass(frozen=True, slots=True)
class ServeRecord(CanonicalRecord):
    """A checked ``serve`` record: readers signed that `claimant` served them in [start, end)."""

    claimant: str
    start: int
    end: int
    shards: tuple[tuple[str, int], ...]  # every shard served, once, in hash order (what audits sample)
    readers: int
    counted: int  # bytes the amount pays for
    amount: int
    doc: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.doc


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= canonical.MAX_SAFE_INT


def make_serve(claimant: str, start: int, receipts: list[dict[str, Any]]) -> ServeRecord:
    """The record of `claimant`'s serving in the period starting at `start`, from the receipts of
    that period it keeps (the `MAX_RECEIPTS` worth the most, each once); `BadWork` if nothing is owed."""
    by_id: dict[str, dict[str, Any]] = {}
    for r in receipts:
        try:
            ok = check_receipt(r)
        except SignedDocError:
            continue
        if ok["holder"] == claimant and ok["reader"] != claimant and start <= ok["ts"] < start + HOLD_PERIOD_MS:
            by_id[receipt_id(ok)] = ok
    best = sorted(by_id, key=lambda i: (-sum(n for _, n in by_id[i]["shards"]), i))[:MAX_RECEIPTS]
    chosen = [by_id[i] for i in sorted(best)]
    doc = {"v": VERSION, "d": DOMAIN, "rule": "serve", "claimant": claimant, "start": start}
    doc |= {"end": start + HOLD_PERIOD_MS, "receipts": chosen, "amount": 0}
    doc["amount"] = amount("serve", _counted(chosen)[2])
    return check_serve(doc)


def _counted(receipts: list[dict[str, Any]]) -> tuple[dict[str, int], set[str], int]:
    """({sha256: size} of every shard, the readers, bytes paid): each (reader, shard) once, capped."""
    sizes: dict[str, int] = {}
    pairs: set[tuple[str, str]] = set()
    total = 0
    for r in receipts:
        for h, n in r["shards"]:
            if sizes.setdefault(h, n) != n:
                raise BadWork("bad_work", f"shard {h[:16]} is listed with two sizes")
            if (r["reader"], h) not in pairs:
                pairs.add((r["reader"], h))
                total += n
    return sizes, {r["reader"] for r in receipts}, min(total, MAX_SERVE_BYTES)


def check_serve(doc: Any) -> ServeRecord:
    """A `ServeRecord` from its wire form: every receipt's signature, its holder and period, the amount."""
    if not isinstance(doc, dict) or set(doc) != _FIELDS:
        raise BadWork("bad_work", f"a serve record has exactly the fields {sorted(_FIELDS)}")
    if doc["v"] != VERSION or doc["d"] != DOMAIN or doc["rule"] != "serve" or not is_account(doc["claimant"]):
        raise BadWork("bad_work", "not a version-1 serve record with a claimant key")
    start, end, claimant = doc["start"], doc["end"], doc["claimant"]
    if not (_int(start) and _int(end)) or start % HOLD_PERIOD_MS or end - start != HOLD_PERIOD_MS:
        raise BadWork("bad_work", f"the period is one whole cell of the {HOLD_PERIOD_MS} ms grid")
    listed = doc["receipts"]
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_RECEIPTS:
        raise BadWork("bad_work", f"1 to {MAX_RECEIPTS} receipts")
    last = ""
    for r in listed:
        try:
            check_receipt(r)
        except SignedDocError as exc:
            raise BadWork("bad_work", f"a receipt: {exc.reason}: {exc}") from None
        rid = receipt_id(r)
        if rid <= last:
            raise BadWork("bad_work", "receipts are listed once each, in id order")
        last = rid
        if r["holder"] != claimant:
            raise BadWork("bad_work", "a receipt names another holder")
        if r["reader"] == claimant:
            raise BadWork("self_served", "a holder's receipt for its own reads earns nothing")
        if not start <= r["ts"] < end:
            raise BadWork("bad_work", "a receipt is dated outside the period")
    sizes, readers, counted = _counted(listed)
    owed = amount("serve", counted)
    if not _int(doc["amount"]) or doc["amount"] != owed:
        raise BadWork("wrong_amount", f"the serve rule owes {owed} units for this record, not {doc['amount']!r}")
    if owed < 1:
        raise BadWork("wrong_amount", "too little served to be owed one unit: nothing to claim")
    return ServeRecord(claimant, start, end, tuple(sorted(sizes.items())), len(readers), counted, owed, doc)


def check_serve_claim(rec: ServeRecord, tx: Tx, now_ms: int) -> None:
    """The reward `tx` is a claim on `rec`, for a period that ended and is still paid (`BadWork` if not)."""
    check_pays(tx, rec.ref, rec.claimant, rec.amount)
    if now_ms < rec.end:
        raise BadWork("not_ended", f"the period ends in {rec.end - now_ms} ms")
    if now_ms - rec.end > MAX_CLAIM_AGE_MS:
        raise BadWork("too_old", f"the period ended {now_ms - rec.end} ms ago (paid up to {MAX_CLAIM_AGE_MS})")
