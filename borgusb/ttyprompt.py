"""Asking a person at the terminal: passphrases, words, one slip at a time.

Passphrases come from the controlling terminal (``/dev/tty``), so a command
whose standard input is a pipe (``echo '{...}' | borgusb envelope sign``)
still asks for one. Every question is asked again in place after a slip, up
to `TRIES` times, instead of ending the command; the answer that a slip
spoils is the only one asked again. Standard library only: the wallet
commands import this before anything heavy.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable

TRIES = 5  # slips allowed per question before the command gives up
CLEAR = "\033[H\033[2J\033[3J"  # home, clear the screen and its scroll-back


class GaveUp(Exception):
    """Too many slips, or no terminal to ask on; the message says what to do instead."""


def has_terminal() -> bool:
    """Whether this process has a controlling terminal to ask on (whatever stdin is)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def secret(prompt: str) -> str:
    """One hidden answer from the controlling terminal (getpass reads /dev/tty, not stdin)."""
    if not has_terminal():
        raise GaveUp("no terminal to ask for the passphrase: use --passphrase-file")
    return getpass.getpass(prompt)


def new_passphrase(check: Callable[[str], None]) -> str:
    """A new passphrase typed twice; `check` raises (with the rule) for one that may not be used."""
    for _ in range(TRIES):
        passphrase = secret("Choose a keystore passphrase: ")
        try:
            check(passphrase)
        except ValueError as exc:
            say(f"{exc}; try again.")
            continue
        if secret("Repeat the passphrase: ") == passphrase:
            return passphrase
        say("The two passphrases differ; choose it again.")
    raise GaveUp("no passphrase was chosen: nothing was written")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def clear_screen() -> None:
    """Wipe what the terminal shows (and its scroll-back), so words on it are gone before the check."""
    if sys.stdout.isatty():
        sys.stdout.write(CLEAR)
        sys.stdout.flush()


def check_words(words: list[str], positions: list[int], show: Callable[[], None]) -> None:
    """Ask for the words at `positions` (0-based) back; a slip asks that word again, 'words' shows them."""
    for i in positions:
        for _ in range(TRIES):
            answer = input(f"Word {i + 1} (from your sheet; 'words' shows them again)? ").strip().lower()
            if answer == words[i]:
                break
            if answer == "words":
                show()
                input("Press Enter when you have checked your sheet. ")
                clear_screen()
            else:
                say(f"That is not word {i + 1} of your sheet; look again.")
        else:
            raise GaveUp(f"word {i + 1} did not match {TRIES} times: nothing was written; check your sheet")


def fix_words(words: list[str], validate: Callable[[str], object], bad_word: Callable[[Exception], int | None]) -> str:
    """Typed words, with each slip mended in place: a word not in the list is asked again alone.

    `validate` raises (ValueError) for words that are not a valid phrase; `bad_word` gives the 0-based
    index of the one word at fault (None when the fault is not one word's: then all are typed again)."""
    for _ in range(TRIES * 5):
        try:
            validate(" ".join(words))
            return " ".join(words)
        except ValueError as exc:
            say(f"{exc}.")
            at = bad_word(exc)
            if at is None or at >= len(words):
                words = input("Type all your words again, separated by spaces: ").split()
            else:
                words[at] = input(f"Word {at + 1}? ").strip().lower() or words[at]
    raise GaveUp("the words were not accepted: nothing was written")
