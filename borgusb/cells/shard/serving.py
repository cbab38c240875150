"""The shard cell's side of the ``serve`` reward: readers' receipts taken in and kept per period.

A reader's DStream `Receiver` signs a receipt for the shards a holder gave it, once the bytes
checked out against the owner-signed manifest, and hands it to that holder (``shard.receipt``).
The holder keeps it only if it proves something it can stand behind:

* the receipt checks (`ledger.servework.check_receipt`), its reader signed the envelope that
  brings it (one key cannot hand in another's), it names this holder, and it is fresh
  (`FRESH_MS` either side of this node's time);
* every shard it lists, with that size, went out from here to that same key within
  `SERVED_FOR_MS` (the log `ShardBase._count_served` keeps, bounded): a receipt for bytes never
  served is refused ``not_served``;
* a node's own reads earn nothing (``self_served``).

`ServeReceipts` keeps them per period of the hold grid (the periods still claimable, at most
`MAX_KEPT` receipts each, the biggest kept when full), in ``receipts.json`` in the cell's
directory, written at most every `FLUSH_S` seconds and at a clean stop: a crash forgets at most that
much of one period's receipts. The claim itself is `earn.HoldEarner.claim` with ``rule="serve"``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ... import envelope
from ...keystore import atomic_write
from ...ledger.servework import ServeRecord, make_serve
from ...ledger.work import HOLD_PERIOD_MS, MAX_CLAIM_AGE_MS, period_start
from ...shard.receipt import check_receipt, receipt_id
from ...signed import SignedDocError
from ..kit import receptor
from .base import ShardBase

log = logging.getLogger("borgusb.shard.serving")

RECEIPTS_FILE = "receipts.json"
SERVED_FOR_MS = 10 * 60_000  # a receipt may come this long after the bytes went out
FRESH_MS = 5 * 60_000
MAX_KEPT = 256  # receipts kept per period
KEPT_PERIODS = MAX_CLAIM_AGE_MS // HOLD_PERIOD_MS + 2  # claimable periods, the current one, and one more
FLUSH_S = 5.0


class ServeReceipts:
    """Readers' receipts per period (start ms -> receipt id -> receipt), bounded, on disk."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.periods: dict[int, dict[str, dict[str, Any]]] = {}
        self._bytes: dict[str, int] = {}  # receipt id -> the bytes it lists (a full period drops its smallest)
        self._dirty, self._saved_at = False, float("-inf")  # the first receipt is written at once
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("serve receipts in %s unreadable, starting empty: %s", path, exc)
            return
        for start, receipts in doc.items() if isinstance(doc, dict) else ():
            for r in receipts if isinstance(receipts, list) else ():
                try:
                    ok = check_receipt(r)
                except SignedDocError:
                    continue
                if str(period_start(ok["ts"])) == start:
                    self.add(ok)
        self._dirty = False

    def add(self, receipt: dict[str, Any]) -> bool:
        """Keep a checked receipt in its period (False: it was there already, or smaller than all
        of a full period's receipts)."""
        start = period_start(receipt["ts"])
        kept = self.periods.setdefault(start, {})
        rid = receipt_id(receipt)
        if rid in kept:
            return False
        kept[rid] = receipt
        self._bytes[rid] = sum(n for _, n in receipt["shards"])
        if len(kept) > MAX_KEPT:
            smallest = min(kept, key=lambda i: (self._bytes[i], i))
            del kept[smallest], self._bytes[smallest]
            if smallest == rid:
                return False
        for old in sorted(self.periods)[:-KEPT_PERIODS]:
            for gone in self.periods.pop(old):
                del self._bytes[gone]
        self._dirty = True
        return True

    def of(self, start: int) -> list[dict[str, Any]]:
        return list(self.periods.get(start, {}).values())

    def due(self, *, force: bool = False) -> bytes | None:
        """The receipts to write if they changed, at most every `FLUSH_S` seconds unless `force`
        (taken as written: `write` marks them changed again if it fails)."""
        if self.path is None or not self._dirty or (not force and time.monotonic() - self._saved_at < FLUSH_S):
            return None
        self._dirty, self._saved_at = False, time.monotonic()
        doc = {str(start): list(kept.values()) for start, kept in self.periods.items()}
        return json.dumps(doc, sort_keys=True).encode()

    def write(self, data: bytes) -> None:
        """Write what `due` gave (an fsync: the cell runs it off its event loop)."""
        assert self.path is not None
        try:
            atomic_write(self.path, data)
        except OSError as exc:
            self._dirty = True
            log.warning("serve receipts could not be written to %s: %s", self.path, exc)

    def flush(self) -> None:
        """Write the receipts now if they changed (at a stop)."""
        data = self.due(force=True)
        if data is not None:
            self.write(data)


class ServeEarner(ShardBase):
    """Mixin of `ShardCell`: ``shard.receipt``, and the serve record of a period."""

    receipts: ServeReceipts

    def _init_serving(self) -> None:
        self.receipts = ServeReceipts(Path(self.data_dir) / RECEIPTS_FILE if self.data_dir else None)
        self.served_log = OrderedDict()
        self._receipts_writing = asyncio.Lock()  # one write at a time, in the order they were due

    @receptor("shard.receipt")
    async def _r_receipt(self, env: envelope.Envelope) -> Any:
        """A reader's receipt for shards this holder served it (see the module's docstring)."""
        p = env.payload if isinstance(env.payload, dict) else {}
        try:
            r = check_receipt(p.get("receipt"))
        except SignedDocError as exc:
            raise self._reject("bad_receipt", f"{exc.reason}: {exc}", 403) from None
        me, now = self.key.public_key_hex, self.clock.now_ms()
        if r["reader"] != env.signer:
            raise self._reject("not_reader", "a receipt is handed in by the reader that signed it", 403)
        if r["holder"] != me:
            raise self._reject("not_mine", "the receipt names another holder", 403)
        if r["reader"] == me:
            raise self._reject("self_served", "a node's own reads earn nothing", 403)
        if abs(r["ts"] - now) > FRESH_MS:
            raise self._reject("stale", f"a receipt is dated within {FRESH_MS} ms of the holder's time", 403)
        for h, n in r["shards"]:
            sent = self.served_log.get((r["reader"], h))
            if sent is None or sent[0] != n or now - sent[1] > SERVED_FOR_MS:
                raise self._reject("not_served", f"shard {h[:16]} did not go out from here to this reader", 403)
        kept = self.receipts.add(r)
        data = self.receipts.due()
        if data is not None:
            self._spawn(self._write_receipts(data))
        self.counters["shard_receipts_kept" if kept else "shard_receipts_again"] += 1
        return {"kept": kept}

    async def _write_receipts(self, data: bytes) -> None:
        async with self._receipts_writing:
            await asyncio.to_thread(self.receipts.write, data)

    def serve_record(self, start: int) -> ServeRecord:
        return make_serve(self.key.public_key_hex, start, self.receipts.of(start))
