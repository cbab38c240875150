"""The fStream cell's book of read receipts: what a creator claims the ``content`` reward with.

A viewer's conduit signs a read receipt (`borgusb.ledger.contentwork.sign_read`) the first time it
relays a public stream map in a day and hands it to the fStream cell that served it
(``fstream.read``). The cell keeps the receipts for the map's owner, who fetches those of a day that
ended (``fstream.reads``, signed by the owner) and claims the reward (``borgusb pay earn content``).

`ReadBook` is the pure part (no sockets; the cell loads the map and passes its owner in):

* **A receipt is taken only if** it checks (its reader's signature), the envelope's signer is its
  reader (nobody hands in others' receipts), its day is the cell's day (or the day before, for
  `GRACE_MS` after midnight: a read signed at 23:59 that arrives at 00:00), and its reader is not the
  map's owner. The map check is the cell's.
* **Bounded**: one receipt per (reader, map, day); at most `MAX_PER_OWNER_DAY` per owner and day
  and `MAX_READS` in all, the oldest days dropped first (a day that can no longer be claimed
  goes anyway); `RATE_PER_MIN` receipts a minute per reader key and `ALL_PER_S` a second in all.
* **Kept across a restart**: written to ``reads.json`` in the cell's directory (temp file and rename)
  at most every `SAVE_EVERY_S` seconds and at a clean stop; each receipt is checked again when read
  back. (An fStream cell always has a directory: `--data`, or one under the temporary directory.)
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from ...keystore import atomic_write
from ...ledger.contentwork import DAY_MS, MAX_CLAIM_AGE_MS, check_read, day_of
from ...signed import SignedDocError
from ..kit import RequestError
from ..kit.guard import TokenBuckets

log = logging.getLogger("borgusb.fstream.reads")

GRACE_MS = 3_600_000  # the previous day's receipts are taken this long after midnight
MAX_PER_OWNER_DAY = 1024
MAX_READS = 65_536
RATE_PER_MIN = 60  # receipts a reader key hands in a minute (a burst of as many)
ALL_PER_S = 100  # receipts this cell takes a second, all readers together
MAX_RATE_KEYS = 4096
SAVE_EVERY_S = 10.0
FILE = "reads.json"


class ReadBook:
    """Read receipts kept for their owners, by day (see the module's docstring)."""

    def __init__(self, path: Path, counters: Counter[str], days_back: int = 0) -> None:
        self.path, self.counters, self.days_back = path, counters, days_back
        self.days: dict[int, dict[str, dict[tuple[str, str], dict[str, Any]]]] = {}  # day -> owner -> (reader, map)
        self.count = 0
        self.dirty = False
        self.rate = TokenBuckets(RATE_PER_MIN / 60, RATE_PER_MIN, MAX_RATE_KEYS)
        self.all = TokenBuckets(ALL_PER_S, ALL_PER_S, 1)
        self._load()

    def _refuse(self, reason: str, detail: str, status: int) -> RequestError:
        self.counters[f"fstream_refused:{reason}"] += 1
        return RequestError(reason, detail, status)

    def check(self, doc: Any, signer: str, now_ms: int, mono: float) -> dict[str, Any]:
        """The receipt `doc` handed in by `signer` if it may be kept (before its map is looked at),
        else the refusal; rate limits are spent here."""
        if not self.rate.allow(signer, mono) or not self.all.allow("", mono):
            raise self._refuse("rate_limited", f"at most {RATE_PER_MIN} read receipts a minute", 429)
        try:
            read = check_read(doc)
        except SignedDocError as exc:
            raise self._refuse(exc.reason, f"a read receipt: {exc}", 400) from None
        if read["reader"] != signer:
            raise self._refuse("not_reader", "a receipt is handed in by its reader", 403)
        if read["reader"] == read["owner"]:
            raise self._refuse("self_read", "a creator's own reads are not counted", 403)
        today = day_of(now_ms)
        since = now_ms - today * DAY_MS
        days = {today} | ({today - 1} if since < GRACE_MS else set()) | {today - 1 - i for i in range(self.days_back)}
        if read["day"] not in days:
            raise self._refuse("wrong_day", "a receipt is of this day (network time)", 409)
        return read

    def has(self, read: dict[str, Any]) -> bool:
        return (read["reader"], read["map"]) in self.days.get(read["day"], {}).get(read["owner"], {})

    def add(self, read: dict[str, Any], now_ms: int) -> bool:
        """Keep a checked receipt whose map's owner the cell confirmed; False if it was kept already."""
        if self.has(read):
            return False
        self._drop_old(now_ms)
        owned = self.days.get(read["day"], {}).get(read["owner"], {})
        if len(owned) >= MAX_PER_OWNER_DAY:
            raise self._refuse("reads_full", f"{MAX_PER_OWNER_DAY} readers of this owner's media today", 429)
        while self.count >= MAX_READS and len(self.days) > 1 and min(self.days) < read["day"]:
            self._drop_day(min(self.days))
        if self.count >= MAX_READS:
            raise self._refuse("reads_full", f"this cell keeps {MAX_READS} receipts", 503)
        self.days.setdefault(read["day"], {}).setdefault(read["owner"], {})[(read["reader"], read["map"])] = read
        self.count += 1
        self.dirty = True
        self.counters["fstream_read_kept"] += 1
        return True

    def of(self, owner: str, day: int) -> list[dict[str, Any]]:
        """The owner's receipts of `day`, oldest first."""
        return sorted(self.days.get(day, {}).get(owner, {}).values(), key=lambda r: (r["ts"], r["reader"]))

    def _drop_old(self, now_ms: int) -> None:
        oldest = day_of(now_ms - MAX_CLAIM_AGE_MS) - 1 - self.days_back  # older days cannot be claimed
        for day in [d for d in self.days if d < oldest]:
            self._drop_day(day)

    def _drop_day(self, day: int) -> None:
        owners = self.days.pop(day, {})
        self.count -= sum(len(v) for v in owners.values())
        self.dirty = True

    def changes(self) -> list[dict[str, Any]] | None:
        """Every receipt kept, if the book changed since the last call (None if not): what `write`
        saves. Taken on the event loop; a receipt is never changed once kept, so `write` may run in a
        thread while the book takes more."""
        if not self.dirty:
            return None
        self.dirty = False
        return [r for owners in self.days.values() for kept in owners.values() for r in kept.values()]

    def write(self, reads: list[dict[str, Any]]) -> None:
        """Save `reads` (temp file and rename: the old book or the new, never half of one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps({"v": 1, "reads": reads}, sort_keys=True).encode())

    def flush(self) -> None:
        """Save the book now if it changed (a clean stop)."""
        reads = self.changes()
        if reads is not None:
            self.write(reads)

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("fStream read receipts not read back (%s): starting empty", exc)
            return
        found = doc.get("reads") if isinstance(doc, dict) else None
        for r in found[:MAX_READS] if isinstance(found, list) else []:
            try:
                read = check_read(r)
            except SignedDocError:
                self.counters["fstream_read_unreadable"] += 1
                continue
            owned = self.days.setdefault(read["day"], {}).setdefault(read["owner"], {})
            if (read["reader"], read["map"]) not in owned and len(owned) < MAX_PER_OWNER_DAY:
                owned[(read["reader"], read["map"])] = read
                self.count += 1
