"""A holder's directory files: kept across a reopen, bounded, a damaged or forged file set aside."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from borgusb.cells.mail.dirstore import DirectoryStore
from borgusb.keys import SigningKey
from borgusb.mail.directory import sign_entry

T = 1_764_000_000_000


def key(label: str) -> SigningKey:
    return SigningKey(hashlib.sha256(label.encode()).digest())


A, B, C = key("store a"), key("store b"), key("store c")


def test_kept_reopened_and_bounded(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path, max_entries=2)
    a, b = sign_entry(A, T, "a"), sign_entry(B, T)
    store.put(a)
    store.put(b)
    (tmp_path / "notes.json").write_text("{}")  # not an address: not counted
    again = DirectoryStore(tmp_path, max_entries=2)
    assert again.get(A.doge_address) == a and again.get(B.doge_address) == b
    assert again.get(C.doge_address) is None
    assert again.full(C.doge_address) and not again.full(A.doge_address)  # a replacement is never refused


def test_damaged_or_forged_file_set_aside(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path, max_entries=10)
    store.put(sign_entry(A, T))
    store.put(sign_entry(B, T))
    (tmp_path / f"{A.doge_address}.json").write_text("{not json")
    forged = dict(sign_entry(C, T, "B").to_dict(), addr=B.doge_address)  # C's entry under B's address
    (tmp_path / f"{B.doge_address}.json").write_text(json.dumps(forged))
    assert store.get(A.doge_address) is None and store.get(B.doge_address) is None
    assert (tmp_path / f"{A.doge_address}.bad").exists() and (tmp_path / f"{B.doge_address}.bad").exists()
    assert not store.addresses
