"""The ledger cell's settings (``borgusb cell run peerPaysCell --help``).

**R = 5 holders, faulty = 1, so a quorum is 4 of 5.** With a strict majority
(3 of 5) two quorums of one holder set may share a single holder, and a payer
who colludes with that one lying holder could have two conflicting spends
certified (docs/ledger.md, "The assumption, stated plainly"). With faulty = 1
any two quorums share at least two holders, so one lying holder cannot enable
a double spend. The price is liveness: a transfer is confirmed while 4 of an
account's 5 holders answer (one may be down, not two). ``faulty=0`` gives back
3 of 5 for a network that trusts every holder to keep its votes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...ledger.certificate import DEFAULT_R
from ...ledger.htlc import HTLC_GRACE_MS
from ..kit import Settings, setting

TEST_ONLY_WORK_MAX_SHELLS = 1000  # what the test-only work check approves at most, per claim


@dataclass(frozen=True)
class PeerPaysSettings(Settings):
    cell: ClassVar[str] = "peerPaysCell"

    r: int = setting(DEFAULT_R, "holders of each account's chain", low=1, high=16, env="BORGUSB_PAY_R")
    faulty: int = setting(
        1,
        "lying holders a quorum tolerates (quorum = (r + faulty) // 2 + 1: 4 of 5 for 1)",
        low=0,
        high=7,
        env="BORGUSB_PAY_FAULTY",
    )
    offer_timeout_ms: int = setting(
        3000, "how long a send waits for each holder's answer", low=100, high=60_000, env="BORGUSB_PAY_TIMEOUT_MS"
    )
    htlc_grace_ms: int = setting(
        HTLC_GRACE_MS,
        "how long after a lock's expiry this holder waits before it votes for a refund (clock skew margin)",
        low=0,
        high=600_000,
        env="BORGUSB_PAY_HTLC_GRACE_MS",
    )
    data_root: str = setting(
        "",
        "where a cell without --data keeps its holder database (default /dev/shm)",
        env="BORGUSB_DATA_ROOT",
    )
    test_only_work_ref: str = setting(
        "",
        "TEST ONLY, never on a real network: a work-record SHA-256 whose reward claims "
        f"(up to {TEST_ONLY_WORK_MAX_SHELLS} Shells, paid once) this holder approves",
        env="BORGUSB_PAY_TEST_ONLY_WORK_REF",
    )
