"""A folder's entries: names to files, sub-folders and tombstones, and the rules for names.

An entry is what a folder says about one name::

    {"kind": "file", "obj": "<shard object id>", "size": 1234, "type": "text/plain",
     "mtime": 1764000000000, "key": "<64 hex: the file's AES key>"}

* ``kind``: ``file``, ``folder`` (``obj`` is the id of the sub-folder's manifest version) or
  ``gone`` (a tombstone: ``obj``, ``type`` and ``key`` empty, ``size`` 0, ``mtime`` when it was
  removed). A tombstone stays so that a merge with a concurrent version does not bring the
  name back.
* ``key``: the child's content key (the file's, or the sub-folder version's), present exactly
  when the child is private. Only a private folder, itself encrypted, may hold one, so knowing a
  private folder's key opens everything below it, and a public folder holds only public children.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..canonical import MAX_SAFE_INT
from .errors import BadName, Malformed

KINDS = ("file", "folder", "gone")
MAX_NAME_BYTES = 255
MAX_TYPE = 100
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIELDS = frozenset(("kind", "obj", "size", "type", "mtime", "key"))


def check_name(name: object) -> str:
    """`name` if it can name an entry: 1..255 UTF-8 bytes, NFC, no "/", no control characters,
    not "." or ".."; else `BadName`."""
    if not isinstance(name, str) or not name or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise BadName("a name is 1..255 bytes of UTF-8")
    if name in (".", "..") or "/" in name or "\\" in name:
        raise BadName(f"{name[:40]!r} is not a name (no '/', '\\', '.' or '..')")
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in name):
        raise BadName("a name has no control characters")
    if unicodedata.normalize("NFC", name) != name:
        raise BadName("a name is in Unicode NFC form")
    return name


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str
    obj: str
    size: int
    type: str
    mtime: int
    key: str

    @property
    def live(self) -> bool:
        return self.kind != "gone"

    @property
    def private(self) -> bool:
        return self.key != ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "obj": self.obj,
            "size": self.size,
            "type": self.type,
            "mtime": self.mtime,
            "key": self.key,
        }

    @classmethod
    def from_dict(cls, doc: object) -> Entry:
        if not isinstance(doc, dict) or doc.keys() != _FIELDS:
            raise Malformed(f"an entry has exactly {', '.join(sorted(_FIELDS))}")
        kind, obj, size, typ, mtime, key = (doc[k] for k in ("kind", "obj", "size", "type", "mtime", "key"))
        if kind not in KINDS:
            raise Malformed(f"an entry's kind is one of {', '.join(KINDS)}")
        for name, v in (("size", size), ("mtime", mtime)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SAFE_INT:
                raise Malformed(f"{name} is a non-negative integer")
        if not isinstance(typ, str) or len(typ) > MAX_TYPE or not typ.isprintable():
            raise Malformed(f"type is printable text of at most {MAX_TYPE} characters")
        if not isinstance(obj, str) or not isinstance(key, str):
            raise Malformed("obj and key are strings")
        if kind == "gone":
            if obj or key or typ or size:
                raise Malformed("a tombstone has no object, key, type or size")
        else:
            if not _HEX64.fullmatch(obj):
                raise Malformed("obj is a SHA-256 in lowercase hex")
            if key and not _HEX64.fullmatch(key):
                raise Malformed("key is empty (public) or 32 bytes in lowercase hex")
        return cls(kind, obj, size, typ, mtime, key)


def tombstone(now_ms: int) -> Entry:
    return Entry("gone", "", 0, "", now_ms, "")


def entries_to_doc(entries: Mapping[str, Entry]) -> dict[str, Any]:
    return {name: e.to_dict() for name, e in entries.items()}


def entries_from_doc(doc: object, limit: int) -> dict[str, Entry]:
    if not isinstance(doc, dict):
        raise Malformed("entries are an object of names")
    if len(doc) > limit:
        raise Malformed(f"a folder has at most {limit} entries, tombstones included")
    return {check_name(name): Entry.from_dict(e) for name, e in doc.items()}
