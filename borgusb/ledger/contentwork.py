"""The work record of a ``content`` reward: a creator's claim that others read their public media
(docs/ledger.md, "The content reward").

A reserve holder cannot watch who watched a video, so the rule pays for what *readers signed*:

* **A read receipt**, signed by the reader's key (domain `READ_DOMAIN`): "I read map ``map``, whose
  owner-signed stream map names ``owner``, on ``day``" (``day = ts // DAY_MS``). The reader's conduit
  signs one the first time it relays a map in a day, and hands it to the fStream cell that served
  it, which keeps it for the owner (`borgusb.cells.fstream.reads`).
* **The record** lists one creator's receipts of one day: 1 to `MAX_READS`, sorted by their ids,
  every one naming the claimant as owner and that day, none signed by the claimant itself
  (``self_read``), at most one per (reader, map): the rule pays one read per reader, object and
  day. ``amount = rules.amount("content", len(reads))`` exactly; ``ref`` = SHA-256 of the
  record's canonical bytes, so the core's ``already_paid`` pays one record once.
* **Paid only for a day that ended** (so the creator cannot claim part of a day and then the rest
  under another ref without the holders noticing: they approve one record per creator and day) and
  ended at most `MAX_CLAIM_AGE_MS` ago.

Pure: no I/O, time passed in. That the maps are the claimant's (their manifests' owner) and the
per-creator daily cap across records are the cell's (`borgusb.cells.peerpays.contentcheck`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .. import canonical
from ..keys import SigningKey
from ..signed import SignedDocError, check_doc, doc_id, sign_doc
from .accounts import is_account
from .rules import HOUR_MS, amount
from .tx import Tx
from .work import BadWork, CanonicalRecord, check_pays

VERSION = 1
DOMAIN = "borgusb.ledger.content"
READ_DOMAIN = "borgusb.fstream.read"
DAY_MS = 24 * HOUR_MS
MAX_READS = 256  # receipts in one record, and paid per creator per day by one holder
MAX_WORK_BYTES = 128 * 1024  # 256 receipts of at most ~430 bytes each, with room
MAX_CLAIM_AGE_MS = 2 * DAY_MS  # a day that ended longer ago than this is no longer paid

_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIELDS = {"v", "d", "rule", "claimant", "day", "reads", "amount"}
_READ_FIELDS = {"reader", "map", "owner", "day", "ts"}

# reason words of a refused content claim (each counted by the cell as pay_work_refused:<word>)
CONTENT_REASONS = (
    "bad_work",  # not a well-formed record, a receipt that does not check, or one (reader, map) twice
    "work_ref_mismatch",  # the reward's ref is not the record's hash
    "wrong_claimant",  # the reward pays someone other than the record's claimant
    "wrong_amount",  # the amount is not the content rule's for the receipts listed
    "self_read",  # the claimant signed a receipt of its own media
    "not_ended",  # the day has not ended yet (network time)
    "too_old",  # the day ended more than MAX_CLAIM_AGE_MS ago
    "already_claimed",  # this holder already approved another record of (claimant, day)
    "claims_full",  # this holder paid as many creators that day as it remembers (503: wait)
    "map_unknown",  # a map the record names is not stored on the network
    "not_owner",  # a map the record names was stored by someone other than the claimant
)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= canonical.MAX_SAFE_INT


def day_of(ts: int) -> int:
    """The UTC day number of a network time in ms."""
    return ts // DAY_MS


def sign_read(key: SigningKey, map_id: str, owner: str, ts: int) -> dict[str, Any]:
    """A reader's receipt: `key` read the stream map `map_id` of `owner` at `ts` (network time)."""
    body = {"reader": key.public_key_hex, "map": map_id, "owner": owner, "day": day_of(ts), "ts": ts}
    return check_read(sign_doc(key, body, READ_DOMAIN))


def check_read(doc: Any) -> dict[str, Any]:
    """A receipt with its fields and its reader's signature checked (`SignedDocError` if not)."""
    d = check_doc(doc, _READ_FIELDS, "reader", READ_DOMAIN)
    if not (isinstance(d["map"], str) and _HEX64.fullmatch(d["map"])) or not is_account(d["owner"]):
        raise SignedDocError("malformed", "map is an object id (64 hex) and owner a public key")
    if not _int(d["ts"]) or d["day"] != day_of(d["ts"]) or isinstance(d["day"], bool):
        raise SignedDocError("malformed", "ts is a time in ms and day its UTC day (ts // 86400000)")
    return d


def read_id(doc: dict[str, Any]) -> str:
    return doc_id(doc, READ_DOMAIN)


@dataclass(frozen=True, slots=True)
class ContentRecord(CanonicalRecord):
    """A checked ``content`` record: `claimant`'s public media read `len(reads)` times on `day`."""

    claimant: str
    day: int
    reads: tuple[dict[str, Any], ...]
    amount: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "d": DOMAIN,
            "rule": "content",
            "claimant": self.claimant,
            "day": self.day,
            "reads": list(self.reads),
            "amount": self.amount,
        }

    @property
    def maps(self) -> tuple[str, ...]:
        """The distinct maps read, sorted."""
        return tuple(sorted({r["map"] for r in self.reads}))

    @property
    def end(self) -> int:
        """When the day ends (network time, ms)."""
        return (self.day + 1) * DAY_MS


def make_content(claimant: str, day: int, reads: list[dict[str, Any]]) -> ContentRecord:
    """The record a creator hands the reserve for `day`: `reads` sorted by id, at most `MAX_READS`
    (`BadWork` if it would not pass `check_content`)."""
    listed = sorted(reads, key=read_id)
    doc = {
        "v": VERSION,
        "d": DOMAIN,
        "rule": "content",
        "claimant": claimant,
        "day": day,
        "reads": listed,
        "amount": amount("content", len(listed)),
    }
    return check_content(doc)


def check_content(doc: Any) -> ContentRecord:
    """A `ContentRecord` from its wire form: every receipt's signature, owner, day and reader, the
    receipts' order and uniqueness, the rule's amount, the size."""
    if not isinstance(doc, dict) or set(doc) != _FIELDS:
        raise BadWork("bad_work", f"a content record has exactly the fields {sorted(_FIELDS)}")
    if doc["v"] != VERSION or doc["d"] != DOMAIN or doc["rule"] != "content":
        raise BadWork("bad_work", "not a version-1 content record")
    claimant, day, listed = doc["claimant"], doc["day"], doc["reads"]
    if not is_account(claimant) or not _int(day):
        raise BadWork("bad_work", "claimant is a public key in lowercase hex and day a day number")
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_READS:
        raise BadWork("bad_work", f"1 to {MAX_READS} read receipts")
    ids: list[str] = []
    pairs: set[tuple[str, str]] = set()
    for r in listed:
        try:
            check_read(r)
        except SignedDocError as exc:
            raise BadWork("bad_work", f"a receipt: {exc.reason}: {exc}") from None
        if r["owner"] != claimant or r["day"] != day:
            raise BadWork("bad_work", "every receipt names the claimant as owner and the record's day")
        if r["reader"] == claimant:
            raise BadWork("self_read", "a creator's own reads of their media are not paid")
        rid = read_id(r)
        if ids and rid <= ids[-1]:
            raise BadWork("bad_work", "receipts are listed once each, in id order")
        if (r["reader"], r["map"]) in pairs:
            raise BadWork("bad_work", "one read per reader and map a day")
        ids.append(rid)
        pairs.add((r["reader"], r["map"]))
    owed = amount("content", len(listed))
    if not _int(doc["amount"]) or doc["amount"] != owed:
        raise BadWork("wrong_amount", f"the content rule owes {owed} units for {len(listed)} reads")
    rec = ContentRecord(claimant, day, tuple(listed), owed)
    if len(rec.to_bytes()) > MAX_WORK_BYTES:
        raise BadWork("bad_work", f"a record is at most {MAX_WORK_BYTES} bytes")
    return rec


def parse_content(data: bytes) -> ContentRecord:
    """`check_content` of wire bytes, bounded, which must be the record's canonical form."""
    if len(data) > MAX_WORK_BYTES:
        raise BadWork("bad_work", f"a record is at most {MAX_WORK_BYTES} bytes")
    try:
        rec = check_content(canonical.loads(data))
    except canonical.CanonicalError as exc:
        raise BadWork("bad_work", str(exc)) from None
    if rec.to_bytes() != bytes(data):
        raise BadWork("bad_work", "not in canonical form")
    return rec


def check_content_claim(rec: ContentRecord, tx: Tx, now_ms: int) -> None:
    """The reward `tx` is a claim on `rec`, for a day that ended and is still paid (`BadWork` if not)."""
    check_pays(tx, rec.ref, rec.claimant, rec.amount)
    if now_ms < rec.end:
        raise BadWork("not_ended", f"the day ends in {rec.end - now_ms} ms")
    if now_ms - rec.end > MAX_CLAIM_AGE_MS:
        raise BadWork("too_old", f"the day ended {now_ms - rec.end} ms ago (paid up to {MAX_CLAIM_AGE_MS})")
