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

WORDS = (
    "legal winner thank year wave sausage worth useful legal winner thank year "
    "wave sausage worth useful legal winner thank year wave sausage worth title"
)


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


@pytest.mark.parametrize(
    "field,value,limit",
    [
        ("memory_kib", 4 * 1024 * 1024, "memory"),
        ("memory_kib", 256 * 1024 + 1, "memory"),  # the limits: 256 MiB, 16 passes, 16 lanes
        ("iterations", 17, "iterations"),
        ("lanes", 17, "lanes"),
        ("iterations", True, "iterations"),
        ("memory_kib", "65536", "memory"),
    ],
)
def test_tampered_kdf_cost_is_refused_before_deriving(saved, monkeypatch, field, value, limit) -> None:
    """A crafted keystore asking for up to 4 GiB of Argon2id memory is refused on load, naming the limit."""
    path = saved[0]
    doc = json.loads(path.read_text())
    doc["kdf"][field] = value
    doc["checksum"] = keystore._checksum(doc)
    path.write_text(json.dumps(doc))

    def no_derive(*args, **kwargs):
        raise AssertionError("the KDF must not run with out-of-range parameters")

    monkeypatch.setattr(keystore, "_derive", no_derive)
    with pytest.raises(KeystoreCorrupt, match=limit) as info:
        load_wallet(path, "correct horse")
    assert "KDF" in str(info.value)
    if isinstance(value, int) and not isinstance(value, bool):
        assert "at most" in str(info.value)


def test_kdf_limits_leave_room_for_the_default_and_refuse_writing_what_load_refuses(tmp_path: Path) -> None:
    keystore.DEFAULT_KDF.check()
    assert keystore.DEFAULT_KDF.memory_kib * 4 <= keystore.MAX_KDF_MEMORY_KIB
    with Wallet.create() as wallet, pytest.raises(KeystoreCorrupt, match="at most"):
        save_wallet(tmp_path / "k.json", wallet, "pw", keystore.KdfParams(memory_kib=keystore.MAX_KDF_MEMORY_KIB + 1))
