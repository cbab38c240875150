"""A person at a VM's screen: what it shows (QMP screendump, read with tesseract) and what they do
(QMP key and mouse events), as the desktop stick's test and benchmark use them.

Reading the screen with OCR, not through a debugging port of the browser: the desktop image opens no such
port, and the test checks what a person would see, drawn by the kiosk on the machine's display.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

SCREEN = (1280, 800)  # the VGA device's mode (vm.VM(display=True))
ABS_MAX = 0x7FFF  # usb-tablet's absolute axis range


class QMP(Protocol):
    def qmp(self, command: str, **arguments: object) -> dict: ...


@dataclass(frozen=True)
class Word:
    text: str
    left: int
    top: int
    width: int
    height: int
    line: tuple[int, int, int]  # (block, paragraph, line): words of one line of text

    @property
    def centre(self) -> tuple[int, int]:
        return self.left + self.width // 2, self.top + self.height // 2


def screendump(vm: QMP, path: Path) -> Path:
    """The display now, as PNG (QMP writes PPM; ffmpeg converts: both are tools the tests already have)."""
    ppm = path.with_suffix(".ppm")
    reply = vm.qmp("screendump", filename=str(ppm))
    if "error" in reply:
        raise AssertionError(f"screendump failed: {reply['error']}")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(ppm), str(path)], check=True)
    ppm.unlink()
    return path


def read_words(png: Path) -> list[Word]:
    """Every word tesseract reads on the screen, with its box."""
    out = subprocess.run(["tesseract", str(png), "-", "tsv"], capture_output=True, text=True, check=True).stdout
    words = []
    for row in csv.DictReader(io.StringIO(out), delimiter="\t", quoting=csv.QUOTE_NONE):
        text = (row.get("text") or "").strip()
        if row.get("level") == "5" and text:
            words.append(
                Word(
                    text,
                    int(row["left"]),
                    int(row["top"]),
                    int(row["width"]),
                    int(row["height"]),
                    (int(row["block_num"]), int(row["par_num"]), int(row["line_num"])),
                )
            )
    return words


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def find_phrase(words: list[Word], phrase: str) -> Word | None:
    """The first word of `phrase` where the phrase's words follow each other on one line."""
    wanted = [_norm(w) for w in phrase.split()]
    for i, word in enumerate(words):
        run = words[i : i + len(wanted)]
        if len(run) == len(wanted) and all(r.line == word.line for r in run):
            if all(_norm(r.text) == w for r, w in zip(run, wanted, strict=True)):
                return word
    return None


def wait_for_text(vm: QMP, workdir: Path, phrase: str, timeout: float, name: str = "screen") -> tuple[Path, Word]:
    """Screenshots until `phrase` is read on the screen; returns the screenshot and the phrase's first word."""
    deadline = time.monotonic() + timeout
    seen = ""
    n = 0
    while True:
        n += 1
        shot = screendump(vm, workdir / f"{name}-{n:03d}.png")
        words = read_words(shot)
        found = find_phrase(words, phrase)
        if found is not None:
            return shot, found
        seen = " ".join(w.text for w in words)[-600:]
        if time.monotonic() > deadline:
            raise AssertionError(f"the screen never showed {phrase!r} within {timeout:.0f}s; it read: {seen!r}")
        time.sleep(2)


def click(vm: QMP, x: int, y: int) -> None:
    """A left click at screen pixel (x, y), with the tablet's absolute pointer."""
    ax, ay = x * ABS_MAX // (SCREEN[0] - 1), y * ABS_MAX // (SCREEN[1] - 1)
    move = [{"type": "abs", "data": {"axis": "x", "value": ax}}, {"type": "abs", "data": {"axis": "y", "value": ay}}]
    vm.qmp("input-send-event", events=move)
    for down in (True, False):
        vm.qmp("input-send-event", events=[{"type": "btn", "data": {"down": down, "button": "left"}}])
        time.sleep(0.05)


QCODES = {" ": "spc", "\n": "ret", "\t": "tab", "-": "minus", ".": "dot", ",": "comma", "/": "slash"}


def type_text(vm: QMP, text: str) -> None:
    """Type `text` on the keyboard, a key at a time (letters, digits, space and a little punctuation)."""
    for ch in text:
        if ch.isascii() and ch.isalnum():
            keys = [ch.lower()] if not ch.isupper() else ["shift", ch.lower()]
        elif ch in QCODES:
            keys = [QCODES[ch]]
        else:
            raise ValueError(f"no key for {ch!r}")
        reply = vm.qmp("send-key", keys=[{"type": "qcode", "data": k} for k in keys], **{"hold-time": 40})
        if "error" in reply:
            raise AssertionError(f"send-key {keys}: {reply['error']}")
        time.sleep(0.03)


def press(vm: QMP, key: str) -> None:
    type_text(vm, {"enter": "\n", "tab": "\t"}[key])
