"""Deleting objects from the shard store: owner-signed tombstones, and what they refuse after.

Issue 15 item 1: a tombstone refuses anything of its signer's about that object signed at or
before it, on every put (`Refused("tombstoned")`): manifests, records that name the object, and
records that name no object or another one but are of a shard the deleted object had (learnt
from the owner's manifest sent with the tombstone, or from the records held here). Such a shard
is taken again only where a live manifest of the same owner lists it (held here, or sent as
``live``), or to refetch a copy this node kept and lost. Each key's tombstone is kept apart and
only ever touches that key's records, so another key's tombstone can neither replace the owner's
nor free the owner's object; it is refused outright (`Refused("not_owner")`) where this node
holds the object's manifest signed by another key. It is not refused merely for following
another key's tombstone: a stranger who tombstoned an id first, at a node holding no manifest,
would otherwise block the owner's deletion.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import model
from .storeerrors import Refused


class Tombstones:
    """Mixin of `ShardStore`: tombstones kept, applied and checked (see the module's docstring)."""

    root: Path
    counters: Counter[str]
    records: dict[str, dict[str, Any]]  # the store's: hash -> {"rec":..., "objs":[...]}
    manifests: dict[str, dict[str, Any]]
    lost: dict[str, dict[str, Any]]
    tombs: dict[str, dict[str, Any]]  # by file stem: "<id>", or "<id>.<key>" (see _tomb_stem)
    dead: dict[tuple[str, str], int]  # (owner, shard hash) -> t of the latest tombstone covering it
    _dead_lists: dict[str, set[str]]  # tombstone stem -> the shards it covers
    _write_atomic: Callable[[Path, bytes], None]
    _shard_path: Callable[[str], Path]
    _drop: Callable[[str], None]

    def _load_tombs(self) -> None:
        tombs = self.root / "tombs"
        for path in tombs.glob("*.json"):
            try:
                tomb = model.check_tomb(json.loads(path.read_bytes()))
                if path.stem not in (tomb["id"], f"{tomb['id']}.{tomb['o']}"):
                    raise ValueError("a tombstone file is named after its id (and key)")
            except (OSError, ValueError, model.BadRecord):
                path.unlink(missing_ok=True)
                continue
            self.tombs[path.stem] = tomb
        for path in tombs.glob("*.shards"):
            try:
                hashes = json.loads(path.read_bytes())["shards"]
                if path.stem not in self.tombs or not all(model.is_hash(h) for h in hashes):
                    raise ValueError("shards of no tombstone")
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)
                continue
            self._cover(path.stem, set(hashes))

    def tomb(self, oid: str, owner: str) -> dict[str, Any] | None:
        """owner's tombstone for object oid, if this node has one."""
        first = self.tombs.get(oid)
        if first is not None and first["o"] == owner:
            return first
        return self.tombs.get(f"{oid}.{owner}")

    def deleted(self, oid: str, owner: str, t: int) -> bool:
        """Whether owner deleted object oid at or after t (what owner signed about it at t is refused)."""
        tomb = self.tomb(oid, owner)
        return tomb is not None and t <= tomb["t"]

    def owner_of(self, oid: str) -> str | None:
        """The key this node knows as the object's owner: its manifest's, else its first tombstone's."""
        known = self.manifests.get(oid) or self.tombs.get(oid)
        return known["o"] if known else None

    def _tomb_stem(self, oid: str, owner: str) -> str:
        """The file stem of owner's tombstone for oid: "<id>" for the first key heard, as the one
        tombstone of an id always was; "<id>.<key>" for any other key, so none replaces another."""
        first = self.tombs.get(oid)
        return oid if first is None or first["o"] == owner else f"{oid}.{owner}"

    def _cover(self, stem: str, hashes: set[str]) -> None:
        """Index the shards a tombstone covers: (owner, hash) -> the latest such tombstone's t."""
        tomb = self.tombs[stem]
        self._dead_lists[stem] = hashes
        for h in hashes:
            if self.dead.get((tomb["o"], h), -1) < tomb["t"]:
                self.dead[(tomb["o"], h)] = tomb["t"]

    def _refused_by_tomb(self, rec: dict[str, Any], obj: str | None, live: Any) -> bool:
        """Whether a tombstone of the record's owner signed after it refuses it: that of the object it
        is stored for, or that of an object that had this shard, unless a live object vouches for it."""
        if obj and self.deleted(obj, rec["o"], rec["t"]):
            return True
        t = self.dead.get((rec["o"], rec["h"]))
        return t is not None and rec["t"] <= t and not self._vouched(rec, obj, live)

    def _vouched(self, rec: dict[str, Any], obj: str | None, live: Any) -> bool:
        """Whether a shard of a deleted object is still wanted for a live object of the same owner:
        a copy this node kept for one and lost (its refetch), or a live manifest of obj listing it."""
        lost = self.lost.get(rec["h"])
        if lost is not None and lost["rec"]["o"] == rec["o"]:
            return True
        for m in (live, self.manifests.get(obj) if obj else None):
            if not isinstance(m, dict) or m.get("id") != obj or m.get("o") != rec["o"]:
                continue
            try:
                model.check_manifest(m)
            except model.BadRecord:
                continue
            if rec["h"] in m["shards"] and not self.deleted(m["id"], m["o"], m["t"]):
                return True
        return False

    def delete(self, tomb: Any, m: Any = None) -> int:
        """Apply a tombstone and, if known, its signer's manifest of the object (the shards it
        covers); returns how many shards were removed here. A tombstone only touches its own
        signer's records; it is refused if this node holds the object's manifest of another key."""
        try:
            model.check_tomb(tomb)
            if m is not None:
                model.check_tomb_manifest(tomb, m)
        except model.BadRecord as exc:
            self.counters[f"refused:tomb_{exc.reason}"] += 1
            raise Refused(exc.reason, str(exc), 403) from None
        oid, owner, t = tomb["id"], tomb["o"], tomb["t"]
        held = self.manifests.get(oid)
        if held is not None and held["o"] != owner:
            self.counters["refused:tomb_not_owner"] += 1
            raise Refused("not_owner", "the manifest held here is another key's: only its owner can delete it", 403)
        stem = self._tomb_stem(oid, owner)
        old = self.tombs.get(stem)
        if old is None or t > old["t"]:
            self._write_atomic(self.root / "tombs" / f"{stem}.json", json.dumps(tomb).encode())
            self.tombs[stem] = tomb
        covered = {h for doc in (held, m) if doc is not None and doc["t"] <= t for h in doc["shards"]}
        removed = self._forget_object(oid, owner, t, covered)
        self._keep_covered(stem, covered)
        if held is not None and held["t"] <= t:
            del self.manifests[oid]
            (self.root / "manifests" / f"{oid}.json").unlink(missing_ok=True)
        self.counters["deleted"] += removed
        return removed

    def _forget_object(self, oid: str, owner: str, t: int, covered: set[str]) -> int:
        """Drop owner's copies (and lost copies, never to be refetched) of the object's shards signed at or
        before t, but those still listed for another live object of owner; add them to `covered`."""
        removed = 0
        for table in (self.records, self.lost):
            for h, entry in list(table.items()):
                rec = entry["rec"]
                if rec["o"] != owner or rec["t"] > t or (oid not in entry["objs"] and h not in covered):
                    continue
                covered.add(h)
                rest = [o for o in entry["objs"] if o != oid and not self.deleted(o, owner, rec["t"])]
                if rest:  # still part of another live object of this owner
                    entry["objs"] = rest
                    if table is self.records:
                        self._write_atomic(self._shard_path(h).with_suffix(".rec"), json.dumps(entry).encode())
                elif table is self.records:
                    self._drop(h)
                    removed += 1
                else:
                    del self.lost[h]
        return removed

    def _keep_covered(self, stem: str, covered: set[str]) -> None:
        """Remember, on disk and in the index, the shards a tombstone covers (they only ever grow)."""
        known = self._dead_lists.get(stem, set())
        hashes = known | covered
        if hashes != known:
            self._write_atomic(self.root / "tombs" / f"{stem}.shards", json.dumps({"shards": sorted(hashes)}).encode())
        if hashes:
            self._cover(stem, hashes)  # even when none is new: a newer tombstone raises their t
