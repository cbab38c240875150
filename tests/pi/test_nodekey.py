"""The Pi's node key on its card (borgusb/image/nodekey.py), without a card: a directory stands for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from borgusb import keystore
from borgusb.image import nodekey

FAST = keystore.KdfParams(iterations=1, lanes=1, memory_kib=1024)
BOARD = ("serial", b"10000000abcdef01")


class Writable:
    """Counts how often the card was made writable (a remount read-write on the Pi)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> Writable:
        self.count += 1
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_first_boot_makes_an_encrypted_key_then_later_boots_only_read(tmp_path: Path) -> None:
    w = Writable()
    first = nodekey.ensure(tmp_path, BOARD, w, kdf=FAST)
    assert first["created"] and first["reason"] == "first boot" and w.count == 1
    doc = json.loads((tmp_path / nodekey.KEY_FILE).read_text())
    assert doc["kind"] == "node" and doc["public"]["fingerprint"] == first["fingerprint"]
    secret = json.loads((tmp_path / nodekey.SECRET_FILE).read_text())
    assert len(secret["secret"]) == 64 and secret["binding"] == "serial"
    # The card alone (the secret without the board's serial) does not open the key.
    with pytest.raises(keystore.WrongPassphrase):
        keystore.load_node_key(tmp_path / nodekey.KEY_FILE, nodekey.passphrase(bytes.fromhex(secret["secret"]), b""))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    again = nodekey.ensure(tmp_path, BOARD, w, kdf=FAST)
    assert not again["created"] and again["fingerprint"] == first["fingerprint"]
    assert w.count == 1, "a later boot wrote to the card"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_card_moved_to_another_board_makes_a_new_node_and_keeps_the_old_file(tmp_path: Path) -> None:
    first = nodekey.ensure(tmp_path, BOARD, None, kdf=FAST)
    other = nodekey.ensure(tmp_path, ("serial", b"10000000ffff0002"), None, kdf=FAST)
    assert other["created"] and other["fingerprint"] != first["fingerprint"]
    assert "another board" in other["reason"]
    assert (
        json.loads((tmp_path / (nodekey.KEY_FILE + ".old")).read_text())["public"]["fingerprint"]
        == first["fingerprint"]
    )


def test_damaged_or_partial_files_are_replaced(tmp_path: Path) -> None:
    (tmp_path / nodekey.KEY_FILE).write_text("{not json")
    info = nodekey.ensure(tmp_path, BOARD, None, kdf=FAST)
    assert info["created"] and "incomplete" in info["reason"]
    (tmp_path / nodekey.KEY_FILE).write_text("{not json")
    info = nodekey.ensure(tmp_path, BOARD, None, kdf=FAST)
    assert info["created"] and "cannot be used" in info["reason"]
    assert not nodekey.ensure(tmp_path, BOARD, None, kdf=FAST)["created"]


def test_machine_binding_prefers_the_device_tree_serial(tmp_path: Path) -> None:
    assert nodekey.machine_binding(tmp_path) == ("none", b"")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\nSerial\t\t: 00000000abcd1234\n")
    assert nodekey.machine_binding(tmp_path) == ("serial", b"00000000abcd1234")
    dt = tmp_path / "sys/firmware/devicetree/base"
    dt.mkdir(parents=True)
    (dt / "serial-number").write_bytes(b"10000000c0ffee00\0")
    assert nodekey.machine_binding(tmp_path) == ("serial", b"10000000c0ffee00")
