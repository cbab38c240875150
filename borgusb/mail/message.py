"""The mail message: sealed to its recipient, signed by its sender.

Wire form, canonical JSON (`borgusb.canonical`), at most `MAX_MESSAGE_BYTES`::

    {"v": 1, "from": "02…sender", "to": "03…recipient", "ts": 1764000000000,
     "re": "" | "<64 hex: the id of the message this replies to>",
     "sealed": "<hex: borgusb.seal box>", "sig": "3044…"}

* ``sealed`` is `borgusb.seal.seal(to, content, context)` where content is the
  canonical JSON ``{"subject", "body", "attachments": [object ids]}`` (the
  subject is private too) and the context is ``borgusb.mail.v1|from|ts|re``:
  a sealed part lifted into another message (another sender, time or thread)
  does not open, so nobody can re-sign someone else's words as their own.
* ``sig``: DER ECDSA by ``from`` over the canonical JSON of every other member
  plus ``"d": "borgusb.mail.message"`` (domain-separated as the ledger's
  transactions are: `borgusb.signed.signing_bytes`).
* **The id** is the SHA-256 of those signed bytes: a replay has the same id.

Cells check the signature and the bounds and see nothing else; `open_message`
runs only where the recipient's key is unlocked.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from .. import canonical, seal
from ..canonical import MAX_SAFE_INT
from ..keys import SigningKey
from ..ledger.accounts import is_account
from ..ledger.errors import LedgerError
from ..ledger.tx import load_bounded
from ..signed import is_sig_hex, signed_by, signing_bytes
from .errors import BadSignature, Malformed, NotForYou, TooLarge, Undecryptable

VERSION = 1
DOMAIN = "borgusb.mail.message"
CONTEXT = "borgusb.mail.v1"
MAX_CONTENT_BYTES = 48 * 1024  # subject + body + attachment ids; files travel as attachments
MAX_MESSAGE_BYTES = 2 * (MAX_CONTENT_BYTES + seal.OVERHEAD) + 1024  # hex doubles the box
MAX_SUBJECT = 200
MAX_ATTACHMENTS = 16
FIELDS = frozenset(("v", "from", "to", "ts", "re", "sealed", "sig"))
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")


@dataclass(frozen=True, slots=True)
class Content:
    """What only the recipient reads."""

    subject: str
    body: str
    attachments: tuple[str, ...] = ()

    def encode(self) -> bytes:
        doc = {"subject": self.subject, "body": self.body, "attachments": list(self.attachments)}
        data = canonical.dumps(doc)
        if len(data) > MAX_CONTENT_BYTES:
            raise TooLarge(f"a message's subject and body are at most {MAX_CONTENT_BYTES} bytes")
        return data

    @classmethod
    def decode(cls, data: bytes) -> Content:
        try:
            doc = canonical.loads_canonical(data)
        except canonical.CanonicalError as exc:
            raise Malformed(f"content: {exc}") from None
        if not isinstance(doc, dict) or doc.keys() != {"subject", "body", "attachments"}:
            raise Malformed("content has exactly subject, body, attachments")
        subject, body, att = doc["subject"], doc["body"], doc["attachments"]
        if not isinstance(subject, str) or len(subject) > MAX_SUBJECT or not isinstance(body, str):
            raise Malformed(f"subject is text of at most {MAX_SUBJECT} characters, body is text")
        if not isinstance(att, list) or len(att) > MAX_ATTACHMENTS:
            raise Malformed(f"attachments are at most {MAX_ATTACHMENTS} object ids")
        if any(not isinstance(a, str) or not _HEX64.fullmatch(a) for a in att):
            raise Malformed("an attachment is an object id (SHA-256 in lowercase hex)")
        return cls(subject, body, tuple(att))


@dataclass(frozen=True, slots=True)
class Message:
    """A checked message. Made only by `compose`, `check_message` and `parse_message`."""

    sender: str
    recipient: str
    ts: int
    re: str
    sealed: str
    sig: str
    id: str

    def body(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "from": self.sender,
            "to": self.recipient,
            "ts": self.ts,
            "re": self.re,
            "sealed": self.sealed,
        }

    def to_dict(self) -> dict[str, Any]:
        return dict(self.body(), sig=self.sig)

    def encode(self) -> bytes:
        return canonical.encode_unchecked(self.to_dict())


def seal_context(sender: str, ts: int, re_id: str) -> bytes:
    """What the sealed part is bound to: its sender, time and thread."""
    return f"{CONTEXT}|{sender}|{ts}|{re_id}".encode()


def compose(key: SigningKey, to: str, content: Content, ts: int, re_id: str = "") -> Message:
    """A message from `key` to `to`: content sealed to `to`, the whole signed by `key`."""
    if not is_account(to):
        raise Malformed("the recipient is a compressed public key in lowercase hex")
    if re_id and not _HEX64.fullmatch(re_id):
        raise Malformed("re is a message id (SHA-256 in lowercase hex)")
    box = seal.seal(bytes.fromhex(to), content.encode(), seal_context(key.public_key_hex, ts, re_id))
    body = {"v": VERSION, "from": key.public_key_hex, "to": to, "ts": ts, "re": re_id, "sealed": box.hex()}
    return check_message(dict(body, sig=key.sign(signing_bytes(body, DOMAIN)).hex()))


def _check_fields(doc: Any) -> None:
    if not isinstance(doc, dict) or doc.keys() != FIELDS:
        raise Malformed(f"a message has exactly {', '.join(sorted(FIELDS))}")
    v, ts = doc["v"], doc["ts"]
    if isinstance(v, bool) or v != VERSION:
        raise Malformed(f"unsupported message version {v!r} (this node reads {VERSION})")
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts <= MAX_SAFE_INT:
        raise Malformed("ts is network time in ms")
    if not is_account(doc["from"]) or not is_account(doc["to"]):
        raise Malformed("from and to are compressed public keys in lowercase hex")
    if not isinstance(doc["re"], str) or not (doc["re"] == "" or _HEX64.fullmatch(doc["re"])):
        raise Malformed("re is empty or a message id")
    sealed = doc["sealed"]
    if not isinstance(sealed, str) or not _HEX.fullmatch(sealed):
        raise Malformed("sealed is a box in lowercase hex")
    if len(sealed) > 2 * (MAX_CONTENT_BYTES + seal.OVERHEAD):
        raise TooLarge(f"a message's sealed part is at most {MAX_CONTENT_BYTES + seal.OVERHEAD} bytes")
    if not is_sig_hex(doc["sig"]):
        raise Malformed("sig is a DER signature in lowercase hex")


def check_message(doc: Any) -> Message:
    """A `Message` from a decoded document: `Malformed`, `TooLarge`, then (the costly one) `BadSignature`."""
    _check_fields(doc)
    signed = signing_bytes(doc, DOMAIN)
    if not signed_by(doc["from"], doc["sig"], signed):
        raise BadSignature("the message is not signed by its sender")
    return Message(
        sender=doc["from"],
        recipient=doc["to"],
        ts=doc["ts"],
        re=doc["re"],
        sealed=doc["sealed"],
        sig=doc["sig"],
        id=hashlib.sha256(signed).hexdigest(),
    )


def parse_message(data: bytes) -> Message:
    """A `Message` from wire bytes: bounded, canonical, then `check_message`."""
    try:
        doc = load_bounded(data, MAX_MESSAGE_BYTES, "a message")
    except LedgerError as exc:
        raise (TooLarge if len(data) > MAX_MESSAGE_BYTES else Malformed)(str(exc)) from None
    return check_message(doc)


def open_message(key: SigningKey, msg: Message) -> Content:
    """The content, for the recipient's key only (`NotForYou`, `Undecryptable`, `Malformed`)."""
    if msg.recipient != key.public_key_hex:
        raise NotForYou("this message is addressed to another key")
    try:
        data = seal.unseal(key, bytes.fromhex(msg.sealed), seal_context(msg.sender, msg.ts, msg.re), MAX_CONTENT_BYTES)
    except seal.SealError as exc:
        raise Undecryptable(str(exc)) from None
    return Content.decode(data)
