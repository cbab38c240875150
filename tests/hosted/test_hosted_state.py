"""The hosted conduit's state: wrong passphrase, a stick pulled during a wallet write (no udev needed)."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from borgusb import keystore
from borgusb.hosted.conduit import HostedState, StickWriteError
from borgusb.hosted.stickfs import PENDING, StickFS
from borgusb.hosted.stickwrite import RemoteWriter, WriteService
from borgusb.identity import Wallet

FAST = keystore.KdfParams(iterations=1, lanes=1, memory_kib=1024)


def test_wrong_passphrase_is_clear_and_changes_nothing(tmp_path):
    ram = tmp_path / "keystore.json"
    w = Wallet.create()
    keystore.save_wallet(ram, w, "the right passphrase", FAST)
    before = ram.read_bytes()
    writes = []
    state = HostedState(ram, writes.append, kdf=FAST)
    with pytest.raises(keystore.WrongPassphrase) as exc:
        state.unlock("not the passphrase")
    assert "passphrase" in str(exc.value).lower()
    assert not state.unlocked and writes == [] and ram.read_bytes() == before
    assert state.unlock("the right passphrase").public.doge_address == w.public.doge_address
    state.lock()


def test_pulled_during_wallet_write(tmp_path):
    """The stick is gone when the new wallet is written: a clear message, nothing changed anywhere."""
    ram = tmp_path / "keystore.json"

    def gone(data: bytes) -> None:
        raise StickWriteError(
            "the wallet could not be written to the stick (No such device): was it pulled out? Nothing was lost"
        )

    state = HostedState(ram, gone, kdf=FAST)
    with pytest.raises(StickWriteError, match="pulled out.*Nothing was lost"):
        state.restore(" ".join(Wallet.create().mnemonic().split()), "a good passphrase")
    assert not ram.exists() and not state.unlocked


def test_writer_turns_os_errors_into_the_message(tmp_path):
    missing = tmp_path / "gone"  # the device node vanished with the stick
    service = WriteService(StickFS(str(missing), tmp_path, "mtools"), True, lambda _: None, "conduit[t]")
    writer = RemoteWriter(service.peer.fileno())
    service.peer.detach()  # the writer owns that end now, as the conduit does
    keystore.save_wallet(tmp_path / "k", Wallet.create(), "passphrase one", FAST)
    try:
        with pytest.raises(StickWriteError, match="pulled out"):
            writer((tmp_path / "k").read_bytes())
    finally:
        service.close()
        writer.sock.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")
def test_mtools_write_is_atomic_on_a_real_partition(tmp_path):
    """Write through the block device (no mount), then interrupt between the two steps: the old one stays."""
    from stick import make_stick

    w1, w2 = Wallet.create(), Wallet.create()
    keystore.save_wallet(tmp_path / "k1", w1, "passphrase one", FAST)
    keystore.save_wallet(tmp_path / "k2", w2, "passphrase two", FAST)
    old, new = (tmp_path / "k1").read_bytes(), (tmp_path / "k2").read_bytes()
    image = make_stick(tmp_path / "s.img", keystore=old)
    dev = subprocess.run(
        [
            "losetup",
            "-f",
            "--show",
            "-o",
            str((2048 + 8 * 2048) * 512),
            "--sizelimit",
            str(48 * 2048 * 512),
            str(image),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        fs = StickFS(dev, tmp_path, "mtools")
        fs.write_atomic("keystore.json", new)
        assert fs.read_files(["keystore.json", PENDING]) == {"keystore.json": new, PENDING: None}
        # A pull after the new file is complete but before the rename: old keystore intact, new one complete.
        orig = fs._mt

        def cut(*args, **kw):
            if args[0] == "mren":
                raise OSError(errno.ENODEV, "No such device")
            return orig(*args, **kw)

        fs._mt = cut
        with pytest.raises(OSError):
            fs.write_atomic("keystore.json", old)
        fs._mt = orig
        files = fs.read_files(["keystore.json", PENDING])
        assert files["keystore.json"] == new and files[PENDING] == old
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
