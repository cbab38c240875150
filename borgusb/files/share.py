"""A read-only share: a record signed by the owner naming one file, with the file's key wrapped to
the recipient, or one folder version, whose key reaches the recipient through the folder's
``readers`` (`keyring.readers_for`; each later version keeps them until the share is revoked).

Wire form, canonical JSON::

    {"v": 1, "owner": "02…", "to": "03…", "name": "report.pdf", "entry": {…}, "wrapped": "<hex>",
     "ts": 1764000000000, "sig": "3044…"}

``entry`` is the file's entry with its ``key`` emptied (the key travels only as ``wrapped``); the
signature is over every other member plus ``"d": "borgusb.files.share"``. A file's key is fresh for
each upload, so a share covers the version it names: revoking it means not sharing the next one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from .. import canonical
from ..canonical import MAX_SAFE_INT
from ..keys import SigningKey
from ..ledger.accounts import is_account
from ..signed import signed_by, signing_bytes
from .entry import Entry, check_name
from .errors import BadSignature, Malformed, TooLarge
from .keyring import unwrap, wrap

VERSION = 1
DOMAIN = "borgusb.files.share"
MAX_SHARE_BYTES = 4096
_FIELDS = frozenset(("v", "owner", "to", "name", "entry", "wrapped", "ts", "sig"))


@dataclass(frozen=True, slots=True)
class Share:
    owner: str
    to: str
    name: str
    entry: Entry  # key emptied
    wrapped: str
    ts: int
    sig: str
    id: str

    def body(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "owner": self.owner,
            "to": self.to,
            "name": self.name,
            "entry": self.entry.to_dict(),
            "wrapped": self.wrapped,
            "ts": self.ts,
        }

    def encode(self) -> bytes:
        return canonical.encode_unchecked(dict(self.body(), sig=self.sig))

    def file_entry(self, me: SigningKey) -> Entry:
        """The shared entry with its key, opened by the recipient's key (`Tampered` for any other)."""
        if not self.wrapped:  # public, or a folder (opened through its readers)
            return self.entry
        return replace(self.entry, key=unwrap(me, self.wrapped, "file", self.entry.obj).hex())


def check_share(doc: Any) -> Share:
    if not isinstance(doc, dict) or doc.keys() != _FIELDS or doc["v"] != VERSION:
        raise Malformed(f"a share has exactly {', '.join(sorted(_FIELDS))} (version {VERSION})")
    if not is_account(doc["owner"]) or not is_account(doc["to"]):
        raise Malformed("owner and to are public keys")
    entry = Entry.from_dict(doc["entry"])
    if entry.kind == "gone" or entry.key or (entry.kind == "folder" and doc["wrapped"] != ""):
        raise Malformed("a share names a file or a folder, without a key in the clear (a folder's is in its readers)")
    ts, wrapped, sig = doc["ts"], doc["wrapped"], doc["sig"]
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts <= MAX_SAFE_INT:
        raise Malformed("ts is a non-negative integer")
    if not isinstance(wrapped, str) or len(wrapped) > 512 or not isinstance(sig, str) or len(sig) > 146:
        raise Malformed("wrapped and sig are short hex")
    try:
        bytes.fromhex(sig)
        bytes.fromhex(wrapped)
    except ValueError:
        raise Malformed("wrapped and sig are hex") from None
    signed = signing_bytes(doc, DOMAIN)
    share = Share(doc["owner"], doc["to"], check_name(doc["name"]), entry, wrapped, ts, sig, "")
    if not signed_by(share.owner, sig, signed):
        raise BadSignature("the share is not signed by its owner")
    return replace(share, id=hashlib.sha256(signed).hexdigest())


def parse_share(data: bytes) -> Share:
    if len(data) > MAX_SHARE_BYTES:
        raise TooLarge(f"a share is at most {MAX_SHARE_BYTES} bytes")
    try:
        return check_share(canonical.loads_canonical(data))
    except canonical.CanonicalError as exc:
        raise Malformed(str(exc)) from None


def make_share(key: SigningKey, to: str, name: str, entry: Entry, ts: int) -> Share:
    """`key`'s `entry` (with its key) shared read-only with `to`; a folder must already list `to`
    among its readers."""
    wrapped = wrap(to, bytes.fromhex(entry.key), "file", entry.obj) if entry.private and entry.kind == "file" else ""
    body = {
        "v": VERSION,
        "owner": key.public_key_hex,
        "to": to,
        "name": name,
        "entry": replace(entry, key="").to_dict(),
        "wrapped": wrapped,
        "ts": ts,
    }
    return check_share(dict(body, sig=key.sign(signing_bytes(body, DOMAIN)).hex()))
