"""A holder's book of readers' receipts: one per id, the biggest kept when a period is full, only
the claimable periods kept, written to disk and read back (a forged one left out)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from borgusb.cells.shard.serving import KEPT_PERIODS, MAX_KEPT, ServeReceipts
from borgusb.ledger.rules import MIB
from borgusb.ledger.sim import fixed_key
from borgusb.ledger.work import HOLD_PERIOD_MS
from borgusb.shard.receipt import sign_receipt

HOLDER = fixed_key("holder").public_key_hex
START = 1_764_000_000_000 - 1_764_000_000_000 % HOLD_PERIOD_MS


def shard(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def in_step(book: ServeReceipts) -> bool:
    """The byte counts kept beside the receipts are exactly those of the receipts kept."""
    return set(book._bytes) == {rid for kept in book.periods.values() for rid in kept}


def test_kept_once_biggest_when_full_and_only_recent_periods(tmp_path: Path) -> None:
    book = ServeReceipts(None)
    first = sign_receipt(fixed_key("r0"), HOLDER, {shard(0): MIB}, START + 5)
    assert book.add(first) is True and book.add(first) is False
    for i in range(1, MAX_KEPT):
        assert book.add(sign_receipt(fixed_key(f"r{i}"), HOLDER, {shard(i): 2 * MIB}, START + 5))
    bigger = sign_receipt(fixed_key("big"), HOLDER, {shard(9999): 4 * MIB}, START + 6)
    assert book.add(bigger) is True  # the period is full: the smallest receipt (1 MiB) goes
    assert first not in book.of(START) and bigger in book.of(START) and len(book.of(START)) == MAX_KEPT
    assert in_step(book)
    assert book.add(sign_receipt(fixed_key("tiny"), HOLDER, {shard(1): 1}, START + 7)) is False
    assert in_step(book)  # the new receipt was itself the smallest: gone from both
    for k in range(1, KEPT_PERIODS + 1):
        book.add(sign_receipt(fixed_key("later"), HOLDER, {shard(0): MIB}, START + k * HOLD_PERIOD_MS))
    assert book.of(START) == [] and len(book.periods) == KEPT_PERIODS and in_step(book)


def test_written_and_read_back_without_forgeries(tmp_path: Path) -> None:
    path = tmp_path / "receipts.json"
    book = ServeReceipts(path)
    r = sign_receipt(fixed_key("reader"), HOLDER, {shard(1): MIB}, START + 10)
    book.add(r)
    first = book.due()  # the first write is at once; later ones wait FLUSH_S unless forced (a stop)
    assert first is not None and book.due() is None
    book.write(first)
    assert ServeReceipts(path).of(START) == [r]
    book.add(sign_receipt(fixed_key("reader 2"), HOLDER, {shard(2): MIB}, START + 20))
    assert book.due() is None and book.due(force=True) is not None
    doc = json.loads(path.read_text())
    doc[str(START)].append({**r, "ts": START + 11})  # the signature no longer covers it
    doc[str(START + HOLD_PERIOD_MS)] = [r]  # filed under another period
    path.write_text(json.dumps(doc))
    again = ServeReceipts(path)
    assert again.of(START) == [r] and again.of(START + HOLD_PERIOD_MS) == [] and in_step(again)
    path.write_text("not json")
    assert ServeReceipts(path).periods == {}
