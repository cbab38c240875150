"""What a VM's screen shows (QMP screendump, read with tesseract), as the desktop stick's test and
benchmark read it.

Reading the screen with OCR, not through a debugging port of the browser: the desktop image opens no such
port, and the test checks what a person would see, drawn by the kiosk on the machine's display.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class QMP(Protocol):
    def qmp(self, command: str, **arguments: object) -> dict: ...


@dataclass(frozen=True)
class Word:
    text: str
    line: tuple[int, int, int]  # (block, paragraph, line): words of one line of text


def screendump(vm: QMP, path: Path) -> Path:
    """The display now, as PNG (QMP writes PPM; ffmpeg converts: both are tools the tests already have)."""
    ppm = path.with_suffix(".ppm")
    reply = vm.qmp("screendump", filename=str(ppm))
    if "error" in reply:
        raise AssertionError(f"screendump failed: {reply['error']}")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(ppm), str(path)], check=True)
    ppm.unlink()
    return path


_READ: dict[tuple[bytes, int, int], list[Word]] = {}  # (screen's SHA-256, scale, psm) -> its words


def read_words(png: Path, scale: int = 1, psm: int = 3) -> list[Word]:
    """Every word tesseract reads on the screen, with its line; `scale` enlarges the screen first, for
    small or light text (the words page's grid reads reliably only at twice its size); `psm` is
    tesseract's page segmentation mode (3, its default: a page of columns and blocks; 6: one block of
    text, which reads some short bold words the default misreads). A screen read before (the same
    pixels: a boot's unchanged frames, a page waiting) is not read again: OCR takes the host's cores
    from the guest, which TCG needs."""
    seen = (hashlib.sha256(png.read_bytes()).digest(), scale, psm)
    if seen in _READ:
        return list(_READ[seen])
    if len(_READ) >= 16:
        del _READ[next(iter(_READ))]
    words = _READ[seen] = _ocr(png, scale, psm)
    return list(words)


def _ocr(png: Path, scale: int, psm: int) -> list[Word]:
    if scale != 1:
        big = png.with_name(f"{png.stem}-x{scale}.png")
        filt = f"scale=iw*{scale}:ih*{scale}:flags=lanczos"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(png), "-vf", filt, str(big)], check=True)
        png = big
    command = ["tesseract", str(png), "-", "--psm", str(psm), "tsv"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    words = []
    for row in csv.DictReader(io.StringIO(out), delimiter="\t", quoting=csv.QUOTE_NONE):
        text = (row.get("text") or "").strip()
        if row.get("level") == "5" and text:
            words.append(Word(text, (int(row["block_num"]), int(row["par_num"]), int(row["line_num"]))))
    return words


def _norm(text: str) -> str:
    """A word as compared: lower case, letters and digits only; a capital I that OCR read as | is an i."""
    return re.sub(r"[^a-z0-9]", "", text.replace("|", "i").lower())


def find_phrase(words: list[Word], phrase: str) -> Word | None:
    """The first word of `phrase` where the phrase's words follow each other on one line."""
    wanted = [_norm(w) for w in phrase.split()]
    for i, word in enumerate(words):
        run = words[i : i + len(wanted)]
        if len(run) == len(wanted) and all(r.line == word.line for r in run):
            if all(_norm(r.text) == w for r, w in zip(run, wanted, strict=True)):
                return word
    return None


def words_after(words: list[Word], landmark: str) -> list[str]:
    """The words read after the first `landmark` (compared as `find_phrase` does), in reading order."""
    norms = [_norm(w.text) for w in words]
    return [w.text for w in words[norms.index(_norm(landmark)) + 1 :]]


def numbers_after(words: list[Word], label: str) -> list[int]:
    """The numbers that follow `label` on their line (``Word 3``), in reading order: the check page."""
    return [
        int(b.text)
        for a, b in itertools.pairwise(words)
        if a.line == b.line and _norm(a.text) == _norm(label) and re.fullmatch(r"\d{1,2}", b.text)
    ]


# QMP qcodes of the characters the tests type (a US keyboard: the kiosk's keymap)
_QCODES = {" ": "spc", "-": "minus", ".": "dot", ",": "comma", "/": "slash", "\n": "ret", "\t": "tab"}


def press(vm: QMP, *qcodes: str) -> None:
    """One key press, with `qcodes` held together (``press(vm, "shift", "tab")``), as a USB keyboard sends it."""
    reply = vm.qmp("send-key", keys=[{"type": "qcode", "data": q} for q in qcodes], **{"hold-time": 60})
    if "error" in reply:
        raise AssertionError(f"send-key {qcodes} failed: {reply['error']}")
    time.sleep(0.15)  # pacing, not waiting for a condition: keys sent faster than a USB poll merge or drop


def wake_seat(vm: QMP) -> None:
    """A person's first keys at the kiosk: cage offers the page a keyboard only once input has arrived, so the
    first presses (right Shift, harmless anywhere) may be lost; a few of them over a couple of seconds."""
    for _ in range(12):
        press(vm, "shift_r")


def type_text(vm: QMP, text: str) -> None:
    """Type `text` (lower and upper case letters, digits, space and a little punctuation) key by key."""
    for ch in text:
        if ch.isupper():
            press(vm, "shift", ch.lower())
        elif ch.isalnum() and ch.isascii():
            press(vm, ch)
        else:
            press(vm, _QCODES[ch])


_SHOT = itertools.count(1)  # screenshots numbered in the order they were taken


def wait_for_text(vm: QMP, workdir: Path, phrase: str, timeout: float, name: str = "screen") -> tuple[Path, Word]:
    """Screenshots until `phrase` is read on the screen; returns the screenshot and the phrase's first word."""
    deadline = time.monotonic() + timeout
    seen = ""
    while True:
        shot = screendump(vm, workdir / f"{next(_SHOT):03d}-{name}.png")
        words = read_words(shot)
        found = find_phrase(words, phrase)
        if found is not None:
            return shot, found
        seen = " ".join(w.text for w in words)[-600:]
        if time.monotonic() > deadline:
            raise AssertionError(f"the screen never showed {phrase!r} within {timeout:.0f}s; it read: {seen!r}")
        time.sleep(2)


def keys_until(vm: QMP, workdir: Path, keys: list[str], phrase: str, name: str, tries: int = 3) -> Path:
    """Press `keys` until the screen shows `phrase` (a page's answer): a key lost on its way is sent again,
    but only after a minute without the page changing, so a slow page is never pressed twice."""
    for _ in range(tries - 1):
        press(vm, *keys)
        try:
            return wait_for_text(vm, workdir, phrase, 60, name)[0]
        except AssertionError:
            pass  # the page never changed: the key was lost
    press(vm, *keys)
    return wait_for_text(vm, workdir, phrase, 60, name)[0]
