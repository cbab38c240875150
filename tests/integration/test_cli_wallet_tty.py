"""The wallet commands at a real terminal (issue 22): subprocess transcripts over a pseudo-terminal.

Each command runs as a person runs it, in its own session with a pty as its controlling terminal
(what `/dev/tty` opens). `wallet new` checks the passphrase before showing words, asks again in place
after a slip, clears the screen before the check; `wallet restore` asks again for the one bad word;
`envelope sign` with its payload on a pipe reads the passphrase from the terminal; a damaged keystore
is said to be damaged, with the way to restore, before anything is asked.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from borgusb.identity import derive_public
from borgusb.ttyprompt import CLEAR

WORDS = ["abandon"] * 23 + ["art"]
PASS = "correct horse battery"
BORGUSB = [sys.executable, "-m", "borgusb.cli"]


class Terminal:
    """A command whose controlling terminal is a pty this test types into and reads from."""

    def __init__(self, *args: str, data_on_pipes: bool = False) -> None:
        master, slave = pty.openpty()
        self.master = master
        self.seen = ""
        self.at = 0  # how far `expect` has read
        self.proc = subprocess.Popen(
            [*BORGUSB, *args],
            stdin=subprocess.PIPE if data_on_pipes else slave,
            stdout=subprocess.PIPE if data_on_pipes else slave,
            stderr=slave,
            start_new_session=True,  # a session of its own, whose controlling terminal is the pty:
            preexec_fn=lambda: fcntl.ioctl(2, termios.TIOCSCTTY, 0),  # noqa: PLW1509
        )
        os.close(slave)

    def expect(self, pattern: str, timeout_s: float = 60.0) -> re.Match[str]:
        """Wait until the terminal shows `pattern` (a regex) after what was already matched."""
        deadline = time.monotonic() + timeout_s
        while not (m := re.compile(pattern).search(self.seen, self.at)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} not shown; the terminal shows:\n{self.seen[-3000:]}")
            if select.select([self.master], [], [], min(left, 0.5))[0]:
                try:
                    self.seen += os.read(self.master, 65536).decode(errors="replace")
                except OSError:  # the command ended and closed the terminal
                    if self.proc.poll() is not None:
                        raise AssertionError(f"{pattern!r} not shown before exit:\n{self.seen[-3000:]}") from None
        self.at = m.end()
        return m

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def wait(self) -> int:
        """The command's exit status, once everything it wrote is in `seen`: its last lines may still be
        in the pty when it has ended (a clean-clone run missed the address printed after "Wallet
        written to")."""
        code = self.proc.wait(timeout=60)
        while select.select([self.master], [], [], 5.0)[0]:  # a bound, not a pause: EOF comes at once
            try:
                data = os.read(self.master, 65536)
            except OSError:  # every writer has closed the terminal: all of it has been read
                break
            if not data:
                break
            self.seen += data.decode(errors="replace")
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminal() -> Iterator[type[Terminal]]:
    opened: list[Terminal] = []

    def start(*args: str, data_on_pipes: bool = False) -> Terminal:
        opened.append(Terminal(*args, data_on_pipes=data_on_pipes))
        return opened[-1]

    yield start  # type: ignore[misc]
    for t in opened:
        t.close()


def borgusb(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """A command with no terminal at all (its own session, stdin a pipe), as a script runs it."""
    return subprocess.run(
        [*BORGUSB, *args], input=stdin, capture_output=True, text=True, timeout=60, start_new_session=True
    )


def test_wallet_new_checks_the_passphrase_first_retries_in_place_and_clears_the_screen(
    terminal: type[Terminal], tmp_path: Path
) -> None:
    ks = tmp_path / "keystore.json"
    t = terminal("wallet", "new", "--keystore", str(ks))
    t.expect("Choose a keystore passphrase: ")
    assert "Your 24 words" not in t.seen
    t.type("short")
    t.expect("at least 8 characters; try again")
    t.expect("Choose a keystore passphrase: ")
    t.type(PASS)
    t.expect("Repeat the passphrase: ")
    t.type(PASS + "!")
    t.expect("differ; choose it again")
    t.expect("Choose a keystore passphrase: ")
    t.type(PASS)
    t.expect("Repeat the passphrase: ")
    t.type(PASS)
    t.expect("Your 24 words")
    t.expect(r"Press Enter when you have written them down")
    words = dict((int(n), w) for n, w in re.findall(r"(\d+)\. (\w+)", t.seen))
    assert sorted(words) == list(range(1, 25))
    t.type("")
    t.expect(re.escape(CLEAR))  # the words leave the screen before the check
    n = int(t.expect(r"Word (\d+) \(from your sheet").group(1))
    t.type("zzz")  # a slip: that word is asked again, nothing ends
    t.expect(f"That is not word {n} of your sheet")
    t.expect(rf"Word {n} \(")
    t.type("words")  # the way back to the words
    t.expect(f"{n}. {words[n]}")
    t.expect("Press Enter when you have checked your sheet")
    t.type("")
    t.expect(re.escape(CLEAR))
    for _ in range(3):  # the three words, each answered right now
        t.expect(rf"Word {n} \(")
        t.type(words[n])
        m = t.expect(r"Word (\d+) \(from|Wallet written to")
        if m.group(0) == "Wallet written to":
            break
        n, t.at = int(m.group(1)), m.start()
    else:
        raise AssertionError(f"more than three words asked:\n{t.seen[-2000:]}")
    assert t.wait() == 0
    address = re.search(r"Doge address : (D\w+)", t.seen)
    assert address and json.loads(ks.read_text())["public"]["doge_address"] == address.group(1)


def test_wallet_new_refuses_a_short_passphrase_file_before_showing_any_word(tmp_path: Path) -> None:
    short = tmp_path / "pass"
    short.write_text("abc\n")
    proc = borgusb("wallet", "new", "--keystore", str(tmp_path / "ks.json"), "--passphrase-file", str(short))
    assert proc.returncode == 1 and "at least 8 characters" in proc.stderr
    assert "Your 24 words" not in proc.stdout and not (tmp_path / "ks.json").exists()


def test_restore_at_a_terminal_asks_again_for_the_bad_word_only(terminal: type[Terminal], tmp_path: Path) -> None:
    ks = tmp_path / "keystore.json"
    t = terminal("wallet", "restore", "--keystore", str(ks))
    t.expect("Type your words")
    t.type(" ".join(WORDS[:6] + ["abandn"] + WORDS[7:]))
    t.expect("word 7 is not in the BIP39 English word list; did you mean abandon")
    t.expect(r"Word 7\? ")
    t.type("abandon")
    t.expect("Choose a keystore passphrase: ")
    t.type(PASS)
    t.expect("Repeat the passphrase: ")
    t.type(PASS)
    t.expect("Wallet restored to")
    assert t.wait() == 0
    assert json.loads(ks.read_text())["public"]["doge_address"] == derive_public(" ".join(WORDS)).doge_address


def test_envelope_sign_with_a_piped_payload_asks_the_terminal(terminal: type[Terminal], tmp_path: Path) -> None:
    ks, passfile = tmp_path / "keystore.json", tmp_path / "pass"
    passfile.write_text(PASS + "\n")
    assert (
        borgusb(
            "wallet", "restore", "--keystore", str(ks), "--passphrase-file", str(passfile), stdin=" ".join(WORDS)
        ).returncode
        == 0
    )
    t = terminal("envelope", "sign", "--keystore", str(ks), data_on_pipes=True)
    assert t.proc.stdin is not None and t.proc.stdout is not None
    t.proc.stdin.write(b'{"hello": 1}')
    t.proc.stdin.close()
    t.expect("Keystore passphrase: ")
    t.type(PASS)
    signed = t.proc.stdout.read().decode()
    assert t.wait() == 0
    verified = borgusb("envelope", "verify", stdin=signed)
    assert verified.returncode == 0 and json.loads(verified.stdout) == {"hello": 1}
    assert "no terminal" not in t.seen


def test_a_damaged_keystore_is_said_before_any_passphrase_is_asked(tmp_path: Path) -> None:
    ks, passfile = tmp_path / "keystore.json", tmp_path / "pass"
    passfile.write_text(PASS + "\n")
    borgusb("wallet", "restore", "--keystore", str(ks), "--passphrase-file", str(passfile), stdin=" ".join(WORDS))
    ks.write_text(ks.read_text()[:150])  # a torn copy
    for args in (["wallet", "show"], ["envelope", "sign"]):
        proc = borgusb(*args, "--keystore", str(ks), stdin="{}")  # no terminal: asking would fail first
        assert proc.returncode == 1, proc.stderr
        assert "is damaged" in proc.stderr and f"borgusb wallet restore --keystore {ks} --force" in proc.stderr
        assert "no terminal" not in proc.stderr and "Traceback" not in proc.stderr
