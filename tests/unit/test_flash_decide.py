"""The flasher's decision core (borgusb/flash/decide.py): candidates, refusals, the typed size, the order."""

from __future__ import annotations

import pytest

from borgusb.flash.decide import HEAD, LARGE, Disk, judge, plan, size_confirmed, size_text

GB = 10**9
IMAGE = 600 * 10**6


def reasons(disk: Disk, allow_loop: bool = False) -> list[str]:
    return [r.reason for r in judge(disk, allow_loop=allow_loop, image_size=IMAGE).refusals]


def test_usb_sd_and_removable_disks_are_candidates() -> None:
    for disk in (
        Disk("/dev/sdb", 16 * GB, usb=True),  # many sticks say removable=0: the bus decides
        Disk("/dev/mmcblk0", 32 * GB, sd=True),
        Disk("/dev/sdc", 8 * GB, removable=True),
    ):
        verdict = judge(disk, allow_loop=False, image_size=IMAGE)
        assert verdict.ok and verdict.confirm is None, disk


def test_every_reason_against_a_disk_is_given() -> None:
    assert reasons(Disk("/dev/nvme0n1", 512 * GB)) == ["internal"]
    assert reasons(Disk("/dev/sda", 512 * GB, system=("/", "/boot"))) == ["internal", "system"]
    assert reasons(Disk("/dev/sdb", 16 * GB, usb=True, system=("/",))) == ["system"]  # booted from that stick
    assert reasons(Disk("/dev/sdb", 16 * GB, usb=True, read_only=True)) == ["read_only"]
    assert reasons(Disk("/dev/sdb", 0, usb=True)) == ["empty"]
    assert reasons(Disk("/dev/sdb", 256 * 10**6, usb=True)) == ["too_small"]
    assert reasons(Disk("/dev/loop3", GB, loop=True)) == ["loop"]
    assert reasons(Disk("/dev/loop3", GB, loop=True), allow_loop=True) == []
    verdict = judge(Disk("/dev/sda", 512 * GB, system=("/",)), allow_loop=True, image_size=IMAGE)
    assert "the running system lives on it (/)" in [r.why for r in verdict.refusals]


def test_a_mounted_or_very_large_disk_needs_its_size_typed() -> None:
    mounted = judge(Disk("/dev/sdb", 16 * GB, usb=True, mounted=("/media/me/STICK",)), allow_loop=False, image_size=1)
    assert mounted.ok and mounted.confirm and "/media/me/STICK" in mounted.confirm
    big = judge(Disk("/dev/sdb", LARGE, usb=True), allow_loop=False, image_size=1)
    assert big.ok and big.confirm and "backup disk" in big.confirm


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (16_008_609_792, "16.0 GB"),
        (15_950_000_000, "16.0 GB"),
        (83_886_080, "83.9 MB"),
        (2 * 10**12, "2.0 TB"),
        (999, "999 B"),
    ],
)
def test_size_as_shown_and_typed(size: int, text: str) -> None:
    disk = Disk("/dev/sdb", size, usb=True)
    assert size_text(size) == text
    assert size_confirmed(text, disk) and size_confirmed(text.lower().replace(" ", ""), disk)
    assert not size_confirmed("sdb", disk) and not size_confirmed("", disk) and not size_confirmed("yes", disk)


def test_plan_writes_the_head_last_and_clears_a_stale_backup_table() -> None:
    p = plan(64 << 20, 80 << 20)
    assert p.head == (0, HEAD) and p.body == (HEAD, 64 << 20)
    assert p.stale_tail == ((80 << 20) - HEAD, 80 << 20)
    assert plan(64 << 20, 64 << 20).stale_tail is None  # the image's own end is the device's
    assert plan(64 << 20, (64 << 20) + 512).stale_tail == (64 << 20, (64 << 20) + 512)
    with pytest.raises(ValueError):
        plan(2, 1)


def test_the_default_image_is_the_one_build_sh_made_for_each_kind(monkeypatch, tmp_path) -> None:
    from borgusb.flash.cli import build_parser
    from borgusb.flash.image import default_image

    monkeypatch.setenv("BORGUSB_CACHE", str(tmp_path))
    assert default_image(False) == tmp_path / "image" / "borgusb-usb.img"
    assert default_image(True) == tmp_path / "image" / "borgusb-pi.img"
    assert default_image(False, desktop=True) == tmp_path / "image" / "borgusb-desktop.img"
    with pytest.raises(SystemExit):  # one kind of stick at a time
        build_parser().parse_args(["--pi", "--desktop"])
