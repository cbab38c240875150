"""Keystore: round trip, each failure its own clear error, atomic writes."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from borgusb import keystore
from borgusb.identity import Wallet
from borgusb.keys import SigningKey
from borgusb.keystore import (
    KeystoreCorrupt,
    KeystoreNotFound,
    UnsupportedKeystoreVersion,
    WrongPassphrase,
    load_wallet,
    save_wallet,
)

WORDS = "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title"


@pytest.fixture
def saved(tmp_path: Path, fast_kdf) -> tuple[Path, Wallet]:
    path = tmp_path / "keystore.json"
    wallet = Wallet.from_mnemonic(WORDS, "extra words")
    save_wallet(path, wallet, "correct horse", fast_kdf)
    return path, wallet


def test_round_trip_with_default_argon2id(tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    with Wallet.create() as wallet:
        save_wallet(path, wallet, "pw")
        with load_wallet(path, "pw") as again:
            assert again.mnemonic() == wallet.mnemonic()
            assert again.public == wallet.public
    doc = json.loads(path.read_text())
    assert doc["kdf"]["name"] == "argon2id" and doc["kdf"]["memory_kib"] == 65536
    assert doc["cipher"]["name"] == "aes-256-gcm"
    assert oct(path.stat().st_mode)[-3:] == "600"


def test_bip39_passphrase_is_kept(saved) -> None:
    path, wallet = saved
    with load_wallet(path, "correct horse") as again:
        assert again.bip39_passphrase == "extra words"
        assert again.public == wallet.public


def test_secret_is_not_in_the_file(saved) -> None:
    path, wallet = saved
    text = path.read_text()
    assert "legal" not in text
    assert bytes(wallet.entropy).hex() not in text


def test_wrong_passphrase(saved) -> None:
    with pytest.raises(WrongPassphrase):
        load_wallet(saved[0], "wrong horse")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeystoreNotFound):
        load_wallet(tmp_path / "nope.json", "pw")


def test_truncated_file(saved) -> None:
    path = saved[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(KeystoreCorrupt, match="not valid JSON"):
        load_wallet(path, "correct horse")


def test_flipped_ciphertext_bit_is_corruption_not_wrong_passphrase(saved) -> None:
    path = saved[0]
    doc = json.loads(path.read_text())
    raw = bytearray(base64.b64decode(doc["ciphertext"]))
    raw[3] ^= 1
    doc["ciphertext"] = base64.b64encode(raw).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreCorrupt, match="checksum"):
        load_wallet(path, "correct horse")


def test_weakened_kdf_parameters_fail_authentication(saved) -> None:
    """An attacker who lowers the KDF cost (and fixes the checksum) gets nothing."""
    path = saved[0]
    doc = json.loads(path.read_text())
    doc["kdf"]["iterations"] = 2
    doc["checksum"] = keystore._checksum(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(WrongPassphrase):
        load_wallet(path, "correct horse")


def test_unknown_version(saved) -> None:
    path = saved[0]
    doc = json.loads(path.read_text())
    doc["version"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(UnsupportedKeystoreVersion, match="99"):
        load_wallet(path, "correct horse")


def test_not_a_keystore(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(KeystoreCorrupt, match="not a BorgUSB keystore"):
        load_wallet(path, "pw")


def test_atomic_write_keeps_old_keystore_when_interrupted(saved, monkeypatch, fast_kdf) -> None:
    path, _ = saved
    before = path.read_bytes()

    def pulled_stick(src, dst):  # the rename never happens: the stick was pulled
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", pulled_stick)
    with Wallet.create() as other, pytest.raises(OSError):
        save_wallet(path, other, "pw2", fast_kdf)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_node_key_round_trip(tmp_path: Path, fast_kdf) -> None:
    key = SigningKey.generate()
    keystore.save_node_key(tmp_path / "node.json", key, "pw", fast_kdf)
    again = keystore.load_node_key(tmp_path / "node.json", "pw")
    assert again.public_key_hex == key.public_key_hex
    with pytest.raises(keystore.KeystoreError, match="not a wallet"):
        load_wallet(tmp_path / "node.json", "pw")


def test_empty_passphrase_refused(tmp_path: Path, fast_kdf) -> None:
    with Wallet.create() as wallet, pytest.raises(keystore.KeystoreError):
        save_wallet(tmp_path / "k.json", wallet, "", fast_kdf)
