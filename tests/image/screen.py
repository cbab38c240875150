"""What a VM's screen shows (QMP screendump, read with tesseract), as the desktop stick's test and
benchmark read it.

Reading the screen with OCR, not through a debugging port of the browser: the desktop image opens no such
port, and the test checks what a person would see, drawn by the kiosk on the machine's display.
"""

from __future__ import annotations

import csv
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


def read_words(png: Path) -> list[Word]:
    """Every word tesseract reads on the screen, with its box."""
    out = subprocess.run(["tesseract", str(png), "-", "tsv"], capture_output=True, text=True, check=True).stdout
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
