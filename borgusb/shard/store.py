"""The content-addressed shard store on one node (no sockets).

Layout under the store's root (the cell's ``data_dir``)::

    shards/ab/<sha256>        the bytes
    shards/ab/<sha256>.rec    {"rec": owner record, "objs": [object ids]}
    manifests/<id>.json       the owner-signed manifest
    tombs/<id>.json           the first tombstone heard for an object (the bare signed tombstone)
    tombs/<id>.<key>.json     another key's tombstone for the same id
    tombs/<stem>.shards       {"shards": [...]}: the shards that tombstone's object had
    tmp/                      writes in progress (cleared at start)

* **Atomic**: every file is written to ``tmp/``, flushed (and fsynced when
  `durable`), then renamed into place; the record is renamed after the bytes,
  so a shard counts only when both are there. A crash leaves at most a
  stray temp file, which the next start removes: never a partial shard.
* **Quota**: a write that would pass `quota_bytes` is refused with
  `StoreFull` before anything is written; a disk that fills before the
  quota does refuses the write with `DiskFull` (reason ``disk_full``), the
  partial temp file removed.
* **Integrity on read**: a shard's SHA-256 (its name) is checked once, when it
  is written; its record then keeps the CRC-32 of those verified bytes, and
  every read (`get`, and `open_checked`, the data channel's zero-copy read of
  the mapped file, unless that very file passed a moment ago: `freshchecks`)
  checks that CRC: the question on read is only "did the disk change these
  bytes since they were verified", which CRC-32 answers (every burst of up to
  32 flipped bits is caught, anything else all but 1 in 2^32 times). The CRC
  is ISA-L's (`isal`: the same CRC-32 as zlib's, by carry-less multiply, ~29
  GB/s against zlib's ~2.3 and SHA-256's ~1.6 on this machine's 1 MiB shards;
  zlib's was a third of a holder's CPU in bench_dstream). A mismatch drops the
  copy (bytes gone, record kept in `lost` so the cell can refetch it) and
  raises `Corrupt`: a corrupt shard is never served. Deliberate tampering that
  keeps the CRC is still caught twice: by every reader, which checks each
  shard's SHA-256 against the owner-signed manifest before writing it, and by
  `scrub`, which re-hashes stored shards with SHA-256 in the background. A
  record written before CRCs were kept is checked by SHA-256 on every read.
* **Ownership**: the first owner of a hash owns it; the same owner may
  replace the record (newer ``t``); anyone else's record for that hash
  changes nothing (`Refused("other_owner")`).
* **Tombstones** (issue 15 item 1): `tombstones.py`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

from isal.isal_zlib import crc32

from . import model
from .freshchecks import FreshChecks
from .storeerrors import Corrupt, DiskFull, Refused, StoreFull
from .tombstones import Tombstones

_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # one fault-in, not one per page


class ShardStore(Tombstones):
    """One node's shards, manifests and tombstones (see the module's docstring). The checked reads
    (`get`, `open_checked`, `scrub`) run in worker threads and drop a corrupt copy there: what
    the event loop iterates it copies first, in one step under the GIL."""

    def __init__(self, root: Path, quota_bytes: int = 1 << 30, *, durable: bool = False) -> None:
        self.root = Path(root)
        self.quota_bytes = quota_bytes
        self.durable = durable
        self.counters: Counter[str] = Counter()
        self.records: dict[str, dict[str, Any]] = {}  # hash -> {"rec":..., "objs":[...]}
        self.manifests: dict[str, dict[str, Any]] = {}
        self.tombs: dict[str, dict[str, Any]] = {}  # by file stem: "<id>", or "<id>.<key>" (see _tomb_stem)
        self.dead: dict[tuple[str, str], int] = {}  # (owner, shard hash) -> t of the latest tombstone covering it
        self._dead_lists: dict[str, set[str]] = {}  # tombstone stem -> the shards it covers
        self.lost: dict[str, dict[str, Any]] = {}  # dropped as corrupt, to refetch
        self.used_bytes = 0
        self.fresh = FreshChecks()  # shards whose read check passed a moment ago (`open_checked`)
        for sub in ("shards", "manifests", "tombs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.root / "tmp", ignore_errors=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        self._load()

    # ------------------------------------------------------------ files

    def _shard_path(self, h: str) -> Path:
        return self.root / "shards" / h[:2] / h

    def _write_atomic(self, path: Path, data: bytes | memoryview) -> None:
        """Write via tmp/ and rename; a full disk is a refusal (`DiskFull`, counted), not a crash."""
        tmp = self.root / "tmp" / f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                if self.durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.counters["refused:disk_full"] += 1
                raise DiskFull("the disk under this node's shard store is full: nothing was written") from None
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
        for path in (self.root / "manifests").glob("*.json"):
            try:
                doc = model.check_manifest(json.loads(path.read_bytes()))
                self.manifests[doc["id"]] = doc
            except (OSError, ValueError, model.BadRecord):
                path.unlink(missing_ok=True)
        self._load_tombs()

    # ------------------------------------------------------------ shards

    def has(self, h: str) -> bool:
        return h in self.records

    def record(self, h: str) -> dict[str, Any] | None:
        entry = self.records.get(h)
        return entry["rec"] if entry else None

    def hashes_of(self, object_id: str) -> list[str]:
        m = self.manifests.get(object_id)
        wanted = set(m["shards"]) if m else None
        held = list(self.records.items())  # one step under the GIL: a worker thread may drop a corrupt copy
        return [h for h, e in held if object_id in e["objs"] or (wanted is not None and h in wanted)]

    def put(self, rec: dict[str, Any], data: bytes | memoryview, obj: str | None = None, *, live: Any = None) -> str:
        """Store a shard; returns "stored", "replaced" or "exists". Raises StoreError.

        `obj` names the object the shard is stored for. `live`, the owner's manifest of `obj`,
        vouches for a shard that a deleted object of the same owner also had (see the module)."""
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
        if self._refused_by_tomb(rec, obj, live):
            self.counters["refused:tombstoned"] += 1
            raise Refused("tombstoned", "the owner deleted an object with this shard after this record was signed", 410)
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
        entry = {"rec": rec, "objs": objs, "crc": crc32(data)}
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
        caller sends the very pages it just checked from the page cache and closes the file. A
        file that passed within the last seconds, unchanged since, is not checked again
        (`freshchecks`). None if absent."""
        entry = self.records.get(h)
        if entry is None:
            return None
        n = entry["rec"]["n"]
        f: BinaryIO | None = None
        ok = False
        try:
            f = open(self._shard_path(h), "rb")
            st = os.fstat(f.fileno())
            if st.st_size == n:
                if n and self.fresh.fresh(h, st):
                    ok = True
                    self.counters["served_fresh"] += 1
                elif n:
                    with mmap.mmap(f.fileno(), n, flags=_MAP_FLAGS, prot=mmap.PROT_READ) as mm:
                        ok = self._intact(h, entry, mm)
                    if ok and self.records.get(h) is entry:  # not dropped meanwhile (its entry forgotten)
                        self.fresh.passed(h, st)
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
            return crc32(data) == crc
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

    def release(self, h: str) -> bool:
        """Drop a good copy this node no longer needs (others hold the shard): not a loss, so
        nothing refetches it. False if it was not held."""
        if h not in self.records:
            return False
        self._drop(h)
        self.counters["released"] += 1
        return True

    def _drop(self, h: str) -> None:
        self.fresh.forget(h)
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
        if self.deleted(oid, m["o"], m["t"]):
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

    def held_by_owner(self) -> dict[str, int]:
        """Bytes of shards held here per owner (what the ``storage`` price meters)."""
        held: dict[str, int] = {}
        for entry in list(self.records.values()):  # a snapshot: a worker thread may drop a corrupt copy
            rec = entry["rec"]
            held[rec["o"]] = held.get(rec["o"], 0) + rec["n"]
        return held

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
