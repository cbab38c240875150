"""The CLI as a person or a script uses it: real subprocesses, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

WORDS = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art"


def borgusb(*args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "borgusb.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture
def passfile(tmp_path: Path) -> Path:
    p = tmp_path / "pass"
    p.write_text("a long passphrase\n")
    return p


def test_help_lists_commands() -> None:
    out = borgusb("--help").stdout
    for command in ("wallet", "envelope"):
        assert command in out
    assert "new" in borgusb("wallet", "--help").stdout


def test_derive_prints_public_identity_only() -> None:
    out = json.loads(borgusb("wallet", "derive", "--json", stdin=WORDS).stdout)
    assert out["doge_address"].startswith("D")
    assert len(out["public_key"]) == 66
    assert "art" not in json.dumps(out)


def test_derive_bad_word_is_a_clear_error() -> None:
    proc = borgusb("wallet", "derive", stdin=WORDS.replace("art", "artt"), check=False)
    assert proc.returncode == 1
    assert "word 24" in proc.stderr and "Traceback" not in proc.stderr


def test_new_show_sign_verify(tmp_path: Path, passfile: Path) -> None:
    ks = tmp_path / "keystore.json"
    new = borgusb("wallet", "new", "--keystore", str(ks), "--passphrase-file", str(passfile))
    assert ks.exists()
    shown = json.loads(borgusb("wallet", "show", "--keystore", str(ks), "--passphrase-file", str(passfile), "--json").stdout)
    assert shown["doge_address"] in new.stdout
    assert "mnemonic" not in shown and "wif" not in shown

    revealed = json.loads(
        borgusb("wallet", "show", "--keystore", str(ks), "--passphrase-file", str(passfile), "--json", "--reveal").stdout
    )
    assert len(revealed["mnemonic"].split()) == 24
    assert json.loads(borgusb("wallet", "derive", "--json", stdin=revealed["mnemonic"]).stdout)["public_key"] == shown["public_key"]

    signed = borgusb("envelope", "sign", "--keystore", str(ks), "--passphrase-file", str(passfile), stdin='{"hello": "world"}').stdout
    verified = borgusb("envelope", "verify", "--expect-signer", shown["public_key"], stdin=signed)
    assert json.loads(verified.stdout) == {"hello": "world"}

    forged = signed.replace("world", "w0rld")
    bad = borgusb("envelope", "verify", stdin=forged, check=False)
    assert bad.returncode == 1 and "bad_signature" in bad.stderr


def test_restore_refuses_overwrite_and_wrong_passphrase(tmp_path: Path, passfile: Path) -> None:
    ks = tmp_path / "keystore.json"
    borgusb("wallet", "restore", "--keystore", str(ks), "--passphrase-file", str(passfile), stdin=WORDS)
    again = borgusb("wallet", "restore", "--keystore", str(ks), "--passphrase-file", str(passfile), stdin=WORDS, check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    proc = borgusb("wallet", "show", "--keystore", str(ks), "--passphrase-file", str(wrong), check=False)
    assert proc.returncode == 1 and "wrong passphrase" in proc.stderr


def test_verify_rejects_garbage() -> None:
    proc = borgusb("envelope", "verify", stdin="not json", check=False)
    assert proc.returncode == 1 and "malformed" in proc.stderr
