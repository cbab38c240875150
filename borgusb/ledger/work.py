"""The work record of a ``hold`` reward: what a shard holder claims the reserve owes it, and why.

A reward transaction names its work by ``ref`` only; this record is that work,
so every reserve holder can check the claim before it votes (docs/ledger.md,
"The hold reward"):

* **One record per piece of work.** The period is one cell of a fixed grid
  (whole hours of network time, `HOLD_PERIOD_MS`), the shards are listed once
  each in hash order, and ``ref = sha256(canonical bytes)``. So a node's hold
  of a period has exactly one ref, and the core's ``already_paid`` rule pays
  it once. (A node can list fewer shards for the same period, but that is a
  different ref for the same hour: the claimant loop never claims a period
  twice, and the cell refuses a second claim of (claimant, period) it saw.)
* **Arithmetic anyone redoes.** ``amount = rules.amount("hold",
  mib_hours(total bytes, period ms))`` exactly; any other amount is refused.
* **Bounded.** At most `MAX_SHARDS` shards of at most `model.MAX_SHARD` bytes,
  at most `MAX_WORK_BYTES` on the wire.

Pure: no I/O, time passed in. The possession check itself (fetch sampled
shards from the claimant) is the cell's (`borgusb.cells.peerpays.earn`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from .. import canonical
from ..shard.model import MAX_SHARD
from .accounts import is_account
from .rules import HOUR_MS, amount, mib_hours
from .tx import Tx

VERSION = 1
DOMAIN = "borgusb.ledger.work"
HOLD_PERIOD_MS = HOUR_MS  # the grid: a period starts at a multiple of this and lasts exactly this
MAX_CLAIM_AGE_MS = 6 * HOUR_MS  # a period that ended longer ago than this is no longer paid
MAX_SHARDS = 256
MAX_WORK_BYTES = 32 * 1024
SAMPLE = 3  # shards each reserve holder fetches from the claimant

_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIELDS = {"v", "d", "rule", "claimant", "start", "end", "shards", "amount"}

# reason words of a refused hold claim (each counted by the cell as pay_work_refused:<word>)
WORK_REASONS = (
    "bad_work",  # not a well-formed record: fields, bounds, order, grid
    "work_ref_mismatch",  # the record's hash is not the claim's ref
    "wrong_claimant",  # the claim pays someone other than the record's claimant
    "wrong_amount",  # the claim's amount is not the record's, or the record's is not the rule's
    "not_ended",  # the period has not ended yet (network time)
    "too_old",  # the period ended more than MAX_CLAIM_AGE_MS ago
    "already_claimed",  # this holder already approved another record of (claimant, period)
    "not_member",  # the claimant is not a shard node of the current view
    "not_placed",  # a sampled shard's placement winners do not include the claimant
    "not_held",  # the claimant did not serve a sampled shard's bytes
)


class BadWork(ValueError):
    """A work record or a claim on it refused; `reason` is one of `WORK_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class CanonicalRecord:
    """A work record whose wire bytes are its canonical JSON and whose reward ``ref`` is their SHA-256
    (hold, serve and content records; a record with another ref overrides `ref`)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        return canonical.dumps(self.to_dict())

    @property
    def ref(self) -> str:
        """The reward's ``ref``: SHA-256 of the canonical bytes."""
        return hashlib.sha256(self.to_bytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class HoldRecord(CanonicalRecord):
    """A checked ``hold`` record: `claimant` held `shards` ((sha256, size), sorted) in [start, end)."""

    claimant: str
    start: int
    end: int
    shards: tuple[tuple[str, int], ...]
    amount: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "d": DOMAIN,
            "rule": "hold",
            "claimant": self.claimant,
            "start": self.start,
            "end": self.end,
            "shards": [{"h": h, "n": n} for h, n in self.shards],
            "amount": self.amount,
        }

    @property
    def total_bytes(self) -> int:
        return sum(n for _, n in self.shards)


def period_start(now_ms: int, period_ms: int = HOLD_PERIOD_MS) -> int:
    """The start of the grid cell that contains `now_ms`."""
    return now_ms - now_ms % period_ms


def hold_amount(total_bytes: int, period_ms: int = HOLD_PERIOD_MS) -> int:
    """The reserve's debt for holding `total_bytes` for one period (rules.py's ``hold``)."""
    return amount("hold", mib_hours(total_bytes, period_ms))


def make_hold(claimant: str, start: int, shards: dict[str, int] | list[tuple[str, int]]) -> HoldRecord:
    """The record of `claimant` holding `shards` ({sha256: size}) for the period starting at `start`.

    Raises `BadWork` when the record could not be checked (too many shards, off the grid,
    an amount of zero: too little held to be worth one unit)."""
    items = sorted(dict(shards).items())
    doc = {
        "v": VERSION,
        "d": DOMAIN,
        "rule": "hold",
        "claimant": claimant,
        "start": start,
        "end": start + HOLD_PERIOD_MS,
        "shards": [{"h": h, "n": n} for h, n in items],
        "amount": hold_amount(sum(n for _, n in items)),
    }
    return check_work(doc)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= canonical.MAX_SAFE_INT


def check_work(doc: Any) -> HoldRecord:
    """A `HoldRecord` from its wire form, or `BadWork` (``bad_work`` / ``wrong_amount``)."""
    if not isinstance(doc, dict) or set(doc) != _FIELDS:
        raise BadWork("bad_work", f"a hold record has exactly the fields {sorted(_FIELDS)}")
    if doc["v"] != VERSION or doc["d"] != DOMAIN or doc["rule"] != "hold":
        raise BadWork("bad_work", "not a version-1 hold record")
    if not is_account(doc["claimant"]):
        raise BadWork("bad_work", "claimant is a compressed public key in lowercase hex")
    start, end = doc["start"], doc["end"]
    if not (_int(start) and _int(end)) or start % HOLD_PERIOD_MS or end - start != HOLD_PERIOD_MS:
        raise BadWork("bad_work", f"the period is one whole cell of the {HOLD_PERIOD_MS} ms grid")
    listed = doc["shards"]
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_SHARDS:
        raise BadWork("bad_work", f"1 to {MAX_SHARDS} shards")
    shards: list[tuple[str, int]] = []
    for s in listed:
        if not isinstance(s, dict) or set(s) != {"h", "n"}:
            raise BadWork("bad_work", 'a shard is {"h": sha256, "n": size}')
        h, n = s["h"], s["n"]
        if not (isinstance(h, str) and _HEX64.fullmatch(h)) or not (_int(n) and 1 <= n <= MAX_SHARD):
            raise BadWork("bad_work", f"a shard is a SHA-256 in hex and 1..{MAX_SHARD} bytes")
        if shards and h <= shards[-1][0]:
            raise BadWork("bad_work", "shards are listed once each, in hash order")
        shards.append((h, n))
    owed = hold_amount(sum(n for _, n in shards))
    if not _int(doc["amount"]) or doc["amount"] != owed:
        raise BadWork("wrong_amount", f"the hold rule owes {owed} units for this record, not {doc['amount']!r}")
    if owed < 1:
        raise BadWork("wrong_amount", "too little held to be owed one unit: nothing to claim")
    return HoldRecord(doc["claimant"], start, end, tuple(shards), owed)


def parse_work(data: bytes) -> HoldRecord:
    """`check_work` of wire bytes, bounded, which must be the record's canonical form."""
    if len(data) > MAX_WORK_BYTES:
        raise BadWork("bad_work", f"a record is at most {MAX_WORK_BYTES} bytes")
    try:
        rec = check_work(canonical.loads(data))
    except canonical.CanonicalError as exc:
        raise BadWork("bad_work", str(exc)) from None
    if rec.to_bytes() != bytes(data):
        raise BadWork("bad_work", "not in canonical form")
    return rec


def check_pays(tx: Tx, ref: str, claimant: str, owed: int) -> None:
    """The reward `tx` pays exactly a work record: its ref, to its claimant, its amount (`BadWork` if not).
    Every reward rule's check starts here (hold here, agent tasks in `taskwork`)."""
    if tx.ref != ref:
        raise BadWork("work_ref_mismatch", f"the record's ref is {ref[:16]}, the reward's {tx.ref[:16]}")
    if tx.to != claimant:
        raise BadWork("wrong_claimant", "a reward pays the record's claimant")
    if tx.amount != owed:
        raise BadWork("wrong_amount", f"the record is worth {owed} units, the reward asks {tx.amount}")


def check_claim(rec: HoldRecord, tx: Tx, now_ms: int) -> None:
    """The reward `tx` is a claim on `rec`, for a period that ended and is still paid (`BadWork` if not)."""
    check_pays(tx, rec.ref, rec.claimant, rec.amount)
    if now_ms < rec.end:
        raise BadWork("not_ended", f"the period ends in {rec.end - now_ms} ms")
    if now_ms - rec.end > MAX_CLAIM_AGE_MS:
        raise BadWork("too_old", f"the period ended {now_ms - rec.end} ms ago (paid up to {MAX_CLAIM_AGE_MS})")


def sample(shards: tuple[tuple[str, int], ...], claim_id: str, verifier: str, k: int = SAMPLE) -> list[tuple[str, int]]:
    """The shards `verifier` fetches of a claim's (a hold or a serve record's `shards`) for the
    claim `claim_id`: fixed per (claim, verifier), so anyone
    can redo the draw, and each reserve holder asks different ones. A claimant missing a fraction f
    of its listed shards passes one holder's draw with probability about (1 - f)^k and needs a
    quorum of holders to pass (it can re-sign the claim to draw again: docs/ledger.md, limits)."""

    def draw(s: tuple[str, int]) -> bytes:
        return hashlib.sha256(f"{DOMAIN}.sample:{claim_id}:{verifier}:{s[0]}".encode()).digest()

    return sorted(shards, key=draw)[:k]
