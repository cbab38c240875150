"""The removal step (borgusb-stick-removed.service, started by a udev rule when the BORGUSB device goes away):
unless the node is always-on, kill the cells and the conduit, wipe the RAM copies of the keystore and power
off at once (freed memory is zeroed by init_on_free=1). The conduit's power-off button does the same
(borgusb-poweroff.service), always, after a write to the stick under way."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time

from .runtime import ALWAYS_ON, ALWAYS_ON_CMDLINE, STICK, cmdline, say, wipe


def cmd_removed() -> int:
    if ALWAYS_ON.exists() or ALWAYS_ON_CMDLINE in cmdline():
        say("the stick was removed; always-on node: the cells keep running (without the stick's AI stack)")
        from .aimount import release

        release()
        return 0
    say("the stick was removed: stopping the cells, wiping keys from memory, powering off")
    return wipe_and_power_off()


def cmd_poweroff(wait_s: float = 30.0) -> int:
    """The conduit's power-off button (borgusb-poweroff.service): as a pulled stick, always, once a wallet
    being written to the stick (borgusb.image.writeback) is written."""
    from .writeback import LOCK

    say("power-off asked from the conduit: finishing any write to the stick, wiping keys, powering off")
    deadline = time.monotonic() + wait_s
    with open(LOCK, "a") as lock:
        while time.monotonic() < deadline:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.2)
        else:
            say("the write to the stick did not finish in time: powering off anyway")
        return wipe_and_power_off()


def wipe_and_power_off() -> int:
    subprocess.run(["systemctl", "stop", "--no-block", "borgusb-conduit.socket"], check=False)  # no restart
    subprocess.run(
        ["systemctl", "kill", "--signal=SIGKILL", "borgusb-cell@*.service", "borgusb-conduit.service"], check=False
    )
    if STICK.exists():
        for path in STICK.iterdir():
            wipe(path)
    subprocess.run(["sync"], check=False)
    os.execvp("systemctl", ["systemctl", "poweroff", "--force"])
