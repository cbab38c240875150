"""The System Monitor's eyes: anomalies found by comparing two readings of every cell's status.

A reading is what a cell's monitoring port said (or that it did not answer); the monitor keeps the
last reading and compares the next one with it. Everything here is pure: the agent cell does the
reads (bounded, with a deadline) and turns each anomaly into a chat report and a memory. Status
documents come from the network, so every figure is taken only if it is a non-negative integer.

Anomalies, each with the evidence that names it:

* ``cell_gone``: a cell that answered last time does not answer now (a killed holder, a dead node);
* ``refusals_jump``: a cell refused at least `REFUSALS_JUMP` more messages than last time
  (forged, replayed or flooding traffic);
* ``bad_bytes``: a shard cell dropped corrupt shards since last time (a holder serving bad bytes);
* ``repair_failing``: a shard cell could not fetch shards it should hold (copies below their count);
* ``rejoining``: a cell whose uptime went back `REJOIN_LIMIT` times (a node that keeps restarting).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REFUSALS_JUMP = 20
REJOIN_LIMIT = 2
CORRUPT_COUNTERS = ("shard_corrupt_dropped", "scrub_corrupt", "corrupt_dropped")
REPAIR_COUNTERS = ("shard_fetch_failed",)


@dataclass(frozen=True, slots=True)
class Reading:
    """One cell's status as the monitor understood it (``None`` figures: it did not answer)."""

    cell: str
    ip: str
    node: str
    answered: bool
    uptime_ms: int = 0
    refused: int = 0
    corrupt: int = 0
    repair_failed: int = 0


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str
    cell: str
    ip: str
    node: str
    detail: str

    def text(self) -> str:
        return f"{self.kind}: {self.cell} on {self.ip} ({self.node[:16]}): {self.detail}"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _sum(counters: Mapping[str, Any], names: tuple[str, ...]) -> int:
    return sum(_count(counters.get(n)) for n in names)


def read_status(cell: str, ip: str, node: str, doc: Any) -> Reading:
    """A reading from a status document (any shape: only what is well-formed counts)."""
    if not isinstance(doc, dict):
        return Reading(cell, ip, node, answered=False)
    counters: dict[str, Any] = doc["counters"] if isinstance(doc.get("counters"), dict) else {}
    rejected: dict[str, Any] = doc["rejected"] if isinstance(doc.get("rejected"), dict) else {}
    refused = sum(_count(v) for v in rejected.values()) + sum(
        _count(v) for k, v in counters.items() if isinstance(k, str) and ("refused" in k or "rejected" in k)
    )
    return Reading(
        cell,
        ip,
        node,
        answered=True,
        uptime_ms=_count(doc.get("uptime_ms")),
        refused=refused,
        corrupt=_sum(counters, CORRUPT_COUNTERS),
        repair_failed=_sum(counters, REPAIR_COUNTERS),
    )


class Monitor:
    """Compares each round of readings with the last; remembers restarts per cell."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str], Reading] = {}
        self.restarts: Counter[tuple[str, str]] = Counter()

    def compare(self, readings: list[Reading]) -> list[Anomaly]:
        found: list[Anomaly] = []
        now = {(r.cell, r.node): r for r in readings}
        for key, r in now.items():
            before = self.last.get(key)
            if before is None or not before.answered:
                continue
            if not r.answered:
                found.append(Anomaly("cell_gone", r.cell, r.ip, r.node, "answered before, does not answer now"))
                continue
            if r.uptime_ms < before.uptime_ms:
                self.restarts[key] += 1
                if self.restarts[key] >= REJOIN_LIMIT:
                    found.append(Anomaly("rejoining", r.cell, r.ip, r.node, f"restarted {self.restarts[key]} times"))
            elif r.refused - before.refused >= REFUSALS_JUMP:
                found.append(
                    Anomaly(
                        "refusals_jump", r.cell, r.ip, r.node, f"{r.refused - before.refused} more refused messages"
                    )
                )
            if r.corrupt > before.corrupt:
                found.append(Anomaly("bad_bytes", r.cell, r.ip, r.node, f"{r.corrupt - before.corrupt} corrupt shards"))
            if r.repair_failed > before.repair_failed:
                found.append(
                    Anomaly(
                        "repair_failing",
                        r.cell,
                        r.ip,
                        r.node,
                        f"{r.repair_failed - before.repair_failed} fetches failed",
                    )
                )
        for key, before in self.last.items():  # gone from the registry too (withdrawn or expired)
            if key not in now and before.answered:
                found.append(Anomaly("cell_gone", before.cell, before.ip, before.node, "no longer in the registry"))
        self.last = {k: v for k, v in now.items() if v.answered or k in self.last}
        return found
