"""QEMU harness for the image tests and the image benchmark.

A VM boots the stick image with OVMF (UEFI) in qemu-system-x86_64, the stick
attached as USB storage on an xHCI controller, optionally a second disk
standing for the host PC's internal disk and a tap NIC inside a network
namespace. The serial console goes to a file that the tests read; QMP lets
them pull the stick (device_del). Everything started here is stopped by
close(), also when a test fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# The desktop stick's VM CPU: `max` as an Intel part. With QEMU's own vendor string, LLVM (Mesa's
# llvmpipe, which draws the kiosk where a VM has no GPU) takes TCG's `max` for a 32-bit CPU and aborts.
DESKTOP_CPU = "max,vendor=GenuineIntel"
SECTOR = 512

_ACCEL: str | None = None


def detect_accel() -> str:
    """'kvm' if a KVM guest really runs here (tried, not guessed from /dev/kvm), else 'tcg'."""
    global _ACCEL
    if _ACCEL:
        return _ACCEL
    forced = os.environ.get("BORGUSB_QEMU_ACCEL")
    if forced:
        _ACCEL = forced
        return forced
    _ACCEL = "tcg"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        with tempfile.TemporaryDirectory() as d:
            vars_ = Path(d) / "vars.fd"
            shutil.copyfile(OVMF_VARS, vars_)
            serial = Path(d) / "serial.log"
            proc = subprocess.Popen(
                [
                    "qemu-system-x86_64",
                    "-accel",
                    "kvm",
                    "-machine",
                    "q35",
                    "-cpu",
                    "max",
                    "-m",
                    "256",
                    "-nodefaults",
                    "-display",
                    "none",
                    "-serial",
                    f"file:{serial}",
                    "-drive",
                    f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                    "-drive",
                    f"if=pflash,format=raw,unit=1,file={vars_}",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                out, _ = proc.communicate(timeout=8)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
                if "error" not in (out or "").lower():
                    _ACCEL = "kvm"
    return _ACCEL


def partitions(image: Path) -> list[dict]:
    out = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["partitiontable"]["partitions"]


def sha256_range(path: Path, start: int, length: int) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(start)
        left = length
        while left:
            chunk = fh.read(min(left, 8 << 20))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_range(path, 0, path.stat().st_size)


def data_partition(image: Path) -> tuple[int, int]:
    """(offset, size) in bytes of the BORGUSB partition."""
    for p in partitions(image):
        if p.get("name") == "BORGUSB":
            return p["start"] * SECTOR, p["size"] * SECTOR
    raise AssertionError(f"{image} has no partition named BORGUSB")


def esp_partition(image: Path) -> tuple[int, int]:
    for p in partitions(image):
        if p["type"].upper() == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B":
            return p["start"] * SECTOR, p["size"] * SECTOR
    raise AssertionError(f"{image} has no ESP")


def _mtools(image: Path, *args: str) -> bytes:
    """An mtools command on the stick's data partition (``::`` is the partition; no mount)."""
    offset, _ = data_partition(image)
    return subprocess.run(
        [args[0], "-i", f"{image}@@{offset}", *args[1:]],
        check=True,
        capture_output=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout


def put_on_stick(image: Path, name: str, data: bytes) -> None:
    """Write a file onto the stick's data partition (mtools, no mount)."""
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / name
        src.write_bytes(data)
        _mtools(image, "mcopy", "-o", str(src), f"::/{name}")


def read_from_stick(image: Path, name: str) -> bytes:
    """A file on the stick's data partition (mtools, no mount)."""
    return _mtools(image, "mcopy", "-n", f"::/{name}", "-")


def make_internal_disk(path: Path, size_mib: int = 64) -> None:
    """A host PC's internal disk: GPT with an ext4 partition holding a file, and a swap partition."""
    with open(path, "wb") as fh:
        fh.truncate(size_mib << 20)
    subprocess.run(
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(path)],
        check=True,
        text=True,
        input='label: gpt\nstart=2048, size=81920, type=linux, name="home"\nstart=83968, type=swap, name="swap"\n',
    )
    parts = partitions(path)
    with tempfile.TemporaryDirectory() as d:
        files = Path(d) / "files"
        files.mkdir()
        (files / "diary.txt").write_text("the host's own files; BorgUSB must never touch them\n")
        ext = Path(d) / "ext4.img"
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-L", "hostdisk", "-d", str(files), str(ext), "40M"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with open(ext, "rb") as src, open(path, "r+b") as dst:
            dst.seek(parts[0]["start"] * SECTOR)
            shutil.copyfileobj(src, dst)
        swap = Path(d) / "swap.img"
        with open(swap, "wb") as fh:
            fh.truncate(parts[1]["size"] * SECTOR)
        subprocess.run(["mkswap", "-q", str(swap)], check=True)
        with open(swap, "rb") as src, open(path, "r+b") as dst:
            dst.seek(parts[1]["start"] * SECTOR)
            shutil.copyfileobj(src, dst)


class NetNS:
    """A network namespace with a tap for QEMU; the host side of the link is 10.99.0.1/24."""

    HOST_IP = "10.99.0.1"
    GUEST_IP = "10.99.0.2"

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"borgusb-t{os.getpid()}"
        self.tap = "tapb0"
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        self._ip("netns", "add", self.name)
        self.exec_(["ip", "link", "set", "lo", "up"])
        self.exec_(["ip", "tuntap", "add", "dev", self.tap, "mode", "tap"])
        self.exec_(["ip", "addr", "add", f"{self.HOST_IP}/24", "dev", self.tap])
        self.exec_(["ip", "link", "set", self.tap, "up"])

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True)

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def exec_(self, cmd: list[str]) -> None:
        subprocess.run([*self.prefix(), *cmd], check=True)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class VM:
    def __init__(
        self,
        stick: Path,
        workdir: Path,
        *,
        internal_disk: Path | None = None,
        netns: NetNS | None = None,
        memory_mib: int = 2048,
        cpus: int = 2,
        accel: str | None = None,
        kernel: tuple[Path, Path, str] | None = None,
        display: bool = False,
        cpu: str = "max",
    ) -> None:
        self.workdir = workdir
        self.console = workdir / "console.log"
        self.qmp_path = workdir / "qmp.sock"
        self.accel = accel or detect_accel()
        vars_ = workdir / "OVMF_VARS.fd"
        shutil.copyfile(OVMF_VARS, vars_)
        cmd = [
            "qemu-system-x86_64",
            "-accel",
            self.accel,
            "-machine",
            "q35",
            "-cpu",
            cpu,
            "-smp",
            str(cpus),
            "-m",
            str(memory_mib),
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            f"file:{self.console}",
            "-qmp",
            f"unix:{self.qmp_path},server=on,wait=off",
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={vars_}",
            "-device",
            "qemu-xhci,id=xhci",
            "-drive",
            f"if=none,id=stick,format=raw,file={stick}",
            "-device",
            "usb-storage,bus=xhci.0,drive=stick,id=stickdev,removable=on" + ("" if kernel else ",bootindex=0"),
            "-device",
            "virtio-rng-pci",
        ]
        if display:  # a PC's screen, keyboard and mouse; seen with screendump. virtio-gpu, not std VGA: the
            # kiosk's compositor (wlroots) needs a display driver that imports buffers (PRIME), as a PC's GPU
            # drivers do and bochs-drm does not
            cmd += ["-device", "virtio-vga,xres=1280,yres=800"]
            # added after the machine's PS/2 devices, so QMP's input events go to them
            cmd += ["-device", "usb-kbd,bus=xhci.0", "-device", "usb-tablet,bus=xhci.0"]
            # the guest's memory as the host sees it (guest_memory), while the screen is in use
            cmd += ["-device", "virtio-balloon-pci,id=balloon0"]
        if kernel:  # direct kernel boot: the baseline of the benchmark
            vmlinuz, initrd, append = kernel
            cmd += ["-kernel", str(vmlinuz), "-initrd", str(initrd), "-append", append]
        if internal_disk:
            cmd += [
                "-drive",
                f"if=none,id=internal,format=raw,file={internal_disk}",
                "-device",
                "virtio-blk-pci,drive=internal,bootindex=5",
            ]
        if netns:
            cmd = [
                *netns.prefix(),
                *cmd,
                "-netdev",
                f"tap,id=n0,ifname={netns.tap},script=no,downscript=no",
                "-device",
                "virtio-net-pci,netdev=n0,romfile=",
            ]
        else:
            cmd += ["-nic", "none"]
        self.cmd = cmd
        self.started = time.monotonic()
        self.stderr = open(workdir / "qemu.stderr", "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.stderr, start_new_session=True)

    # -------------------------------------------------------------- console

    def text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = rx.search(self.text())
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        tail = self.text()[-4000:]
        raise AssertionError(
            f"console never showed {pattern!r} within {timeout:.0f}s "
            f"(qemu {'exited' if self.proc.poll() is not None else 'running'}, accel {self.accel})\n"
            f"--- console tail ---\n{tail}\n--- qemu stderr ---\n"
            f"{(self.workdir / 'qemu.stderr').read_text(errors='replace')[-2000:]}"
        )

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # -------------------------------------------------------------- QMP

    def qmp(self, command: str, **arguments) -> dict:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            deadline = time.monotonic() + 30  # QEMU makes its QMP socket a moment after it starts
            while True:
                try:
                    s.connect(str(self.qmp_path))
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise
                    time.sleep(0.2)
            f = s.makefile("rw")
            json.loads(f.readline())  # greeting
            f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n")
            f.flush()
            json.loads(f.readline())
            msg = {"execute": command}
            if arguments:
                msg["arguments"] = arguments
            f.write(json.dumps(msg) + "\n")
            f.flush()
            while True:
                reply = json.loads(f.readline())
                if "return" in reply or "error" in reply:
                    return reply

    def guest_memory(self, timeout: float = 60) -> dict[str, int]:
        """The guest's own memory figures (virtio-balloon statistics; a VM with display=True), in bytes."""
        self.qmp("qom-set", path="/machine/peripheral/balloon0", property="guest-stats-polling-interval", value=1)
        asked = time.time()
        deadline = time.monotonic() + timeout
        while True:
            reply = self.qmp("qom-get", path="/machine/peripheral/balloon0", property="guest-stats")
            stats = reply.get("return", {}).get("stats", {})
            fresh = reply.get("return", {}).get("last-update", 0) >= asked  # not the figures sent at boot
            if fresh and stats.get("stat-total-memory", -1) > 0 and stats.get("stat-available-memory", -1) > 0:
                return {k.removeprefix("stat-"): int(v) for k, v in stats.items() if v >= 0}
            if time.monotonic() > deadline:
                raise AssertionError(f"the guest reported no memory statistics within {timeout:.0f}s: {reply}")
            time.sleep(1)

    def pull_stick(self) -> dict:
        return self.qmp("device_del", id="stickdev")

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self.stderr.close()
