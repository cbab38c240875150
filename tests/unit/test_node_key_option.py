"""`borgusb cell run` takes the machine's node key from a file or a systemd credential."""

from __future__ import annotations

from pathlib import Path

import pytest

from borgusb.image import nodekey
from borgusb.keys import SigningKey
from borgusb.node import node_key


def test_key_file_and_credential(tmp_path: Path, monkeypatch) -> None:
    key = SigningKey.generate()
    nodekey.export_key(key, tmp_path / "node-key")
    assert oct((tmp_path / "node-key").stat().st_mode)[-3:] == "600"
    assert node_key(str(tmp_path / "node-key")).public_key_hex == key.public_key_hex

    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert node_key(None).public_key_hex == key.public_key_hex


def test_no_key_means_a_fresh_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert node_key(None) is None
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))  # the unit has no such credential
    assert node_key(None) is None


def test_bad_key_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad").write_text("not hex")
    with pytest.raises(ValueError, match="cannot read the node key"):
        node_key(str(tmp_path / "bad"))


def test_ensure_exports_the_card_key(tmp_path: Path) -> None:
    from borgusb.keystore import KdfParams

    card = tmp_path / "card"
    card.mkdir()
    fast = KdfParams(iterations=1, lanes=1, memory_kib=1024)
    first = nodekey.ensure(card, ("test", b"board-1"), kdf=fast, export=tmp_path / "k1")
    again = nodekey.ensure(card, ("test", b"board-1"), kdf=fast, export=tmp_path / "k2")
    assert first["created"] and not again["created"]
    assert node_key(str(tmp_path / "k1")).public_key_hex == first["public_key"]
    assert node_key(str(tmp_path / "k2")).public_key_hex == first["public_key"]
