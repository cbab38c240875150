"""The desktop stick in QEMU (TCG, a virtio-gpu display, a USB keyboard and tablet): the machine's own screen.

What a person sees is checked as they see it: the kiosk draws the conduit's welcome page on the display
(read from QMP screendumps with tesseract, no debugging port in the browser), with the booted stick's bar
(no wallet on this stick yet, a Power off button); the guest's memory with the page open and every cell up
is printed (its own figures through virtio-balloon; the goal is bench_image's); pulling the stick powers the
machine off as on the headless stick. Screenshots go to docs/screenshots/ when BORGUSB_SCREENSHOTS names that folder.

Not covered yet (docs/desktop.md): typing and clicking into the page. QMP's key and pointer events reach the
compositor (the pointer moves on the screen) but not the page, so restoring a wallet at the kiosk and its
write-back to the stick are tested on the conduit's side only (tests/unit/test_conduit_bootedstick.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import screen as S
import vm as V

pytestmark = pytest.mark.slow

BOOT_TIMEOUT = float(os.environ.get("BORGUSB_BOOT_TIMEOUT", "420"))
SHOTS = os.environ.get("BORGUSB_SCREENSHOTS")


def test_the_kiosk_draws_the_conduit_on_the_screen_and_pulling_powers_off(desktop_image: Path, tmp_path: Path) -> None:
    stick = tmp_path / "stick.img"
    subprocess.run(["cp", "--sparse=always", str(desktop_image), str(stick)], check=True)
    shots = tmp_path / "shots"
    shots.mkdir()
    machine = V.VM(stick, tmp_path, display=True, cpu=V.DESKTOP_CPU)
    try:
        shot, _ = S.wait_for_text(machine, shots, "Your identity lives on this stick", BOOT_TIMEOUT, "welcome")
        print(f"\nwelcome page drawn {machine.elapsed():.1f}s after QEMU started")
        words = S.read_words(shot)
        assert S.find_phrase(words, "holds no wallet yet") is not None, "the booted stick's bar is not on the page"
        assert S.find_phrase(words, "Power off") is not None, "no Power off button on the page"
        assert S.find_phrase(words, "already have 24 words") is not None
        if SHOTS:
            shutil.copyfile(shot, Path(SHOTS) / "desktop-welcome.png")
        machine.wait_for(r"BORGUSB-READY cells=", BOOT_TIMEOUT)  # every cell up too: the node's whole RAM
        mem = machine.guest_memory()
        used = (mem["total-memory"] - mem["available-memory"]) / 2**20
        # printed, not asserted: the goal (< 1 GiB) is bench_image's; the test checks what works
        print(f"RAM in use with the page open: {used:.0f} MiB of {mem['total-memory'] / 2**20:.0f} MiB")
        assert "error" not in machine.pull_stick()
        code = machine.wait_exit(180)
        assert code is not None, "pulling the stick did not power the machine off:\n" + machine.text()[-3000:]
        assert "the stick was removed" in machine.text()
    finally:
        machine.close()
