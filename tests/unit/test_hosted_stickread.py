"""Reading a stick in hosted mode: nothing but FAT is read, and the kernel mounts nothing when mtools can
read it (a FAT image file stands for the block device; mount(2) is recorded, never called)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from borgusb import keystore
from borgusb.hosted import mounts, stickfs
from borgusb.hosted.stickfs import StickDir, StickFS
from borgusb.hosted.stickread import StickRejected, open_stick, read_stick
from borgusb.identity import Wallet
from borgusb.stick import KEYSTORE, MARKER, Marker

FAST = keystore.KdfParams(iterations=1, lanes=1, memory_kib=1024)
MTOOLS = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
needs_fat_tools = pytest.mark.skipif(
    not (shutil.which("mkfs.vfat") and stickfs.have_mtools()), reason="dosfstools and mtools (./build.sh setup)"
)


@pytest.fixture
def mount_calls(monkeypatch) -> list[tuple]:
    """Every mount(2) hosted mode asks for, refused as a kernel without the driver would (ENODEV)."""
    calls: list[tuple] = []

    def record(*args: object) -> None:
        calls.append(args)
        raise mounts.MountError(errno.ENODEV, "recorded, not mounted")

    monkeypatch.setattr(mounts, "mount", record)
    return calls


def fat_image(tmp_path: Path, files: dict[str, bytes]) -> Path:
    image = tmp_path / "fat.img"
    subprocess.run(["mkfs.vfat", "-C", "-n", "BORGUSB", str(image), "4096"], check=True, capture_output=True)
    for name, data in files.items():
        src = tmp_path / "src"
        src.write_bytes(data)
        subprocess.run(["mcopy", "-i", str(image), str(src), f"::/{name}"], check=True, env=MTOOLS)
        src.unlink()
    return image


def wallet_keystore(tmp_path: Path) -> tuple[bytes, str]:
    wallet = Wallet.create()
    keystore.save_wallet(tmp_path / "k.json", wallet, "a good passphrase", FAST)
    address = wallet.public.doge_address
    wallet.close()
    return (tmp_path / "k.json").read_bytes(), address


@pytest.mark.parametrize("fstype", ["ext4", "btrfs", "exfat", "ntfs3", "msdos", ""])
def test_anything_udev_does_not_call_vfat_is_refused_before_a_byte_is_read(tmp_path, mount_calls, fstype):
    device = tmp_path / "no-such-device"  # nothing may even try to open it
    with pytest.raises(StickRejected) as refused:
        open_stick(str(device), fstype, tmp_path, None)
    assert refused.value.reason == "filesystem"
    assert "not FAT" in str(refused.value) and "nothing was mounted or read" in str(refused.value)
    assert mount_calls == []


@needs_fat_tools
def test_mtools_reads_the_marker_and_keystore_without_any_mount(tmp_path, mount_calls):
    ks, address = wallet_keystore(tmp_path)
    image = fat_image(tmp_path, {MARKER: Marker(join=("10.0.0.1",)).to_bytes(), KEYSTORE: ks})
    source = open_stick(str(image), "vfat", tmp_path, None)
    stick = read_stick(source, str(image), lambda _: None)
    assert (stick.backend, stick.identity, stick.keystore, stick.marker.join) == ("mtools", address, ks, ("10.0.0.1",))
    assert mount_calls == []


@needs_fat_tools
def test_a_fat_stick_without_the_marker_is_left_alone_unmounted(tmp_path, mount_calls):
    image = fat_image(tmp_path, {"holiday.jpg": b"\xff\xd8 photo"})
    with pytest.raises(StickRejected) as refused:
        read_stick(open_stick(str(image), "vfat", tmp_path, None), str(image), lambda _: None)
    assert refused.value.reason == "no-marker" and mount_calls == []


def test_without_mtools_the_kernel_mounts_only_vfat_read_only_nosuid_nodev_noexec(tmp_path, mount_calls, monkeypatch):
    monkeypatch.setattr(stickfs, "have_mtools", lambda: False)
    source = open_stick("/dev/loop-test", "vfat", tmp_path, None)
    assert isinstance(source, StickFS) and source.backend == "kernel"
    with pytest.raises(StickRejected) as refused:
        read_stick(source, "/dev/loop-test", lambda _: None)
    assert refused.value.reason == "unreadable"
    [(device, target, fstype, flags, options)] = mount_calls
    assert (device, fstype) == ("/dev/loop-test", "vfat")
    want = mounts.MS_RDONLY | mounts.MS_NOSUID | mounts.MS_NODEV | mounts.MS_NOEXEC
    assert flags & want == want, hex(flags)
    assert "uid=0" in options and Path(target).parent == tmp_path


def test_the_launchers_directory_is_read_in_place_never_through_links(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("not the stick's")
    stick = tmp_path / "BORGUSB"
    stick.mkdir()
    (stick / MARKER).symlink_to(secret)
    os.mkfifo(stick / KEYSTORE)  # would block a plain open() forever
    source = open_stick("/dev/whatever", "ext4", tmp_path, stick)  # the desktop mounted it, not us
    assert isinstance(source, StickDir)
    with pytest.raises(StickRejected) as refused:
        read_stick(source, "/dev/whatever", lambda _: None)
    assert refused.value.reason == "no-marker"
