"""The CLI as a person or a script uses it: real subprocesses, real files."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORDS = (
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon "
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art"
)


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
    shown = json.loads(
        borgusb("wallet", "show", "--keystore", str(ks), "--passphrase-file", str(passfile), "--json").stdout
    )
    assert shown["doge_address"] in new.stdout
    assert "mnemonic" not in shown and "wif" not in shown

    revealed = json.loads(
        borgusb(
            "wallet", "show", "--keystore", str(ks), "--passphrase-file", str(passfile), "--json", "--reveal"
        ).stdout
    )
    assert len(revealed["mnemonic"].split()) == 24
    assert (
        json.loads(borgusb("wallet", "derive", "--json", stdin=revealed["mnemonic"]).stdout)["public_key"]
        == shown["public_key"]
    )

    signed = borgusb(
        "envelope", "sign", "--keystore", str(ks), "--passphrase-file", str(passfile), stdin='{"hello": "world"}'
    ).stdout
    verified = borgusb("envelope", "verify", "--expect-signer", shown["public_key"], stdin=signed)
    assert json.loads(verified.stdout) == {"hello": "world"}

    forged = signed.replace("world", "w0rld")
    bad = borgusb("envelope", "verify", stdin=forged, check=False)
    assert bad.returncode == 1 and "bad_signature" in bad.stderr


def test_restore_refuses_overwrite_and_wrong_passphrase(tmp_path: Path, passfile: Path) -> None:
    ks = tmp_path / "keystore.json"
    borgusb("wallet", "restore", "--keystore", str(ks), "--passphrase-file", str(passfile), stdin=WORDS)
    again = borgusb(
        "wallet", "restore", "--keystore", str(ks), "--passphrase-file", str(passfile), stdin=WORDS, check=False
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    proc = borgusb("wallet", "show", "--keystore", str(ks), "--passphrase-file", str(wrong), check=False)
    assert proc.returncode == 1 and "wrong passphrase" in proc.stderr


def test_verify_rejects_garbage() -> None:
    proc = borgusb("envelope", "verify", stdin="not json", check=False)
    assert proc.returncode == 1 and "malformed" in proc.stderr


# ---------------------------------------------------------------- the command table


def test_help_lists_every_command_of_the_table_with_its_help() -> None:
    from borgusb.cli import COMMANDS

    proc = subprocess.run(
        [sys.executable, "-m", "borgusb.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    listed = {
        line.split()[0]: line.split(None, 1)[1]
        for line in proc.stdout.splitlines()
        if line.startswith("    ") and len(line.split()) > 1
    }
    assert listed == {name: command.help for name, command in COMMANDS.items()}
    assert {"wallet", "envelope", "put", "get", "stat", "rm", "cell", "cluster", "sim", "conduit", "hosted"} <= set(
        COMMANDS
    )


@pytest.mark.parametrize(
    "name", ["wallet", "envelope", "put", "get", "stat", "rm", "cell", "cluster", "sim", "conduit", "hosted"]
)
def test_every_command_answers_its_own_help(name: str) -> None:
    out = borgusb(name, "--help").stdout
    assert out.startswith(f"usage: borgusb {name} "), out[:200]


def test_top_level_help_imports_no_command_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "borgusb.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "usage: borgusb" in proc.stdout
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "argparse" in imported  # the import log is really there
    heavy = {
        "aiohttp",
        "coincurve",
        "cryptography",
        "bip_utils",
        "borgusb.storecli",
        "borgusb.node",
        "borgusb.cluster",
        "borgusb.keys",
        "borgusb.identity",
    }
    assert not heavy & imported, heavy & imported


def test_unknown_command_is_a_usage_error() -> None:
    proc = borgusb("frobnicate", check=False)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


# ---------------------------------------------------------------- put/get/stat/rm without a node


def test_put_help_gives_the_shard_size_the_code_uses() -> None:
    from borgusb.shard.model import SHARD_SIZE
    from borgusb.storecli import size_text

    out = " ".join(borgusb("put", "--help").stdout.split())
    assert f"default {SHARD_SIZE}, {size_text(SHARD_SIZE)}" in out
    assert size_text(1024 * 1024) == "1 MiB" and size_text(256 * 1024) == "256 KiB"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _store_cli(*args: str, cluster_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "BORGUSB_NODE"}
    env["BORGUSB_CLUSTER_DIR"] = str(cluster_dir)
    return subprocess.run(
        [sys.executable, "-m", "borgusb.cli", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_put_with_no_node_running_says_how_to_name_one(tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x" * 100)
    (tmp_path / "clusters" / "old").mkdir(parents=True)
    (tmp_path / "clusters" / "old" / "state.json").write_text('{"cell": "shardTreeC')  # torn: ignored
    port = str(_free_port())
    proc = _store_cli(
        "put", str(src), "--key-file", str(tmp_path / "k"), "-q", "--port", port, cluster_dir=tmp_path / "clusters"
    )
    assert proc.returncode == 3, proc.stderr  # no node reachable
    assert f"no shardTreeCell runs on this machine (tried 127.0.0.1:{port}" in proc.stderr
    assert "borgusb cluster up --nodes 5" in proc.stderr
    assert "--node IP" in proc.stderr and "Traceback" not in proc.stderr
    named = _store_cli("stat", "00" * 32, "--node", "127.0.0.1", "--port", port, cluster_dir=tmp_path / "clusters")
    assert named.returncode == 3

    assert f"127.0.0.1:{port} unreachable" in named.stderr and "--node IP" in named.stderr, named.stderr


# ---------------------------------------------------------------- the progress line without tqdm


def test_progress_line_off_a_terminal_prints_quarters_and_a_final_line() -> None:
    from borgusb.storecli import ProgressLine

    out = io.StringIO()
    line = ProgressLine("put", out)
    assert not line.tty
    total = 40 * 1024 * 1024
    for done in range(0, total + 1, 1024 * 1024):
        line.update(done, total)
    line.close()
    line.close()
    lines = out.getvalue().splitlines()
    assert [ln.split(", ")[0] for ln in lines] == [
        "put: 10 MiB of 40 MiB (25%)",
        "put: 20 MiB of 40 MiB (50%)",
        "put: 30 MiB of 40 MiB (75%)",
        "put: 40 MiB of 40 MiB (100%)",
    ]
    assert "\r" not in out.getvalue() and lines[-1].endswith("/s")


def test_progress_line_on_a_terminal_rewrites_one_line() -> None:
    from borgusb.storecli import ProgressLine

    out = io.StringIO()
    line = ProgressLine("get", out, tty=True)
    line.update(512, 2048)
    line.update(2048, 2048)
    line.close()
    text = out.getvalue()
    assert text.startswith("\rget: 512 B of 2 KiB (25%)") and text.count("\n") == 1 and text.endswith("\n")
    assert "get: 2 KiB of 2 KiB (100%)" in text.splitlines()[-1]
