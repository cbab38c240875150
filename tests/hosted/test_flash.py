"""`borgusb flash` on loop devices standing in for sticks (root, udevd; the flasher runs as a process).

The image is a 58 MiB stick made by tests/hosted/stick.make_stick, the same GPT layout (ESP + FAT data
partition labelled BORGUSB) as image/build_image.py's, small so that the whole tier stays fast. Each
target is a larger file attached as a loop device, and what the flasher leaves on it is judged twice: by
its own checker (`borgusb flash --check`) and by hosted mode's recognition (udev's BORGUSB candidates,
then stickread's reading of the marker and keystore).

Two moments are reached through the writer's TEST ONLY pause (BORGUSB_FLASH_TEST_ONLY_PAUSE, see
borgusb/flash/writer.py): halfway through the write, where the flasher is killed with SIGKILL (a real
interrupted write), and between the write and the read-back, where the test changes one byte in the
loop device's backing file: the device hands back other bytes than it was given, as a failing stick
does (this kernel has no device-mapper to make such a device). The read-back must see it, which it can
only do when it reads the device rather than the page cache the write filled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stick import DATA_START, SECTOR, get, make_stick

from borgusb import keystore
from borgusb.flash.check import check_stick
from borgusb.flash.decide import judge, size_text
from borgusb.flash.disks import find_disk, list_disks, mounts_by_disk
from borgusb.hosted import udev
from borgusb.hosted.stickread import open_stick, read_stick
from borgusb.identity import Wallet
from borgusb.stick import KEYSTORE, MARKER, Marker, Wifi

TARGET_BYTES = 80 << 20
FAST = keystore.KdfParams(iterations=1, lanes=1, memory_kib=1024)
PAUSE = "BORGUSB_FLASH_TEST_ONLY_PAUSE"


def flash(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from borgusb.cli import main; sys.exit(main())", "flash", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


def start_flash(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from borgusb.cli import main; sys.exit(main())", "flash", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the flasher ended before the pause: {proc.communicate()}")
        assert time.monotonic() < deadline, f"the flasher never reached {path.name}"
        time.sleep(0.05)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return make_stick(tmp_path / "new.img", marker=Marker(join=("198.51.100.7:9000",)).to_bytes())


@pytest.fixture
def target(tmp_path: Path, loops):
    """An 80 MiB loop device holding an older valid stick (another marker), partitions added by partx."""
    old = make_stick(tmp_path / "target.img", marker=Marker(join=("old.example:1",)).to_bytes())
    with open(old, "r+b") as fh:
        fh.truncate(TARGET_BYTES)
    return loops(old)


def candidates_on(dev: str, *, until_found: bool = False, timeout: float = 30) -> list:
    """Hosted mode's view: the BORGUSB candidates udev shows on this loop device (with until_found, polled
    until there is one: udev probes a new partition's filesystem after the partition appears)."""
    deadline = time.monotonic() + timeout
    while True:
        subprocess.run(["udevadm", "settle", "--timeout=10"], capture_output=True)
        found = [d for d in udev.BlockEvents().present() if d.device_node.startswith(dev + "p")]
        if found or not until_found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def rescan(dev: str) -> None:
    """What a kernel with partition parsers does after a write: here partx (the host kernel has none)."""
    subprocess.run(["partx", "-d", dev], capture_output=True)
    subprocess.run(["partx", "-a", dev], capture_output=True)
    subprocess.run(["udevadm", "settle", "--timeout=10"], capture_output=True)


def test_list_refuses_loop_internal_and_system_disks(udevd, image: Path, target) -> None:
    out = flash("--list", "--image", str(image))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    loop_line = next(i for i, line in enumerate(lines) if line.strip().startswith(target.dev + " "))
    assert "refused (loop)" in lines[loop_line + 1]
    _, system = mounts_by_disk()
    disks = list_disks()
    internal = [d for d in disks if not (d.loop or d.usb or d.sd or d.removable)]
    assert internal, "this machine shows no internal disk (expected at least the one / is on)"
    for disk in internal:
        i = next(i for i, line in enumerate(lines) if line.strip().startswith(disk.node + " "))
        assert "refused (internal)" in lines[i + 1], lines[i : i + 2]
    system_disks = [d for d in disks if d.system]
    source = subprocess.run(["findmnt", "-nvo", "SOURCE", "/"], capture_output=True, text=True).stdout.strip()
    parent = subprocess.run(["lsblk", "-ndo", "PKNAME", source], capture_output=True, text=True).stdout.strip()
    assert (parent or os.path.basename(source)) in system, (source, system)  # util-linux agrees on where / is
    assert {os.path.basename(d.node) for d in system_disks} == set(system)
    # the system's disk, found by its name as a DEVICE argument is: every reason against it (judged only:
    # a test never points the writer at the machine's own disk)
    root = find_disk(system_disks[0].node)
    assert root is not None
    verdict = judge(root, allow_loop=True, image_size=image.stat().st_size)
    assert [r.reason for r in verdict.refusals][-1] == "system" and not verdict.ok
    # a loop device named on the command line without --allow-loop: refused, nothing written
    out = flash(target.dev, "--yes", "--image", str(image))
    assert out.returncode == 1 and "(loop)" in out.stderr and "Nothing was written" in out.stderr
    assert check_stick(target.dev).marker == Marker(join=("old.example:1",))


def test_write_read_back_and_hosted_mode_takes_it(udevd, image: Path, target, tmp_path: Path) -> None:
    ks_path = tmp_path / "ks.json"
    keystore.save_wallet(ks_path, Wallet(bytes(range(32))), "a passphrase", FAST)
    out = flash(
        target.dev, "--allow-loop", "--yes", "--image", str(image), "--keystore", str(ks_path), "--join", "a.example:9"
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is a valid BorgUSB stick (a wallet keystore)" in out.stdout
    assert get(target.image, KEYSTORE) == ks_path.read_bytes()
    assert Marker.parse(get(target.image, MARKER) or b"").join == ("a.example:9",)
    # outside the data partition the stick is the image, byte for byte
    size = image.stat().st_size
    with open(image, "rb") as a, open(target.image, "rb") as b:
        assert a.read(DATA_START * SECTOR) == b.read(DATA_START * SECTOR)
    assert image.read_bytes()[size - (1 << 20) :] == target.image.read_bytes()[size - (1 << 20) : size]
    rescan(target.dev)
    found = candidates_on(target.dev, until_found=True)
    assert [d.device_node for d in found] == [target.dev + "p2"]
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    contents = read_stick(open_stick(found[0].device_node, udev.fstype(found[0]), work, None), "t", print)
    assert contents.marker.join == ("a.example:9",)
    assert contents.identity == keystore.parse(ks_path.read_bytes())["public"]["doge_address"]


def test_interrupted_write_is_not_a_stick(udevd, image: Path, target, tmp_path: Path) -> None:
    assert check_stick(target.dev).ok and candidates_on(target.dev, until_found=True), (
        "the old stick should be valid before"
    )
    pause = tmp_path / "half"
    proc = start_flash(target.dev, "--allow-loop", "--yes", "--image", str(image), env={PAUSE: f"half:{pause}"})
    try:
        wait_for(pause, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    result = check_stick(target.dev)
    assert not result.ok and result.reason == "no_table", result
    out = flash("--check", target.dev)
    assert out.returncode == 1 and "not a valid BorgUSB stick" in out.stdout
    rescan(target.dev)
    assert candidates_on(target.dev) == []
    # the body was being written: the new image's data partition is there, but nothing points to it
    assert target.image.read_bytes()[: 1 << 20] == bytes(1 << 20)


def test_read_back_catches_a_changed_byte(udevd, image: Path, target, tmp_path: Path) -> None:
    pause = tmp_path / "verify"
    proc = start_flash(target.dev, "--allow-loop", "--yes", "--image", str(image), env={PAUSE: f"verify:{pause}"})
    try:
        wait_for(pause, proc)
        with open(target.image, "r+b") as fh:  # under the loop device: the stick changed a byte
            at = (DATA_START + 100) * SECTOR
            fh.seek(at)
            byte = fh.read(1)
            fh.seek(at)
            fh.write(bytes([byte[0] ^ 0xFF]))
            fh.flush()
            os.fsync(fh.fileno())
        pause.unlink()
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, stdout + stderr
    assert "NOT a valid stick" in stderr
    assert check_stick(target.dev).reason == "no_table"


def test_mounted_disk_only_with_its_size_typed(udevd, image: Path, tmp_path: Path, loops) -> None:
    backing = tmp_path / "mounted.img"
    with open(backing, "wb") as fh:
        fh.truncate(TARGET_BYTES)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(backing)], check=True, capture_output=True)
    loop = loops(backing)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", loop.dev, str(mnt)], check=True, capture_output=True)
    try:
        (mnt / "precious").write_text("keep me")
        out = flash(loop.dev, "--allow-loop", "--yes", "--image", str(image), stdin="yes\n")
        assert out.returncode == 1 and "nothing was written" in out.stderr, out.stderr
        assert "mounted on" in out.stdout and size_text(TARGET_BYTES) in out.stdout
        assert (mnt / "precious").read_text() == "keep me" and os.path.ismount(mnt)
        out = flash(loop.dev, "--allow-loop", "--image", str(image), stdin=size_text(TARGET_BYTES).lower() + "\n")
        assert out.returncode == 0, out.stdout + out.stderr
        assert not os.path.ismount(mnt)
        assert check_stick(loop.dev).ok
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def pi_card(path: Path) -> Path:
    """A small SD card image with the Pi's layout (image/build_image.py assemble_pi): MBR, a FAT boot
    partition at 4 MiB and the FAT data partition labelled BORGUSB."""
    boot, data = 8192, 8192 + 16 * 2048
    with open(path, "wb") as fh:
        fh.truncate((data + 48 * 2048) * SECTOR)
    layout = f"label: dos\nunit: sectors\nstart={boot}, size={16 * 2048}, type=c, bootable\nstart={data}, type=c\n"
    subprocess.run(["sfdisk", "--quiet", str(path)], input=layout, text=True, check=True, capture_output=True)
    for start, sectors, label in ((boot, 16 * 2048, "BORGBOOT"), (data, 48 * 2048, "BORGUSB")):
        subprocess.run(
            ["mkfs.vfat", "-F", "32", "-s", "1", "-n", label, f"--offset={start}", str(path), str(sectors // 2)],
            check=True,
            capture_output=True,
        )
    return path


def test_pi_card_gets_wifi_in_its_marker(udevd, target, tmp_path: Path) -> None:
    card = pi_card(tmp_path / "pi.img")
    psk = tmp_path / "psk"
    psk.write_text("correct horse battery\n")
    out = flash(target.dev, "--pi", "--image", str(card), "--wifi-ssid", "home net", "--yes")
    assert out.returncode == 2 and "--wifi-psk-file" in out.stderr  # no terminal to ask the passphrase on
    args = ["--pi", "--allow-loop", "--yes", "--image", str(card), "--wifi-ssid", "home net"]
    out = flash(target.dev, *args, "--wifi-psk-file", str(psk), "--join", "203.0.113.9:9000")
    assert out.returncode == 0, out.stdout + out.stderr
    result = check_stick(target.dev)
    assert result.ok and result.marker is not None
    assert result.marker.wifi == Wifi("home net", "correct horse battery")
    assert result.marker.always_on and result.marker.join == ("203.0.113.9:9000",)


def reap(pid: int, grace: float = 10.0) -> int:
    """The child's wait status; killed if it has not ended within `grace` (a failed step never leaves it)."""
    deadline = time.monotonic() + grace
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1]
        time.sleep(0.05)


def test_pi_asks_for_wifi_and_yes_on_the_terminal(udevd, target, tmp_path: Path) -> None:
    """The questions as a person sees them: a pseudo-terminal is the flasher's controlling terminal."""
    import pty

    card = pi_card(tmp_path / "pi.img")
    cmd = [sys.executable, "-c", "import sys; from borgusb.cli import main; sys.exit(main())"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        os.execv(sys.executable, [*cmd, "flash", "--pi", "--allow-loop", "--image", str(card), target.dev])
    seen = b""
    answers = [
        (b"Wi-Fi network (SSID)", b"cafe\n"),
        (b"Passphrase of 'cafe'", b"twelve chars\n"),
        (b"yes to write", b"yes\n"),
    ]
    deadline = time.monotonic() + 120
    try:
        while True:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal: it has ended
                break
            if not chunk:
                break
            seen += chunk
            if answers and answers[0][0] in seen:
                os.write(fd, answers.pop(0)[1])
    finally:
        status = reap(pid)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0 and not answers, seen.decode(errors="replace")
    assert b"twelve chars" not in seen  # the passphrase is not echoed
    marker = check_stick(target.dev).marker
    assert marker is not None and marker.wifi == Wifi("cafe", "twelve chars") and marker.always_on
