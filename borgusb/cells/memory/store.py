"""A holder's memories on disk: one append-only log of canonical JSON lines (``{"m": record}`` or
``{"t": tombstone}``), replayed through `Holding` at start, so every line is checked again (a
damaged or forged line is skipped and counted, never trusted). A removal rewrites the log without
the removed record (atomically), so the file holds what the holder holds plus its tombstones."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from ... import canonical
from ...memory.errors import MemoryRefused
from ...memory.holder import Holding, Limits
from ...memory.record import MAX_RECORD_BYTES, Memory, Tombstone, check_record, check_tombstone


class MemoryStore:
    def __init__(self, path: Path, limits: Limits, counters: Counter[str]) -> None:
        self.path = path
        self.holding = Holding(limits)
        self.counters = counters
        if path.exists():
            self._load()

    def _load(self) -> None:
        with self.path.open("rb") as f:
            for line in f:
                try:
                    if len(line) > 2 * MAX_RECORD_BYTES:
                        raise ValueError("too long")
                    doc = canonical.loads_canonical(line.rstrip(b"\n"))
                    if "m" in doc:
                        self.holding.keep(check_record(doc["m"]))
                    else:
                        self.holding.drop(check_tombstone(doc["t"]))
                except (ValueError, TypeError, KeyError, MemoryRefused):
                    self.counters["memory_store_bad_line"] += 1

    def add(self, m: Memory) -> None:
        with self.path.open("ab") as f:
            f.write(canonical.encode_unchecked({"m": m.to_dict()}) + b"\n")

    def rewrite(self) -> None:
        """The log as the holding is now (after a removal)."""
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            for m in self.holding.records.values():
                f.write(canonical.encode_unchecked({"m": m.to_dict()}) + b"\n")
            for t in self.holding.tombstones.values():
                f.write(canonical.encode_unchecked({"t": t.to_dict()}) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def note(self, t: Tombstone) -> None:
        with self.path.open("ab") as f:
            f.write(canonical.encode_unchecked({"t": t.to_dict()}) + b"\n")
