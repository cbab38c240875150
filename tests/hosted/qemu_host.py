"""The QEMU "host PC" for hosted mode: the testhost image booted directly, sticks hot-plugged by QMP.

The testhost image (image/profiles/testhost.conf) is the stick's own OS with
`borgusb hosted` running as a service and a probe (image/testhost/tree/) that
reports on the serial console. It is built by the same entry point as the
stick (image/build_image.py --profile testhost --parts-only testhost) and
rebuilt only when what goes into it changed (git HEAD's borgusb/, the image
configuration and overlays). The VM boots its kernel and initrd directly (no
firmware: the fastest boot under TCG) with an xHCI controller and no disk;
`plug()` adds a stick (blockdev-add + device_add usb-storage on xhci.0) and
`unplug()` removes it (device_del). close() kills QEMU, also when a test fails.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("BORGUSB_CACHE", Path.home() / ".cache" / "borgusb"))
NAME = "testhost"
BASE = CACHE / "image" / NAME
INFO = BASE / "build.json"
STAMP = BASE / "inputs.sha"
STICK_INFO = CACHE / "image" / "build.json"


def _python() -> str:
    py = ROOT / ".venv" / "bin" / "python"
    return str(py if py.exists() else sys.executable)


def inputs_key() -> str:
    """What the testhost image is made of: git HEAD's BorgUSB (the wheel) and the image configuration as on disk."""
    h = hashlib.sha256()
    for spec in ("HEAD:borgusb", "HEAD:pyproject.toml"):
        h.update(
            subprocess.run(["git", "-C", str(ROOT), "rev-parse", spec], capture_output=True, text=True).stdout.encode()
        )
    for top in ("mkosi.conf", "image", "overlay"):
        p = ROOT / top
        for f in sorted([p] if p.is_file() else [x for x in p.rglob("*") if not x.is_dir()]):
            if "__pycache__" in f.parts or f.suffix == ".pyc" or "pi" in f.relative_to(ROOT).parts[:2]:
                continue
            h.update(str(f.relative_to(ROOT)).encode() + b"\0")
            h.update(os.readlink(f).encode() if f.is_symlink() else f.read_bytes())
    return h.hexdigest()


def build_testhost(log: Path) -> dict:
    key = inputs_key()
    if INFO.exists() and STAMP.exists() and STAMP.read_text() == key:
        info = json.loads(INFO.read_text())
        if all(Path(info[k]).exists() for k in ("vmlinuz", "initrd")):
            return {**info, "cached": True}
    with open(log, "w") as fh:
        proc = subprocess.run(
            [_python(), str(ROOT / "image" / "build_image.py"), "--profile", NAME, "--parts-only", NAME],
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    if proc.returncode != 0:
        raise RuntimeError("the testhost image build failed:\n" + log.read_text()[-6000:])
    STAMP.write_text(key)
    return {**json.loads(INFO.read_text()), "cached": False}


def stick_image(log: Path) -> Path:
    """The normal stick image (image/build_image.py without options), built if there is none yet."""
    if STICK_INFO.exists():
        img = Path(json.loads(STICK_INFO.read_text())["image"])
        if img.exists():
            return img
    with open(log, "w") as fh:
        proc = subprocess.run(
            [_python(), str(ROOT / "image" / "build_image.py")], stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT
        )
    if proc.returncode != 0:
        raise RuntimeError("the stick image build failed:\n" + log.read_text()[-6000:])
    return Path(json.loads(STICK_INFO.read_text())["image"])


def detect_accel() -> str:
    spec = importlib.util.spec_from_file_location("_borgusb_image_vm", ROOT / "tests" / "image" / "vm.py")
    assert spec and spec.loader
    vm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vm)
    return vm.detect_accel()


def guest_cmdline(info: dict) -> str:
    """The image's own command line, the serial port as /dev/console (the tests read it)."""
    words = [w for w in info["cmdline"].split() if not w.startswith("console=")]
    return " ".join([*words, "console=tty0", "console=ttyS0,115200"])


class HostPC:
    def __init__(
        self, info: dict, workdir: Path, *, memory_mib: int = 2048, cpus: int = 2, accel: str | None = None
    ) -> None:
        self.workdir = workdir
        self.console = workdir / "console.log"
        self.qmp_path = workdir / "qmp.sock"
        self.accel = accel or detect_accel()
        self.cmd = [
            "qemu-system-x86_64",
            "-accel",
            self.accel,
            "-machine",
            "q35",
            "-cpu",
            "max",
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
            "-device",
            "qemu-xhci,id=xhci",
            "-device",
            "virtio-rng-pci",
            "-nic",
            "none",
            "-kernel",
            info["vmlinuz"],
            "-initrd",
            info["initrd"],
            "-append",
            guest_cmdline(info),
        ]
        self.stderr = open(workdir / "qemu.stderr", "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=self.stderr, start_new_session=True)
        self.plugged: set[str] = set()

    def text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first match in the console's complete lines: a line still arriving is not read
        (a `.*` pattern once matched half a line and the test asserted on the missing half)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            m = rx.search(text, 0, text.rfind("\n") + 1)
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(
            f"console never showed {pattern!r} within {timeout:.0f}s (qemu "
            f"{'exited' if self.proc.poll() is not None else 'running'}, accel {self.accel}, "
            f"{time.monotonic() - self.started:.0f}s after start)\n--- console tail ---\n{self.text()[-6000:]}\n"
            f"--- qemu stderr ---\n{(self.workdir / 'qemu.stderr').read_text(errors='replace')[-2000:]}"
        )

    def qmp(self, command: str, **arguments) -> dict:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(self.qmp_path))
            f = s.makefile("rw")
            json.loads(f.readline())
            f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n")
            f.flush()
            json.loads(f.readline())
            msg: dict = {"execute": command}
            if arguments:
                msg["arguments"] = arguments
            f.write(json.dumps(msg) + "\n")
            f.flush()
            while True:
                reply = json.loads(f.readline())
                if "return" in reply or "error" in reply:
                    return reply

    def plug(self, image: Path, dev_id: str = "stick") -> None:
        r = self.qmp(
            "blockdev-add",
            **{"node-name": f"{dev_id}-blk", "driver": "raw", "file": {"driver": "file", "filename": str(image)}},
        )
        assert "error" not in r, r
        r = self.qmp("device_add", driver="usb-storage", bus="xhci.0", drive=f"{dev_id}-blk", id=dev_id, removable=True)
        assert "error" not in r, r
        self.plugged.add(dev_id)

    def unplug(self, dev_id: str = "stick") -> float:
        """device_del; returns the host's monotonic time of the request."""
        t = time.monotonic()
        r = self.qmp("device_del", id=dev_id)
        assert "error" not in r, r
        self.plugged.discard(dev_id)
        return t

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self.stderr.close()
