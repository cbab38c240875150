"""The desktop stick in QEMU (TCG, a virtio-gpu display, a USB keyboard and tablet): the machine's own screen.

What a person sees is checked as they see it: the kiosk draws the conduit's welcome page on the display
(read from QMP screendumps with tesseract, no debugging port in the browser), with the booted stick's bar
(no wallet on this stick yet, a Power off button); the guest's memory with the page open and every cell up
is printed (its own figures through virtio-balloon; the goal is bench_image's). Screenshots go to
docs/screenshots/ when BORGUSB_SCREENSHOTS names that folder. Pulling the stick is test_image.py's (the same
units power off both sticks).

A person at the keyboard creates a wallet there: QMP key events on the USB keyboard (a first key wakes the
compositor's seat, which advertises no keyboard before input arrives), the 24 words read off the screen as a
person copies them to paper, three of them typed back with a passphrase; the page then says the wallet is
saved on the stick, Power off (its access key, Alt+P) turns the machine off, and the keystore on the stick's
data partition decrypts with that passphrase to the wallet of those words. Clicks are not used: under TCG,
libinput's button debouncing keeps them from the page (docs/desktop.md); every page works from the keyboard.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import screen as S
import vm as V
from mnemonic import Mnemonic

from borgusb import keystore
from borgusb.identity import derive_public

pytestmark = pytest.mark.slow

# a deadline for a hang, not a speed goal (bench_image has that): ready in 70-180 s here, and 420 s was
# not enough on a day the same 2 cores ran 2.5x slower with the host lane beside the guest
BOOT_TIMEOUT = float(os.environ.get("BORGUSB_BOOT_TIMEOUT", "900"))
SHOTS = os.environ.get("BORGUSB_SCREENSHOTS")
PASSPHRASE = "kiosk typed 2026"
BIP39 = Mnemonic("english")


def bip39_word(read: str) -> str | None:
    """A token as OCR read it, as the BIP39 word it is, or None for a grid number or noise: the list's words
    differ in their first four letters. A number OCR glued to its word (``11gym``, ``s``+``ordinary`` for 8)
    is cut off: the word is the longest tail that is one."""
    read = re.sub(r"^[^a-z]+", "", read.lower())
    for start in range(min(3, len(read))):
        tail = read[start:]
        if not tail.isalpha():
            continue
        if tail in BIP39.wordlist:
            return tail
        same = [w for w in BIP39.wordlist if w[:4] == tail[:4]] if len(tail) >= 4 else []
        if len(same) == 1:
            return same[0]
    return None


def read_sheet(shot: Path) -> tuple[list[str], list[list[str]]]:
    """The 24 words on the words page, and what OCR read: at twice the screen's size, and while a read
    is not a phrase (its checksum catches a misread word), at three times, where glyphs fall otherwise,
    then as one block of text, then at four times (a bold "ill" read "Hl" at twice and "Il" at three
    times the size in the default mode, "ill" in the other two)."""
    reads: list[list[str]] = []
    sheet: list[str] = []
    for scale, psm in ((2, 3), (3, 3), (2, 6), (4, 3)):
        read = S.words_after(S.read_words(shot, scale=scale, psm=psm), "again.")
        reads.append(read)
        sheet = [w for w in map(bip39_word, read) if w is not None][:24]
        if len(sheet) == 24 and BIP39.check(" ".join(sheet)):
            break
    return sheet, reads


def test_a_wallet_made_at_the_kiosk_is_saved_on_the_stick_and_power_off_turns_it_off(
    desktop_image: Path, tmp_path: Path
) -> None:
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

        S.wake_seat(machine)
        shot = S.keys_until(machine, shots, ["ret"], "Write these 24 words down", "words")  # Create (focused)
        # the grid after the page's text, row by row: the first 24 words of the BIP39 list read after it (the
        # small grey numbers are not needed, and OCR misreads them); checked as a phrase by its checksum
        sheet, reads = read_sheet(shot)
        phrase = " ".join(sheet)
        assert len(sheet) == 24 and BIP39.check(phrase), f"the words read off the screen are not the phrase: {reads}"

        shot = S.keys_until(machine, shots, ["ret"], "Check your sheet", "check")  # "I wrote them down" (focused)
        asked = S.numbers_after(S.read_words(shot, scale=2), "Word")
        assert len(asked) == 3 and all(1 <= n <= 24 for n in asked), f"the check page asks for {asked}"
        for n in asked:  # the first word field has the focus; Tab moves on, down to the two passphrase fields
            S.type_text(machine, sheet[n - 1] + "\t")
        S.type_text(machine, PASSPHRASE + "\t" + PASSPHRASE + "\n")
        shot, _ = S.wait_for_text(machine, shots, "Your wallet is saved on this stick", 180, "saved")
        if SHOTS:
            shutil.copyfile(shot, Path(SHOTS) / "desktop-saved.png")

        S.press(machine, "alt", "p")  # the Power off button's access key: no Tab count across the page
        code = machine.wait_exit(180)
        assert code is not None, "Power off did not turn the machine off:\n" + machine.text()[-3000:]
    finally:
        machine.close()

    saved = tmp_path / "keystore.json"
    saved.write_bytes(V.read_from_stick(stick, "keystore.json"))
    with keystore.load_wallet(saved, PASSPHRASE) as wallet:  # decrypts with the passphrase typed at the kiosk
        assert wallet.public == derive_public(phrase), "the stick holds another wallet than the words shown"
