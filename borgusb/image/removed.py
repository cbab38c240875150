"""The removal step (borgusb-stick-removed.service, started by a udev rule when the BORGUSB device goes away):
unless the node is always-on, kill the cells and the conduit, wipe the RAM copies of the keystore and power
off at once (freed memory is zeroed by init_on_free=1)."""

from __future__ import annotations

import os
import subprocess

from .runtime import ALWAYS_ON, ALWAYS_ON_CMDLINE, STICK, cmdline, say, wipe


def cmd_removed() -> int:
    if ALWAYS_ON.exists() or ALWAYS_ON_CMDLINE in cmdline():
        say("the stick was removed; always-on node: the cells keep running (without the stick's AI stack)")
        from .aimount import release

        release()
        return 0
    say("the stick was removed: stopping the cells, wiping keys from memory, powering off")
    subprocess.run(["systemctl", "stop", "--no-block", "borgusb-conduit.socket"], check=False)  # no restart
    subprocess.run(
        ["systemctl", "kill", "--signal=SIGKILL", "borgusb-cell@*.service", "borgusb-conduit.service"], check=False
    )
    if STICK.exists():
        for path in STICK.iterdir():
            wipe(path)
    subprocess.run(["sync"], check=False)
    os.execvp("systemctl", ["systemctl", "poweroff", "--force"])
