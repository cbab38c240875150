"""The memory record: a text with an owner, signed by that owner; private ones sealed to the owner.

Wire form, canonical JSON (`borgusb.canonical`), at most `MAX_RECORD_BYTES`::

    {"v": 1, "owner": "02…", "kind": "note", "ts": 1764000000000, "place": "" | "kitchen",
     "weights": {"importance": 700}, "private": false,
     "text": "…" (public) | "", "sealed": "" (public) | "<hex: borgusb.seal box>", "sig": "3044…"}

* ``sig``: DER ECDSA by ``owner`` over the canonical JSON of every other member plus
  ``"d": "borgusb.memory.record"`` (domain-separated as mail and the ledger are): the owner field
  means nothing unless that key signed it.
* **The id** is the SHA-256 of those signed bytes: a replay has the same id; any change is a new id.
* A **private** memory's text is `borgusb.seal.seal(owner, text, context)`, the context binding the
  owner, time and kind (``borgusb.memory.v1|owner|ts|kind``): cells keep and return ciphertext only,
  so a private memory is searched on its owner's side (docs/memory.md, "Private memories").
* A **tombstone** (`Tombstone`) is the owner's signed removal of one id (domain
  ``borgusb.memory.rm``); holders drop the record and refuse it again (`Deleted`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from .. import seal
from ..canonical import MAX_SAFE_INT
from ..keys import SigningKey, is_public_key_hex
from ..signed import is_sig_hex, signed_by, signing_bytes
from .errors import BadSignature, Malformed, NotYours, TooLarge, Undecryptable

VERSION = 1
DOMAIN = "borgusb.memory.record"
RM_DOMAIN = "borgusb.memory.rm"
CONTEXT = "borgusb.memory.v1"
MAX_TEXT_BYTES = 4096  # a note, not a file: files go to the file manager
MAX_PLACE = 128
MAX_WEIGHTS = 8
MAX_WEIGHT = 1000
MAX_RECORD_BYTES = 2 * (MAX_TEXT_BYTES + seal.OVERHEAD) + 2048
FIELDS = frozenset(("v", "owner", "kind", "ts", "place", "weights", "private", "text", "sealed", "sig"))
RM_FIELDS = frozenset(("v", "owner", "id", "ts", "sig"))
KIND = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
_WEIGHT_NAME = re.compile(r"[a-z][a-z0-9_]{0,23}")
HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")


@dataclass(frozen=True, slots=True)
class Memory:
    """A checked memory. Made only by `compose` and `check_record`."""

    owner: str
    kind: str
    ts: int
    place: str
    weights: dict[str, int]
    private: bool
    text: str  # "" when private
    sealed: str  # "" when public
    sig: str
    id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "owner": self.owner,
            "kind": self.kind,
            "ts": self.ts,
            "place": self.place,
            "weights": dict(self.weights),
            "private": self.private,
            "text": self.text,
            "sealed": self.sealed,
            "sig": self.sig,
        }


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The owner's signed removal of one memory id."""

    owner: str
    id: str
    ts: int
    sig: str

    def to_dict(self) -> dict[str, Any]:
        return {"v": VERSION, "owner": self.owner, "id": self.id, "ts": self.ts, "sig": self.sig}


def seal_context(owner: str, ts: int, kind: str) -> bytes:
    """What a private text is bound to: its owner, time and kind."""
    return f"{CONTEXT}|{owner}|{ts}|{kind}".encode()


def compose(
    key: SigningKey,
    text: str,
    *,
    kind: str = "note",
    ts: int,
    place: str = "",
    weights: dict[str, int] | None = None,
    private: bool = False,
) -> Memory:
    """A memory owned and signed by `key`; a private one's text is sealed to `key` itself."""
    data = text.encode()
    if len(data) > MAX_TEXT_BYTES:
        raise TooLarge(f"a memory's text is at most {MAX_TEXT_BYTES} bytes")
    owner = key.public_key_hex
    sealed = seal.seal(bytes.fromhex(owner), data, seal_context(owner, ts, kind)).hex() if private else ""
    body = {
        "v": VERSION,
        "owner": owner,
        "kind": kind,
        "ts": ts,
        "place": place,
        "weights": dict(weights or {}),
        "private": private,
        "text": "" if private else text,
        "sealed": sealed,
    }
    _check_fields(dict(body, sig="00" * 8))
    return check_record(dict(body, sig=key.sign(signing_bytes(body, DOMAIN)).hex()))


def _is_ts(ts: Any) -> bool:
    return not isinstance(ts, bool) and isinstance(ts, int) and 0 <= ts <= MAX_SAFE_INT


def _check_fields(doc: Any) -> None:
    if not isinstance(doc, dict) or doc.keys() != FIELDS:
        raise Malformed(f"a memory has exactly {', '.join(sorted(FIELDS))}")
    if isinstance(doc["v"], bool) or doc["v"] != VERSION:
        raise Malformed(f"unsupported memory version {doc['v']!r} (this node reads {VERSION})")
    if not _is_ts(doc["ts"]):
        raise Malformed("ts is network time in ms")
    if not is_public_key_hex(doc["owner"]):
        raise Malformed("owner is a compressed public key in lowercase hex")
    if not isinstance(doc["kind"], str) or not KIND.fullmatch(doc["kind"]):
        raise Malformed("kind is a short lowercase word (a-z, digits, _ . -; at most 32)")
    place = doc["place"]
    if not isinstance(place, str) or len(place) > MAX_PLACE:
        raise Malformed(f"place is text of at most {MAX_PLACE} characters")
    weights = doc["weights"]
    if not isinstance(weights, dict) or len(weights) > MAX_WEIGHTS:
        raise Malformed(f"weights are at most {MAX_WEIGHTS} named integers")
    for name, w in weights.items():
        if not _WEIGHT_NAME.fullmatch(name) or isinstance(w, bool) or not isinstance(w, int):
            raise Malformed("a weight is a short lowercase name and an integer")
        if not 0 <= w <= MAX_WEIGHT:
            raise Malformed(f"a weight is 0 to {MAX_WEIGHT}")
    private, text, sealed = doc["private"], doc["text"], doc["sealed"]
    if not isinstance(private, bool) or not isinstance(text, str) or not isinstance(sealed, str):
        raise Malformed("private is true or false; text and sealed are strings")
    if private and (text or not _HEX.fullmatch(sealed)):
        raise Malformed("a private memory has no text, and its sealed text in lowercase hex")
    if not private and (sealed or not text):
        raise Malformed("a public memory has a text and nothing sealed")
    if len(text.encode()) > MAX_TEXT_BYTES or len(sealed) > 2 * (MAX_TEXT_BYTES + seal.OVERHEAD):
        raise TooLarge(f"a memory's text is at most {MAX_TEXT_BYTES} bytes")
    if not is_sig_hex(doc["sig"]):
        raise Malformed("sig is a DER signature in lowercase hex")


def check_record(doc: Any) -> Memory:
    """A `Memory` from a decoded document: `Malformed`, `TooLarge`, then (the costly one) `BadSignature`."""
    _check_fields(doc)
    signed = signing_bytes(doc, DOMAIN)
    if not signed_by(doc["owner"], doc["sig"], signed):
        raise BadSignature("the memory is not signed by its owner")
    return Memory(
        owner=doc["owner"],
        kind=doc["kind"],
        ts=doc["ts"],
        place=doc["place"],
        weights=dict(doc["weights"]),
        private=doc["private"],
        text=doc["text"],
        sealed=doc["sealed"],
        sig=doc["sig"],
        id=hashlib.sha256(signed).hexdigest(),
    )


def open_text(key: SigningKey, memory: Memory) -> str:
    """The text of a memory: a public one's as it is, a private one's for its owner's key only."""
    if not memory.private:
        return memory.text
    if memory.owner != key.public_key_hex:
        raise NotYours("this private memory belongs to another key")
    try:
        data = seal.unseal(key, bytes.fromhex(memory.sealed), seal_context(memory.owner, memory.ts, memory.kind))
    except seal.SealError as exc:
        raise Undecryptable(str(exc)) from None
    return data.decode("utf-8", errors="replace")


def make_tombstone(key: SigningKey, memory_id: str, ts: int) -> Tombstone:
    """The owner's removal of `memory_id`."""
    body = {"v": VERSION, "owner": key.public_key_hex, "id": memory_id, "ts": ts}
    return check_tombstone(dict(body, sig=key.sign(signing_bytes(body, RM_DOMAIN)).hex()))


def check_tombstone(doc: Any) -> Tombstone:
    """A `Tombstone` from a decoded document (`Malformed`, `BadSignature`)."""
    if not isinstance(doc, dict) or doc.keys() != RM_FIELDS:
        raise Malformed(f"a tombstone has exactly {', '.join(sorted(RM_FIELDS))}")
    if isinstance(doc["v"], bool) or doc["v"] != VERSION or not _is_ts(doc["ts"]):
        raise Malformed("a tombstone has v 1 and ts in ms")
    if not is_public_key_hex(doc["owner"]) or not isinstance(doc["id"], str) or not HEX64.fullmatch(doc["id"]):
        raise Malformed("owner is a public key and id a memory id (SHA-256 in lowercase hex)")
    if not is_sig_hex(doc["sig"]):
        raise Malformed("sig is a DER signature in lowercase hex")
    if not signed_by(doc["owner"], doc["sig"], signing_bytes(doc, RM_DOMAIN)):
        raise BadSignature("the tombstone is not signed by its owner")
    return Tombstone(owner=doc["owner"], id=doc["id"], ts=doc["ts"], sig=doc["sig"])
