"""The conduit's one write to the stick, made by the watcher over a socket pair: a wallet keystore onto a
stick that had none, nothing else (a directory stands for the stick)."""

from __future__ import annotations

from pathlib import Path

import pytest

from borgusb import keystore
from borgusb.hosted.conduit import HostedState
from borgusb.hosted.stickfs import StickDir
from borgusb.hosted.stickwrite import RemoteWriter, StickWriteError, WriteService
from borgusb.identity import Wallet
from borgusb.keys import SigningKey
from borgusb.stick import KEYSTORE

FAST = keystore.KdfParams(iterations=1, lanes=1, memory_kib=1024)


@pytest.fixture
def channel(tmp_path):
    """(the stick's directory, the conduit's writer, the watcher's log); may_write as for a stick without a wallet."""
    stick = tmp_path / "stick"
    stick.mkdir()
    log: list[str] = []
    service = WriteService(StickDir(stick), True, log.append, "conduit[t]")
    writer = RemoteWriter(service.peer.detach())  # the conduit's end, as --writer-fd hands it over
    yield stick, writer, log
    writer.sock.close()
    service.close()


def wallet_bytes(tmp_path: Path, name: str = "w.json") -> bytes:
    wallet = Wallet.create()
    keystore.save_wallet(tmp_path / name, wallet, "a good passphrase", FAST)
    wallet.close()
    return (tmp_path / name).read_bytes()


def test_one_wallet_keystore_is_written_and_never_overwritten(tmp_path, channel):
    stick, writer, log = channel
    first, second = wallet_bytes(tmp_path, "a"), wallet_bytes(tmp_path, "b")
    writer(first)
    assert (stick / KEYSTORE).read_bytes() == first
    with pytest.raises(StickWriteError, match="never overwritten"):
        writer(second)
    assert (stick / KEYSTORE).read_bytes() == first
    assert any("refused to write" in line for line in log)


@pytest.mark.parametrize(
    "data,why",
    [
        (b"#!/bin/sh\nrm -rf /\n", "not a keystore"),
        (b"{}", "not a keystore"),
        (b"x" * (65 << 10), "never larger"),
    ],
)
def test_anything_but_a_wallet_keystore_is_refused(channel, data, why):
    stick, writer, _ = channel
    with pytest.raises(StickWriteError, match=why):
        writer(data)
    assert list(stick.iterdir()) == []


def test_a_node_key_keystore_is_not_a_wallet(tmp_path, channel):
    stick, writer, _ = channel
    keystore.save_node_key(tmp_path / "node.json", SigningKey.generate(), "a good passphrase", FAST)
    with pytest.raises(StickWriteError, match="not a wallet"):
        writer((tmp_path / "node.json").read_bytes())
    assert list(stick.iterdir()) == []


def test_a_stick_that_had_a_wallet_is_never_written(tmp_path):
    stick = tmp_path / "stick"
    stick.mkdir()
    service = WriteService(StickDir(stick), False, lambda _: None, "conduit[t]")
    writer = RemoteWriter(service.peer.detach())
    try:
        with pytest.raises(StickWriteError, match="already holds"):
            writer(wallet_bytes(tmp_path))
        assert list(stick.iterdir()) == []
    finally:
        writer.sock.close()
        service.close()


def test_the_conduit_restores_a_wallet_through_the_watcher(tmp_path, channel):
    stick, writer, _ = channel
    ram = tmp_path / "ram" / KEYSTORE
    ram.parent.mkdir()
    wallet = Wallet.create()
    words, address = wallet.mnemonic(), wallet.public.doge_address
    wallet.close()
    state = HostedState(ram, writer, kdf=FAST)
    state.restore(words, "a good passphrase")
    assert state.unlocked and state.wallet is not None and state.wallet.public.doge_address == address
    assert (stick / KEYSTORE).read_bytes() == ram.read_bytes()
    state.lock()


def test_a_watcher_that_is_gone_is_told_as_a_pulled_stick(tmp_path):
    service = WriteService(StickDir(tmp_path), True, lambda _: None, "conduit[t]")
    writer = RemoteWriter(service.peer.detach())
    service.close()
    try:
        with pytest.raises(StickWriteError, match="pulled out"):
            writer(wallet_bytes(tmp_path))
    finally:
        writer.sock.close()
