"""The content-addressed shard store on one node (no sockets).

Layout under the store's root (the cell's ``data_dir``)::

    shards/ab/<sha256>        the bytes
    shards/ab/<sha256>.rec    {"rec": owner record, "objs": [object ids]}
    manifests/<id>.json       the owner-signed manifest
    tombs/<id>.json           the owner's tombstone of a deleted object
    tmp/                      writes in progress (cleared at start)

* **Atomic**: every file is written to ``tmp/``, flushed (and fsynced when
  `durable`), then renamed into place; the record is renamed after the bytes,
  so a shard counts only when both are there. A crash leaves at most a
  stray temp file, which the next start removes: never a partial shard.
* **Quota**: a write that would pass `quota_bytes` is refused with
  `StoreFull` before anything is written.
* **Integrity on read**: a shard's SHA-256 (its name) is checked once, when it
  is written; its record then keeps the CRC-32 of those verified bytes, and
  every read (`get`, and `open_checked`, the data channel's zero-copy read of
  the mapped file) checks that CRC: the question on read is only "did the disk
  change these bytes since they were verified", which CRC-32 answers at ~6 GB/s
  against SHA-256's ~2 GB/s (every burst of up to 32 flipped bits is caught,
  anything else all but 1 in 2^32 times). A mismatch drops the copy (bytes
  gone, record kept in `lost` so the cell can refetch it) and raises
  `Corrupt`: a corrupt shard is never served. Deliberate tampering that keeps
  the CRC is still caught twice: by every reader, which checks each shard's
  SHA-256 against the owner-signed manifest before writing it, and by `scrub`,
  which re-hashes stored shards with SHA-256 in the background. A record
  written before CRCs were kept is checked by SHA-256 on every read.
* **Ownership**: the first owner of a hash owns it; the same owner may
  replace the record (newer ``t``); anyone else's record for that hash
  changes nothing (`Refused("other_owner")`). A tombstone refuses anything of
  its owner's about that object signed at or before it (`Refused("tombstoned")`).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

from . import model

_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # one fault-in, not one per page


class StoreError(Exception):
    reason = "refused"
    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)


class StoreFull(StoreError):
    reason = "quota"
    status = 507


class Refused(StoreError):
    def __init__(self, reason: str, detail: str, status: int = 409) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status


class Corrupt(StoreError):
    reason = "corrupt"
    status = 410


class ShardStore:
    def __init__(self, root: Path, quota_bytes: int = 1 << 30, *, durable: bool = False) -> None:
        self.root = Path(root)
        self.quota_bytes = quota_bytes
        self.durable = durable
        self.counters: Counter[str] = Counter()
        self.records: dict[str, dict[str, Any]] = {}  # hash -> {"rec":..., "objs":[...]}
        self.manifests: dict[str, dict[str, Any]] = {}
        self.tombs: dict[str, dict[str, Any]] = {}
        self.lost: dict[str, dict[str, Any]] = {}  # dropped as corrupt, to refetch
        self.used_bytes = 0
        for sub in ("shards", "manifests", "tombs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.root / "tmp", ignore_errors=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        self._load()

    # ------------------------------------------------------------ files

    def _shard_path(self, h: str) -> Path:
        return self.root / "shards" / h[:2] / h

    def _write_atomic(self, path: Path, data: bytes | memoryview) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "tmp" / f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if self.durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _load(self) -> None:
        for rec_path in (self.root / "shards").glob("*/*.rec"):
            try:
                doc = json.loads(rec_path.read_bytes())
                rec = model.check_record(doc["rec"])
                data_path = rec_path.with_suffix("")
                if data_path.stat().st_size != rec["n"]:
                    raise ValueError("size")
            except (OSError, ValueError, KeyError, TypeError, model.BadRecord):
                rec_path.unlink(missing_ok=True)
                rec_path.with_suffix("").unlink(missing_ok=True)
                self.counters["load_dropped"] += 1
                continue
            entry: dict[str, Any] = {"rec": rec, "objs": [o for o in doc.get("objs", []) if model.is_hash(o)]}
            crc = doc.get("crc")
            if isinstance(crc, int) and not isinstance(crc, bool) and 0 <= crc < 1 << 32:
                entry["crc"] = crc
            self.records[rec["h"]] = entry
            self.used_bytes += rec["n"]
        for data_path in (self.root / "shards").glob("*/*"):
            if data_path.suffix != ".rec" and data_path.name not in self.records:
                data_path.unlink(missing_ok=True)  # bytes without a record: an interrupted write
        for kind, table, check in (
            ("manifests", self.manifests, model.check_manifest),
            ("tombs", self.tombs, model.check_tomb),
        ):
            for path in (self.root / kind).glob("*.json"):
                try:
                    doc = check(json.loads(path.read_bytes()))
                    table[doc["id"]] = doc
                except (OSError, ValueError, model.BadRecord):
                    path.unlink(missing_ok=True)

    # ------------------------------------------------------------ shards

    def has(self, h: str) -> bool:
        return h in self.records

    def record(self, h: str) -> dict[str, Any] | None:
        entry = self.records.get(h)
        return entry["rec"] if entry else None

    def hashes_of(self, object_id: str) -> list[str]:
        m = self.manifests.get(object_id)
        wanted = set(m["shards"]) if m else None
        return [h for h, e in self.records.items() if object_id in e["objs"] or (wanted is not None and h in wanted)]

    def _tombstoned(self, owner: str, t: int, objs: list[str]) -> bool:
        return any((tomb := self.tombs.get(o)) and tomb["o"] == owner and t <= tomb["t"] for o in objs)

    def put(self, rec: dict[str, Any], data: bytes | memoryview, obj: str | None = None) -> str:
        """Store a shard; returns "stored", "replaced" or "exists". Raises StoreError."""
        try:
            model.check_record(rec)
        except model.BadRecord as exc:
            self.counters[f"refused:{exc.reason}"] += 1
            raise Refused(exc.reason, str(exc), 403) from None
        h, n = rec["h"], rec["n"]
        if len(data) != n or model.sha256_hex(data) != h:
            self.counters["refused:hash_mismatch"] += 1
            raise Refused("hash_mismatch", "the bytes do not match the record's SHA-256 and size", 422)
        objs = [obj] if obj else []
        if self._tombstoned(rec["o"], rec["t"], objs):
            self.counters["refused:tombstoned"] += 1
            raise Refused("tombstoned", "the owner deleted this object after this record was signed", 410)
        entry = self.records.get(h)
        if entry is not None:
            old = entry["rec"]
            if old["o"] != rec["o"]:
                self.counters["refused:other_owner"] += 1
                raise Refused("other_owner", "this hash is owned by another key; nothing changed")
            changed = False
            if obj and obj not in entry["objs"]:
                entry["objs"].append(obj)
                changed = True
            if rec["t"] > old["t"]:
                entry["rec"] = rec
                changed = True
            if changed:
                self._write_atomic(self._shard_path(h).with_suffix(".rec"), json.dumps(entry).encode())
                return "replaced"
            return "exists"
        if self.used_bytes + n > self.quota_bytes:
            self.counters["refused:quota"] += 1
            raise StoreFull(
                f"store full: {self.used_bytes} of {self.quota_bytes} bytes used, a shard of {n} does not fit"
            )
        path = self._shard_path(h)
        entry = {"rec": rec, "objs": objs, "crc": zlib.crc32(data)}
        self.used_bytes += n  # reserved before the write so concurrent writers cannot overshoot
        try:
            self._write_atomic(path, data)
            self._write_atomic(path.with_suffix(".rec"), json.dumps(entry).encode())
        except BaseException:
            self.used_bytes -= n
            path.unlink(missing_ok=True)
            raise
        self.records[h] = entry
        self.lost.pop(h, None)
        self.counters["stored"] += 1
        return "stored"

    def get(self, h: str) -> tuple[dict[str, Any], bytes] | None:
        """(record, bytes) checked against the hash; None if absent; Corrupt if the copy was bad."""
        entry = self.records.get(h)
        if entry is None:
            return None
        data = self._read(h)
        if len(data) != entry["rec"]["n"] or not self._intact(h, entry, data):
            self._lose(h, entry)
            raise Corrupt(f"the copy of {h[:16]}… on this node was corrupt and has been dropped")
        self.counters["served"] += 1
        return entry["rec"], data

    def open_checked(self, h: str) -> tuple[dict[str, Any], BinaryIO, int] | None:
        """(record, open file, size) for serving by ``sendfile``, checked first.

        The same check as `get` (a corrupt copy is dropped and `Corrupt` raised, so it is never
        served) without copying the bytes: the file is mapped and checked in place, then the
        caller sends the very pages it just checked from the page cache and closes the file.
        None if absent."""
        entry = self.records.get(h)
        if entry is None:
            return None
        n = entry["rec"]["n"]
        f: BinaryIO | None = None
        ok = False
        try:
            f = open(self._shard_path(h), "rb")
            if os.fstat(f.fileno()).st_size == n:
                if n:
                    with mmap.mmap(f.fileno(), n, flags=_MAP_FLAGS, prot=mmap.PROT_READ) as mm:
                        ok = self._intact(h, entry, mm)
                else:
                    ok = model.sha256_hex(b"") == h
        except (OSError, ValueError):
            ok = False
        if not ok:
            if f is not None:
                f.close()
            self._lose(h, entry)
            raise Corrupt(f"the copy of {h[:16]}… on this node was corrupt and has been dropped")
        assert f is not None
        self.counters["served"] += 1
        return entry["rec"], f, n

    @staticmethod
    def _intact(h: str, entry: dict[str, Any], data: bytes | memoryview | mmap.mmap) -> bool:
        """The read check: the CRC-32 kept since the bytes were verified, else their SHA-256."""
        crc = entry.get("crc")
        if crc is not None:
            return zlib.crc32(data) == crc
        return hashlib.sha256(data).hexdigest() == h

    def scrub(self, h: str) -> bool:
        """Re-hash one stored shard with SHA-256 (the background scrub): False, and the copy
        dropped into `lost` for a refetch, if its bytes no longer match its name."""
        entry = self.records.get(h)
        if entry is None:
            return True
        data = self._read(h)
        self.counters["scrubbed"] += 1
        if len(data) == entry["rec"]["n"] and model.sha256_hex(data) == h:
            return True
        if self.records.get(h) is entry:  # not replaced by a fresh copy while we hashed
            self._lose(h, entry)
            self.counters["scrub_corrupt"] += 1
        return False

    def _read(self, h: str) -> bytes:
        """The stored bytes of shard h; b"" (which no check accepts) if the file is unreadable."""
        try:
            return self._shard_path(h).read_bytes()
        except OSError:
            return b""

    def _lose(self, h: str, entry: dict[str, Any]) -> None:
        """A corrupt copy: drop it and keep its record in `lost`, for the cell to refetch."""
        self._drop(h)
        self.lost[h] = entry
        self.counters["corrupt_dropped"] += 1

    def _drop(self, h: str) -> None:
        entry = self.records.pop(h, None)
        if entry is not None:
            self.used_bytes -= entry["rec"]["n"]
        path = self._shard_path(h)
        path.with_suffix(".rec").unlink(missing_ok=True)
        path.unlink(missing_ok=True)

    # ------------------------------------------------------------ manifests

    def put_manifest(self, m: Any) -> str:
        try:
            model.check_manifest(m)
        except model.BadRecord as exc:
            self.counters[f"refused:manifest_{exc.reason}"] += 1
            raise Refused(exc.reason, str(exc), 403) from None
        oid = m["id"]
        tomb = self.tombs.get(oid)
        if tomb and tomb["o"] == m["o"] and m["t"] <= tomb["t"]:
            self.counters["refused:tombstoned"] += 1
            raise Refused("tombstoned", "the owner deleted this object after this manifest was signed", 410)
        old = self.manifests.get(oid)
        if old is not None:
            if old["o"] != m["o"]:
                self.counters["refused:other_owner"] += 1
                raise Refused("other_owner", "this object is owned by another key; nothing changed")
            if m["t"] <= old["t"]:
                return "exists"
        self._write_atomic(self.root / "manifests" / f"{oid}.json", json.dumps(m).encode())
        self.manifests[oid] = m
        return "replaced" if old else "stored"

    # ------------------------------------------------------------ deletion

    def delete(self, tomb: Any) -> int:
        """Apply an owner's tombstone; returns how many shards were removed here."""
        try:
            model.check_tomb(tomb)
        except model.BadRecord as exc:
            self.counters[f"refused:tomb_{exc.reason}"] += 1
            raise Refused(exc.reason, str(exc), 403) from None
        oid, owner = tomb["id"], tomb["o"]
        m = self.manifests.get(oid)
        if m is not None and m["o"] != owner:
            self.counters["refused:other_owner"] += 1
            raise Refused("other_owner", "only the owner can delete this object")
        old = self.tombs.get(oid)
        if old is None or tomb["t"] > old["t"] or old["o"] != owner:
            self._write_atomic(self.root / "tombs" / f"{oid}.json", json.dumps(tomb).encode())
            self.tombs[oid] = tomb
        removed = 0
        in_manifest = set(m["shards"]) if m else set()
        for h in list(self.records):
            entry = self.records[h]
            if entry["rec"]["o"] != owner or entry["rec"]["t"] > tomb["t"]:
                continue
            if oid in entry["objs"] or h in in_manifest:
                rest = [o for o in entry["objs"] if o != oid and o not in self.tombs]
                if rest:  # still part of another live object of this owner
                    entry["objs"] = rest
                    self._write_atomic(self._shard_path(h).with_suffix(".rec"), json.dumps(entry).encode())
                    continue
                self._drop(h)
                removed += 1
        if m is not None and m["t"] <= tomb["t"]:
            del self.manifests[oid]
            (self.root / "manifests" / f"{oid}.json").unlink(missing_ok=True)
        self.counters["deleted"] += removed
        return removed

    def stats(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "shards": len(self.records),
            "manifests": len(self.manifests),
            "tombs": len(self.tombs),
            "used_bytes": self.used_bytes,
            "quota_bytes": self.quota_bytes,
            "lost": len(self.lost),
            "counters": dict(self.counters),
        }
