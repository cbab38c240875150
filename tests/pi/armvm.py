"""Boot the Pi image's own kernel, device tree and initramfs in qemu-system-aarch64 (TCG).

* ``raspi3b``: QEMU's Raspberry Pi 3 Model B (4 Cortex-A53, exactly 1 GiB like
  the board), the SD card on its SD controller, a USB network adapter (usb-net)
  on the dwc2 host with QEMU's user network (DHCP). QEMU starts the kernel itself
  (-kernel/-initrd/-dtb): it does not run the Pi's GPU firmware (bootcode.bin,
  start.elf), so config.txt is read by the test, not by the machine.
* ``virt``: the generic arm64 machine with the same kernel, initramfs and command
  line, 1 GiB, the card as a virtio disk and a virtio NIC (DHCP): the fallback
  when the raspi3b model cannot run the node, said explicitly by the test.

Everything started here is stopped by close(), also when a test fails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path


def pow2_copy(image: Path, dst: Path) -> Path:
    """QEMU's SD card model wants a power-of-two size: a sparse copy, padded."""
    subprocess.run(["cp", "--sparse=always", str(image), str(dst)], check=True)
    size = dst.stat().st_size
    want = 1 << (size - 1).bit_length()
    with open(dst, "r+b") as fh:
        fh.truncate(want)
    return dst


class ArmVM:
    def __init__(
        self,
        machine: str,
        workdir: Path,
        *,
        card: Path,
        kernel: Path,
        initrd: Path,
        dtb: Path | None,
        append: str,
        memory_mib: int = 1024,
        cpus: int = 4,
    ) -> None:
        self.machine = machine
        self.workdir = workdir
        self.console = workdir / f"console-{machine}.log"
        # raspi3b's second UART: the mini UART (ttyS1), the Pi's serial console on GPIO 14/15.
        self.console_uart1 = workdir / f"console-{machine}-uart1.log"
        self.stderr_path = workdir / f"qemu-{machine}.stderr"
        cmd = [
            "qemu-system-aarch64",
            "-accel",
            "tcg",
            "-M",
            machine,
            "-m",
            str(memory_mib),
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
            "-serial",
            f"file:{self.console}",
            *(["-serial", f"file:{self.console_uart1}"] if machine == "raspi3b" else []),
            "-kernel",
            str(kernel),
            "-initrd",
            str(initrd),
            "-append",
            append,
        ]
        if machine == "raspi3b":
            cmd += [
                "-smp",
                "4",
                "-dtb",
                str(dtb),
                "-drive",
                f"if=sd,format=raw,file={card}",
                "-usb",
                "-netdev",
                "user,id=n0",
                "-device",
                "usb-net,netdev=n0",
            ]
        else:
            cmd += [
                "-cpu",
                "cortex-a53",
                "-smp",
                str(cpus),
                "-nodefaults",
                "-drive",
                f"if=none,id=card,format=raw,file={card}",
                "-device",
                "virtio-blk-pci,drive=card",
                "-netdev",
                "user,id=n0",
                "-device",
                "virtio-net-pci,netdev=n0,romfile=",
                "-device",
                "virtio-rng-pci",
            ]
            # -nodefaults drops the serial port's default chardev order: -serial above still binds PL011.
        self.cmd = cmd
        self.started = time.monotonic()
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._stderr, start_new_session=True)

    def text(self) -> str:
        """Both serial consoles (PL011 = ttyAMA0, then on raspi3b the mini UART = ttyS1)."""
        text = ""
        for path in (self.console, self.console_uart1):
            try:
                text += path.read_text(errors="replace")
            except FileNotFoundError:
                pass
        return text

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def wait_for(self, pattern: str, timeout: float, stall: float | None = None) -> re.Match[str] | None:
        """The first match, or None when QEMU exits, the timeout passes, or (stall) the console is silent."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        last_len, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            text = self.text()
            m = rx.search(text)
            if m:
                return m
            if self.proc.poll() is not None:
                return None
            if len(text) != last_len:
                last_len, last_change = len(text), time.monotonic()
            elif stall and time.monotonic() - last_change > stall:
                return None
            time.sleep(0.5)
        return None

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self._stderr.close()
