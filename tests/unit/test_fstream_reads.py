"""The fStream cell's book of read receipts (`borgusb.cells.fstream.reads.ReadBook`): what it takes,
what it refuses and counts, its bounds, and that a restart keeps it. Pure: no sockets."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from borgusb.cells.fstream import reads as reads_mod
from borgusb.cells.fstream.reads import GRACE_MS, MAX_PER_OWNER_DAY, RATE_PER_MIN, ReadBook
from borgusb.cells.kit import RequestError
from borgusb.keys import SigningKey
from borgusb.ledger.contentwork import DAY_MS, sign_read

OWNER, READER = SigningKey.generate(), SigningKey.generate()
MAP = hashlib.sha256(b"a map").hexdigest()
DAY = 20_500
NOON = DAY * DAY_MS + DAY_MS // 2


def refusal(book: ReadBook, doc: object, signer: str, now: int = NOON, mono: float = 0.0) -> str:
    with pytest.raises(RequestError) as err:
        book.check(doc, signer, now, mono)
    return err.value.reason


def test_takes_a_reader_s_receipt_once_and_refuses_the_rest(tmp_path: Path) -> None:
    counters: Counter[str] = Counter()
    book = ReadBook(tmp_path / "reads.json", counters)
    r = sign_read(READER, MAP, OWNER.public_key_hex, NOON)
    got = book.check(r, READER.public_key_hex, NOON, 0.0)
    assert book.add(got, NOON) is True and book.add(got, NOON) is False
    assert book.of(OWNER.public_key_hex, DAY) == [r] and book.of(READER.public_key_hex, DAY) == []
    # a second receipt of the same reader, map and day is the same read
    assert (
        book.add(
            book.check(sign_read(READER, MAP, OWNER.public_key_hex, NOON + 9), READER.public_key_hex, NOON, 1), NOON
        )
        is False
    )

    assert refusal(book, r, OWNER.public_key_hex) == "not_reader"
    assert refusal(book, {**r, "ts": r["ts"] + 1}, READER.public_key_hex) == "bad_signature"
    assert refusal(book, {"read": 1}, READER.public_key_hex) == "malformed"
    assert refusal(book, sign_read(OWNER, MAP, OWNER.public_key_hex, NOON), OWNER.public_key_hex) == "self_read"
    yesterday = sign_read(READER, MAP, OWNER.public_key_hex, NOON - DAY_MS)
    assert refusal(book, yesterday, READER.public_key_hex) == "wrong_day"
    assert book.check(yesterday, READER.public_key_hex, (DAY + 1) * DAY_MS - DAY_MS + GRACE_MS - 1, 2)  # near midnight
    tomorrow = sign_read(READER, MAP, OWNER.public_key_hex, NOON + DAY_MS)
    assert refusal(book, tomorrow, READER.public_key_hex) == "wrong_day"
    assert counters["fstream_refused:wrong_day"] == 2 and counters["fstream_refused:not_reader"] == 1


def test_test_only_days_back_takes_the_day_before(tmp_path: Path) -> None:
    book = ReadBook(tmp_path / "reads.json", Counter(), days_back=1)
    before = sign_read(READER, MAP, OWNER.public_key_hex, NOON - DAY_MS)
    assert book.check(before, READER.public_key_hex, NOON, 0.0) == before
    older = sign_read(READER, MAP, OWNER.public_key_hex, NOON - 2 * DAY_MS)
    assert refusal(book, older, READER.public_key_hex) == "wrong_day"


def test_rate_limit_and_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    book = ReadBook(tmp_path / "reads.json", Counter())
    r = sign_read(READER, MAP, OWNER.public_key_hex, NOON)
    for _ in range(RATE_PER_MIN):
        book.check(r, READER.public_key_hex, NOON, 5.0)
    assert refusal(book, r, READER.public_key_hex, mono=5.0) == "rate_limited"

    monkeypatch.setattr(reads_mod, "MAX_READS", 6)
    owner = OWNER.public_key_hex
    maps = [hashlib.sha256(bytes([i])).hexdigest() for i in range(8)]
    old = [sign_read(READER, m, owner, NOON - DAY_MS) for m in maps[:4]]
    for x in old:
        book.add(x, NOON - DAY_MS)
    new = [sign_read(READER, m, owner, NOON) for m in maps[:4]]
    for x in new:
        book.add(x, NOON)
    assert book.count == 4 and book.of(owner, DAY - 1) == []  # the older day went to make room
    for m in maps[4:6]:
        book.add(sign_read(READER, m, owner, NOON), NOON)
    with pytest.raises(RequestError) as err:
        book.add(sign_read(READER, maps[6], owner, NOON), NOON)
    assert err.value.reason == "reads_full"


def test_per_owner_day_cap(tmp_path: Path) -> None:
    book = ReadBook(tmp_path / "reads.json", Counter())
    owner = OWNER.public_key_hex
    readers = [SigningKey.generate() for _ in range(MAX_PER_OWNER_DAY + 1)]
    for k in readers[:MAX_PER_OWNER_DAY]:
        book.add(sign_read(k, MAP, owner, NOON), NOON)
    with pytest.raises(RequestError) as err:
        book.add(sign_read(readers[-1], MAP, owner, NOON), NOON)
    assert err.value.reason == "reads_full"


def test_a_restart_keeps_the_receipts(tmp_path: Path) -> None:
    path = tmp_path / "reads.json"
    book = ReadBook(path, Counter())
    r = sign_read(READER, MAP, OWNER.public_key_hex, NOON)
    book.add(r, NOON)
    book.flush()
    assert not list(tmp_path.glob(".*.tmp"))
    again = ReadBook(path, Counter())
    assert again.of(OWNER.public_key_hex, DAY) == [r] and again.count == 1
    path.write_text(path.read_text().replace(r["sig"], r["sig"][:-2] + "00"))
    counters: Counter[str] = Counter()
    assert ReadBook(path, counters).count == 0 and counters["fstream_read_unreadable"] == 1
    path.write_text("{not json")
    assert ReadBook(path, Counter()).count == 0
