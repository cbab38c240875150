"""What the paid-ahead cluster tests share (test_compute_, test_stream_ and test_storage_credit_cluster):
a person's wallet as a key file for the CLI, three ledger cells whose member views have settled, and
a person funded by the reserve through the TEST-ONLY work setting (`WORK`, set by `ledger_env`)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from borgusb.cells.peerpays.client import PayClient
from borgusb.clock import SystemClock
from borgusb.keys import SigningKey
from borgusb.ledger import UNITS_PER_SHELL, ZERO_HASH, sign_reward
from tests.integration.test_agents_cluster import poll

CLOCK = SystemClock()
WORK = hashlib.sha256(b"paid-ahead cluster tests work record").hexdigest()
SHELL = UNITS_PER_SHELL


def ledger_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three holders per account, and the reserve paying `WORK` claims (test only)."""
    monkeypatch.setenv("BORGUSB_PAY_R", "3")
    monkeypatch.setenv("BORGUSB_PAY_TEST_ONLY_WORK_REF", WORK)


def wallet(tmp_path: Path) -> tuple[SigningKey, Path, dict[str, str]]:
    """A person's key, its key file for ``borgusb pay --key-file``, and the CLI's environment."""
    key = SigningKey.generate()
    keyfile = tmp_path / "wallet.key"
    keyfile.write_text(bytes(key.secret_bytes()).hex() + "\n")
    return key, keyfile, {"BORGUSB_PAY_DIR": str(tmp_path / "pending")}


async def settled_ledger(ledger: Any) -> None:
    """Wait until the three ledger cells formed one tree and each sees the three members."""
    await ledger.wait_one_tree(timeout_s=90, expect=3)

    async def settled() -> bool:
        docs = await ledger.status()
        return len(docs) == 3 and all(d.get("pay", {}).get("members") == 3 for d in docs)

    await poll("the ledger's member views settle", settled, 60)


async def fund(pay: PayClient, key: SigningKey, shells: int) -> None:
    """`shells` from the reserve to `key` (its first transaction)."""
    claim = sign_reward(key, seq=1, prev=ZERO_HASH, amount=shells * SHELL, ref=WORK, ts=CLOCK.now_ms())
    await pay.submit(claim)
