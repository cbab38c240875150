"""What every boot step shares: the RAM paths, the console, the kernel command line, the stick's device.

Only the standard library is imported here (borgusb.stick, which loads dataclasses, only when the
stick is looked for): the ready probe is counted in the RAM it reports, and every step starts fast.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

ALWAYS_ON_CMDLINE = "borgusb.alwayson=1"  # the kernel command line's always-on (profile alwayson)
RUN = Path(os.environ.get("BORGUSB_RUN", "/run/borgusb"))
STICK = RUN / "stick"  # the marker and the keystore, copied into RAM
MOUNTPOINT = RUN / "mnt"
NODE_ENV = RUN / "node.env"
CELL_ARGS = RUN / "cell.args"  # the cells' --ip and --join (borgusb cell run --args-file)
IDENTITY = RUN / "identity.json"
ALWAYS_ON = RUN / "always-on"


def say(message: str) -> None:
    """Tell the person: every active console (screen and serial) and the journal."""
    line = f"BorgUSB: {message}"
    print(line, flush=True)
    try:
        names = Path("/sys/class/tty/console/active").read_text().split()
    except OSError:
        names = []
    for name in names:
        try:
            fd = os.open(f"/dev/{name}", os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            os.write(fd, f"\r\n{line}\r\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def cmdline() -> list[str]:
    try:
        return shlex.split(Path("/proc/cmdline").read_text())
    except OSError:
        return []


def wait_for_device(timeout: float) -> Path | None:
    """The partition labelled BORGUSB, once udev has made its link; None after `timeout` seconds."""
    from ..stick import LABEL

    device = Path("/dev/disk/by-label") / LABEL
    deadline = time.monotonic() + timeout
    while True:
        if device.exists():
            return device.resolve()
        if time.monotonic() > deadline:
            return None
        subprocess.run(["udevadm", "settle", "--timeout=1"], check=False)
        time.sleep(0.2)


def wipe(path: Path) -> None:
    """Overwrite a file with zeros, then delete it (the RAM copies of the keystore)."""
    try:
        size = path.stat().st_size
        with open(path, "r+b", buffering=0) as fh:
            fh.write(b"\0" * size)
            os.fsync(fh.fileno())
        path.unlink()
    except OSError:
        pass
