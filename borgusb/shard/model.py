"""Shard records, manifests and tombstones: what an owner signs.

* **Shard record** ``{"h", "n", "o", "t", "s"}``: the SHA-256 of the shard's
  bytes (hex), their size, the owner's public key, the owner's timestamp (ms)
  and the owner's signature over the canonical JSON of
  ``{"d": "borgusb.shard", "h", "n", "o", "t"}``. Holders keep the record next
  to the bytes, so any node can show who owns a copy without asking the owner.
* **Manifest** ``{"v", "id", "size", "ss", "r", "shards", "o", "t", "s"}``
  (format ``v`` 2): the object's id, its size, the shard size, the replication
  factor the owner asked for, the shard hashes in order, and the owner's
  signature over the rest (domain ``borgusb.manifest``). Shard i covers bytes
  ``[i*ss, min((i+1)*ss, size))``. The id is `object_id`: the SHA-256 of the
  canonical list of the shards' hashes and sizes, with the shard size and the
  total size, so it still comes from the content alone (the same bytes in the
  same shard size give the same id), and a reader that checks each shard
  against the manifest and the manifest against the id has checked every
  byte exactly once (no second pass over the whole file). Format 1 (no ``v``,
  id = the whole file's SHA-256) is refused with ``old_manifest_format``.
* **Tombstone** ``{"id", "o", "t", "s"}`` (domain ``borgusb.tomb``): the owner
  deletes object ``id``; anything of that owner's about it signed at or
  before ``t`` is refused from then on, so an old store request cannot bring
  it back. It travels with the owner's manifest of the object
  (`check_tomb_manifest`), so that a node that never held the manifest still
  learns which shards the deletion covers. A tombstone only ever speaks for
  its own signer: another key's tombstone for the same id touches nothing of
  the owner's (see `borgusb.shard.tombstones`).

The domain member keeps a signature for one kind from being replayed as
another, and none of them can pass for an envelope (envelopes have no ``d``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any, BinaryIO, TypeGuard

from .. import canonical
from ..keys import SigningKey
from ..signed import is_sig_hex, signed_by

# 1 MiB, from measurement (bench_dstream --sweep, README "Shard size"): each shard
# costs a fixed ~0.8 ms of CPU on loopback (two signatures, two verifications,
# an HTTP exchange, two thread hops), so 64 KiB ran at 70 MB/s, 256 KiB (the
# seed's ~270 KiB) at 165 MB/s and 1 MiB at 314 MB/s. Larger shards buy little
# more, resume and re-replicate in bigger steps, and hold more memory per request.
SHARD_SIZE = 1024 * 1024
MAX_SHARD = 4 * 1024 * 1024
MAX_SHARDS = 12_000  # 65 bytes each: a manifest stays well inside one 1 MiB envelope (≈ 3 GB at 256 KiB)
DEFAULT_R = 3
MAX_R = 16

_HEX64 = re.compile(r"[0-9a-f]{64}")
_PUBKEY = re.compile(r"0[23][0-9a-f]{64}")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class BadRecord(ValueError):
    """A record, manifest or tombstone that is malformed or not signed by its owner."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def is_hash(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _signed(domain: str, doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "s"}
    body["d"] = domain
    return canonical.encode_unchecked(body)


def _sign(key: SigningKey, domain: str, doc: dict[str, Any]) -> dict[str, Any]:
    doc = dict(doc, o=key.public_key_hex)
    doc["s"] = key.sign(_signed(domain, doc)).hex()
    return doc


def _check_sig(domain: str, doc: dict[str, Any]) -> None:
    owner, sig = doc.get("o"), doc.get("s")
    if not isinstance(owner, str) or not _PUBKEY.fullmatch(owner):
        raise BadRecord("malformed", "owner must be a compressed public key")
    if not is_sig_hex(sig):
        raise BadRecord("malformed", "signature must be hex DER")
    if not signed_by(owner, sig, _signed(domain, doc)):
        raise BadRecord("bad_owner_signature", "not signed by the owner it names")


def _int(doc: dict[str, Any], name: str, lo: int, hi: int) -> int:
    v = doc.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise BadRecord("malformed", f"{name} must be an integer in {lo}..{hi}")
    return v


# ------------------------------------------------------------------ records

RECORD_KEYS = frozenset("hnots")


def sign_record(key: SigningKey, h: str, n: int, t: int) -> dict[str, Any]:
    return _sign(key, "borgusb.shard", {"h": h, "n": n, "t": t})


def check_record(rec: Any) -> dict[str, Any]:
    """Return rec if it is a well-formed record signed by its owner, else raise BadRecord."""
    if not isinstance(rec, dict) or rec.keys() != RECORD_KEYS:
        raise BadRecord("malformed", "a shard record has exactly h, n, o, t, s")
    if not is_hash(rec["h"]):
        raise BadRecord("malformed", "h must be a SHA-256 in lowercase hex")
    _int(rec, "n", 0, MAX_SHARD)
    _int(rec, "t", 0, 2**53)
    _check_sig("borgusb.shard", rec)
    return rec


# ------------------------------------------------------------------ splitting


def shard_bounds(size: int, ss: int) -> list[tuple[int, int]]:
    """(offset, length) of each shard of an object of `size` bytes."""
    return [(off, min(ss, size - off)) for off in range(0, size, ss)]


def split(data: bytes | memoryview, ss: int = SHARD_SIZE) -> Iterator[tuple[int, memoryview]]:
    view = memoryview(data)
    for off, n in shard_bounds(len(view), ss):
        yield off, view[off : off + n]


def split_file(f: BinaryIO, ss: int = SHARD_SIZE) -> Iterator[bytes]:
    while True:
        chunk = f.read(ss)
        if not chunk:
            return
        yield chunk


# ------------------------------------------------------------------ manifests

MANIFEST_VERSION = 2
MANIFEST_KEYS = frozenset(("v", "id", "size", "ss", "r", "shards", "o", "t", "s"))
_V1_KEYS = MANIFEST_KEYS - {"v"}


def object_id(size: int, ss: int, shards: list[str]) -> str:
    """An object's id: the SHA-256 of the canonical ``{"d": "borgusb.object", "v": 2, "size",
    "ss", "shards": [[hash, bytes], ...]}``. Shard sizes follow from size and ss, but are
    committed to anyway, so the id alone says how every byte is laid out."""
    if len(shards) != -(-size // ss):  # before any list is built from size: it may be hostile
        raise BadRecord("malformed", f"{size} bytes in shards of {ss} need {-(-size // ss)} shards, not {len(shards)}")
    sizes = [n for _, n in shard_bounds(size, ss)]
    body = {
        "d": "borgusb.object",
        "v": MANIFEST_VERSION,
        "size": size,
        "ss": ss,
        "shards": list(map(list, zip(shards, sizes))),
    }
    return hashlib.sha256(canonical.encode_unchecked(body)).hexdigest()


def sign_manifest(key: SigningKey, size: int, ss: int, r: int, shards: list[str], t: int) -> dict[str, Any]:
    """The owner's manifest of an object; its id is computed here, never given."""
    _int({"ss": ss}, "ss", 1, MAX_SHARD)
    oid = object_id(size, ss, shards)
    m = {"v": MANIFEST_VERSION, "id": oid, "size": size, "ss": ss, "r": r, "shards": list(shards), "t": t}
    check_manifest_shape(dict(m, o=key.public_key_hex, s="00" * 8))
    return _sign(key, "borgusb.manifest", m)


def check_manifest_shape(m: Any) -> dict[str, Any]:
    """m if it is a well-formed format-2 manifest whose id is its shard list's (`object_id`)."""
    if isinstance(m, dict) and m.keys() == _V1_KEYS:
        raise BadRecord(
            "old_manifest_format", "format 1 (id = the whole file's SHA-256) is no longer read; put it again"
        )
    if not isinstance(m, dict) or m.keys() != MANIFEST_KEYS:
        raise BadRecord("malformed", "a manifest has exactly v, id, size, ss, r, shards, o, t, s")
    if m["v"] != MANIFEST_VERSION or isinstance(m["v"], bool):
        raise BadRecord("unknown_manifest_format", f"manifest format {str(m['v'])[:20]!r}; this node reads 2")
    if not is_hash(m["id"]):
        raise BadRecord("malformed", "id must be a SHA-256 in lowercase hex")
    size = _int(m, "size", 0, 2**53)
    ss = _int(m, "ss", 1, MAX_SHARD)
    _int(m, "r", 1, MAX_R)
    _int(m, "t", 0, 2**53)
    shards = m["shards"]
    if not isinstance(shards, list) or len(shards) > MAX_SHARDS or not all(is_hash(h) for h in shards):
        raise BadRecord("malformed", "shards must be a list of SHA-256 hashes")
    if len(shards) != -(-size // ss):
        raise BadRecord("malformed", f"{size} bytes in shards of {ss} need {-(-size // ss)} shards, not {len(shards)}")
    if object_id(size, ss, shards) != m["id"]:
        raise BadRecord("id_mismatch", "the id is not the SHA-256 of this shard list")
    return m


def check_manifest(m: Any) -> dict[str, Any]:
    check_manifest_shape(m)
    _check_sig("borgusb.manifest", m)
    return m


def manifest_bounds(m: dict[str, Any]) -> list[tuple[int, int]]:
    return shard_bounds(m["size"], m["ss"])


# ------------------------------------------------------------------ tombstones

TOMB_KEYS = frozenset(("id", "o", "t", "s"))


def sign_tomb(key: SigningKey, object_id: str, t: int) -> dict[str, Any]:
    return _sign(key, "borgusb.tomb", {"id": object_id, "t": t})


def check_tomb(tomb: Any) -> dict[str, Any]:
    if not isinstance(tomb, dict) or tomb.keys() != TOMB_KEYS or not is_hash(tomb.get("id")):
        raise BadRecord("malformed", "a tombstone has exactly id, o, t, s")
    _int(tomb, "t", 0, 2**53)
    _check_sig("borgusb.tomb", tomb)
    return tomb


def check_tomb_manifest(tomb: dict[str, Any], m: Any) -> dict[str, Any]:
    """m, checked as the manifest the tombstone's own signer signed for the object it deletes.

    A manifest is no proof of who owns an id (anyone can sign one for any id): it only tells,
    under the owner's signature, which shards the owner's deletion covers."""
    check_manifest(m)
    if m["id"] != tomb["id"]:
        raise BadRecord("malformed", "the manifest sent with a tombstone must be of the object it deletes")
    if m["o"] != tomb["o"]:
        raise BadRecord("not_owner", "the manifest sent with a tombstone must be its signer's")
    return m
