"""`borgusb pay` refuses bad input before it talks to any node (exit 2), with a clear message."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from borgusb import paycli
from borgusb.ledger.sim import fixed_key
from borgusb.net.peer import PeerRejected

PAYEE = fixed_key("payee").public_key_hex


def pay(cmd: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    key = tmp_path / "key"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "borgusb.cli",
            "pay",
            cmd,
            "--node",
            "127.0.0.1",
            "--port",
            "9",
            "--key-file",
            str(key),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"BORGUSB_PAY_DIR": str(tmp_path / "pending"), "PATH": "/usr/bin:/bin"},
    )


def test_bad_amounts_are_refused_with_their_problem(tmp_path: Path) -> None:
    for amount, problem in (
        ("0", "zero"),
        ("-1", "negative"),
        ("0.000000001", "fractional"),
        ("30000000", "above_supply"),
        ("lots", "not_integer"),
    ):
        proc = pay("send", "--to", PAYEE, "--", amount, tmp_path=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert f"bad amount ({problem})" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_accounts_are_refused(tmp_path: Path) -> None:
    proc = pay("send", "--to", "DHETwgcC7EbQaVsvZy5rhSwbqRNVkWE86Q", "1.5", tmp_path=tmp_path)  # checksum broken
    assert proc.returncode == 2 and "unknown account" in proc.stderr and "checksum" in proc.stderr, proc.stderr
    proc = pay("balance", "02" + "zz" * 32, tmp_path=tmp_path)
    assert proc.returncode == 2 and "unknown account" in proc.stderr and "Doge address" in proc.stderr
    # a well-formed address needs a node to find its key: none here is said as such (the cluster test
    # finds one, and refuses an address no node has seen)
    proc = pay("send", "--to", "DHETwgcC7EbQaVsvZy5rhSwbqRNVkWE86P", "1.5", tmp_path=tmp_path)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr


def test_no_node_is_a_clear_failure(tmp_path: Path) -> None:
    proc = pay("balance", PAYEE, tmp_path=tmp_path)
    assert proc.returncode == 3 and "peerPaysCell" in proc.stderr and "Traceback" not in proc.stderr


def test_pay_is_a_listed_command() -> None:
    out = subprocess.run([sys.executable, "-m", "borgusb.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert "pay" in out.stdout


class FakePay:
    def __init__(self, outcome: object) -> None:
        self.outcome = outcome
        self.sent: list[dict] = []

    async def submit(self, tx: dict) -> dict:
        self.sent.append(tx)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return {"id": "ab" * 32}


def test_a_transaction_without_quorum_is_sent_again_before_anything_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paycli, "PENDING_DIR", tmp_path)
    account = fixed_key("payer").public_key_hex
    pending = tmp_path / f"{account}.json"
    tx = {"seq": 3, "the": "same bytes"}
    pending.write_text(json.dumps(tx))

    waiting = FakePay(PeerRejected(503, "no_quorum", "2 of 5"))
    with pytest.raises(paycli.CLIError) as err:  # still short of a quorum: nothing new is signed
        asyncio.run(paycli._resend_pending(waiting, account))
    assert waiting.sent == [tx] and pending.exists() and "still waiting" in str(err.value)

    done = FakePay(None)
    asyncio.run(paycli._resend_pending(done, account))
    assert done.sent == [tx] and not pending.exists()

    pending.write_text(json.dumps(tx))
    lost = FakePay(PeerRejected(409, "conflicting_spend"))
    asyncio.run(paycli._resend_pending(lost, account))  # refused for good: dropped
    assert not pending.exists()
    asyncio.run(paycli._resend_pending(lost, account))  # nothing pending: nothing sent
    assert len(lost.sent) == 1
