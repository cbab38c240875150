"""A folder version: a manifest signed by its owner, listing its entries in the clear (public) or
encrypted (private).

Wire form, canonical JSON (`borgusb.canonical`), at most `MAX_MANIFEST_BYTES`::

    {"v": 1, "owner": "02…", "folder": "<64 hex>", "version": 3, "parents": ["<id>"],
     "ts": 1764000000000, "machine": "laptop", "public": false,
     "entries": {}, "sealed": "<hex>", "readers": {"02…": "<hex>"}, "sig": "3044…"}

* ``folder``: the folder's own id, fixed when it is made and kept by every version of it.
* ``version`` counts from 1; ``parents`` name the version(s) it was made from by their shard
  object ids (where their manifests are stored): none for the first, one for an edit or a
  restore, two for a merge of concurrent versions (`merge`). Any earlier version can be read
  again, so history is the chain of parents.
* A public folder's ``entries`` are in the clear and ``sealed`` is empty. A private folder's
  ``entries`` are empty and ``sealed`` is their canonical JSON under AES-256-GCM with the version's
  own fresh key (never reused, so the nonce is zero) and the version's header as associated data;
  ``readers`` maps each key allowed to read it (the owner always; shares) to the version key
  wrapped to it (`keyring`). A share is revoked by leaving its reader out of the next version.
* ``sig``: DER ECDSA by ``owner`` over the canonical JSON of every other member plus
  ``"d": "borgusb.files.folder"`` (the domain, as `borgusb.ledger.tx` does it).

**The id** is the SHA-256 of those signed bytes: what the owner signed, fixed before signing. A
version is stored as a shard object (`files.remote`), and entries, parents and root pointers name
it by that object's id; ``id`` orders concurrent versions in a merge.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import canonical
from ..canonical import MAX_SAFE_INT
from ..keys import SigningKey
from ..ledger.accounts import is_account
from ..signed import is_sig_hex, signed_by
from ..signed import signing_bytes as doc_signing_bytes
from .entry import Entry, entries_from_doc, entries_to_doc
from .errors import BadSignature, Malformed, NotFound, Tampered, TooLarge

VERSION = 1
DOMAIN = "borgusb.files.folder"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_ENTRIES = 10_000
MAX_READERS = 64
MAX_MACHINE = 64
MAX_WRAPPED_HEX = 512
_FIELDS = frozenset(
    ("v", "owner", "folder", "version", "parents", "ts", "machine", "public", "entries", "sealed", "readers", "sig")
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_ZERO_NONCE = bytes(12)


@dataclass(frozen=True, slots=True)
class Folder:
    """A checked folder version. Made only by `make_folder`, `check_folder` and `parse_folder`."""

    owner: str
    folder: str
    version: int
    parents: tuple[str, ...]
    ts: int
    machine: str
    public: bool
    entries_doc: Mapping[str, Any]
    sealed: str
    readers: Mapping[str, str]
    sig: str
    id: str

    def body(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "owner": self.owner,
            "folder": self.folder,
            "version": self.version,
            "parents": list(self.parents),
            "ts": self.ts,
            "machine": self.machine,
            "public": self.public,
            "entries": dict(self.entries_doc),
            "sealed": self.sealed,
            "readers": dict(self.readers),
        }

    def encode(self) -> bytes:
        return canonical.encode_unchecked(dict(self.body(), sig=self.sig))


def signing_bytes(body: Mapping[str, Any]) -> bytes:
    """What the owner signs and the folder's id hashes (`borgusb.signed.signing_bytes`)."""
    return doc_signing_bytes(body, DOMAIN)


def _aad(body: Mapping[str, Any]) -> bytes:
    """What binds a private folder's ciphertext to its version: everything but the payload."""
    head = {k: body[k] for k in ("owner", "folder", "version", "parents", "ts", "machine")}
    head["d"] = DOMAIN + ".sealed"
    return canonical.encode_unchecked(head)


def _int(doc: Mapping[str, Any], name: str, lo: int) -> int:
    v = doc[name]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= MAX_SAFE_INT:
        raise Malformed(f"{name} is an integer of at least {lo}")
    return v


def _check_fields(doc: Any) -> None:
    if not isinstance(doc, dict) or doc.keys() != _FIELDS:
        raise Malformed(f"a folder has exactly {', '.join(sorted(_FIELDS))}")
    if _int(doc, "v", 0) != VERSION:
        raise Malformed(f"unsupported folder version {doc['v']} (this node reads {VERSION})")
    if not is_account(doc["owner"]):
        raise Malformed("owner is a compressed secp256k1 public key in lowercase hex")
    if not isinstance(doc["folder"], str) or not _HEX64.fullmatch(doc["folder"]):
        raise Malformed("folder is 32 bytes in lowercase hex")
    version = _int(doc, "version", 1)
    _int(doc, "ts", 0)
    parents = doc["parents"]
    if not isinstance(parents, list) or len(parents) > 2 or len(set(parents)) != len(parents):
        raise Malformed("parents are at most two distinct object ids")
    if any(not isinstance(p, str) or not _HEX64.fullmatch(p) for p in parents):
        raise Malformed("a parent is an object id (SHA-256 in lowercase hex)")
    if (version == 1) != (not parents):
        raise Malformed("version 1 has no parents, and only version 1")
    machine = doc["machine"]
    if not isinstance(machine, str) or len(machine) > MAX_MACHINE or not machine.isprintable():
        raise Malformed(f"machine is printable text of at most {MAX_MACHINE} characters")
    if not isinstance(doc["public"], bool):
        raise Malformed("public is true or false")
    if not is_sig_hex(doc["sig"]):
        raise Malformed("sig is a DER signature in lowercase hex")
    readers, sealed = doc["readers"], doc["sealed"]
    if not isinstance(readers, dict) or len(readers) > MAX_READERS:
        raise Malformed(f"readers are an object of at most {MAX_READERS} keys")
    for k, w in readers.items():
        if not is_account(k) or not isinstance(w, str) or len(w) > MAX_WRAPPED_HEX or not _HEX.fullmatch(w):
            raise Malformed("a reader is a public key mapped to its wrapped key in hex")
    if not isinstance(sealed, str) or not _HEX.fullmatch(sealed):
        raise Malformed("sealed is hex")
    entries = entries_from_doc(doc["entries"], MAX_ENTRIES)
    if doc["public"]:
        if sealed or readers:
            raise Malformed("a public folder has its entries in the clear, no sealed part and no readers")
        if any(e.private for e in entries.values()):
            raise Malformed("a public folder holds only public entries")
    elif entries or not sealed or doc["owner"] not in readers:
        raise Malformed("a private folder has only sealed entries, and its owner among its readers")


def check_folder(doc: Any, *, verify: bool = True) -> Folder:
    """A `Folder` from a decoded manifest; `Malformed` or, last, `BadSignature` (only the owner's
    signature makes a folder: nobody else's key can write into it)."""
    _check_fields(doc)
    signed = signing_bytes(doc)
    folder = Folder(
        owner=doc["owner"],
        folder=doc["folder"],
        version=doc["version"],
        parents=tuple(doc["parents"]),
        ts=doc["ts"],
        machine=doc["machine"],
        public=doc["public"],
        entries_doc=doc["entries"],
        sealed=doc["sealed"],
        readers=doc["readers"],
        sig=doc["sig"],
        id=hashlib.sha256(signed).hexdigest(),
    )
    if verify and not signed_by(folder.owner, folder.sig, signed):
        raise BadSignature("the folder is not signed by its owner")
    return folder


def parse_folder(data: bytes) -> Folder:
    """A `Folder` from wire bytes: bounded, canonical, then `check_folder`."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise TooLarge(f"a folder manifest is at most {MAX_MANIFEST_BYTES} bytes")
    try:
        doc = canonical.loads_canonical(data)
    except canonical.CanonicalError as exc:
        raise Malformed(str(exc)) from None
    return check_folder(doc)


def make_folder(
    key: SigningKey,
    *,
    folder: str,
    version: int,
    parents: tuple[str, ...],
    ts: int,
    machine: str,
    entries: Mapping[str, Entry],
    content_key: bytes | None,
    readers: Mapping[str, str],
) -> Folder:
    """A folder version signed by `key`. Public when `content_key` is None; otherwise its entries
    are sealed under `content_key`, which must be fresh, and `readers` holds that key wrapped to
    each reader (the owner first of all)."""
    body: dict[str, Any] = {
        "v": VERSION,
        "owner": key.public_key_hex,
        "folder": folder,
        "version": version,
        "parents": list(parents),
        "ts": ts,
        "machine": machine,
        "public": content_key is None,
        "entries": {},
        "sealed": "",
        "readers": dict(readers),
    }
    doc = entries_to_doc(entries)
    if content_key is None:
        body["entries"] = doc
    else:
        body["sealed"] = AESGCM(content_key).encrypt(_ZERO_NONCE, canonical.encode_unchecked(doc), _aad(body)).hex()
    _check_fields(dict(body, sig="00" * 8))
    encoded = signing_bytes(body)
    if len(encoded) > MAX_MANIFEST_BYTES - 200:
        raise TooLarge(f"a folder manifest is at most {MAX_MANIFEST_BYTES} bytes")
    return check_folder(dict(body, sig=key.sign(encoded).hex()))


def open_entries(folder: Folder, content_key: bytes | None) -> dict[str, Entry]:
    """The folder's entries: in the clear for a public folder, else opened with its version key."""
    if folder.public:
        return entries_from_doc(dict(folder.entries_doc), MAX_ENTRIES)
    if content_key is None or len(content_key) != 32:
        raise NotFound("a private folder needs its 32-byte version key")
    try:
        plain = AESGCM(content_key).decrypt(_ZERO_NONCE, bytes.fromhex(folder.sealed), _aad(folder.body()))
    except InvalidTag:
        raise Tampered("the folder's entries do not open under this key") from None
    try:
        doc = canonical.loads_canonical(plain)
    except canonical.CanonicalError as exc:
        raise Malformed(str(exc)) from None
    return entries_from_doc(doc, MAX_ENTRIES)
