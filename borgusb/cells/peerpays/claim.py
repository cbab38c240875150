"""A worker's claim of a reward from the reserve: what the agent cell (``agent`` rewards) and
``borgusb pay earn content`` (``content`` rewards) both do with a checked work record.

The worker reads the reserve's head, signs a ``reward`` transaction at the next seq (ref: the
record's, paying itself its amount) and sends it with the record (``pay.send`` with ``"work"``),
which the node's peerPaysCell hands to the reserve's sequencer (docs/ledger.md, "The reserve pays
only with a certificate..."). A refusal that another claim or a busy ledger explains
(`RETRY_REASONS`) is tried again after a pause. A claim is signed anew only once the reserve's head
has passed its seq: sent again, the same bytes keep the votes a first try got (a new claim at that
seq could split them).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from ...keys import SigningKey
from ...ledger import RESERVE, Tx, sign_reward
from ...net.peer import PeerError, PeerRejected
from .client import PayClient

PAY_TRIES = 8
PAUSE_S = (1.0, 6.0)  # a random pause between tries, so two claimants do not collide again
RETRY_REASONS = frozenset(
    {
        "conflicting_spend",
        "bad_prev",
        "gap",
        "no_quorum",
        "view_mismatch",
        "stale",
        "sequencer_unreachable",
        "skipped",
        "members_unavailable",
        "audit_unavailable",
        "claims_full",
        "bridge_unverifiable",  # a reserve holder's Dogecoin node did not answer
        "no_reserve_head",
        "disagreement",  # the holders' reads differ while another payment is in flight: read again
    }
)


class RewardRefused(Exception):
    """The reward was not paid: `reason` is the ledger's word; `final` when trying again cannot help
    (``already_paid``, a refused record), else the tries ran out on `reason`."""

    def __init__(self, reason: str, detail: str, final: bool) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail, self.final = reason, detail, final


async def claim_reward(
    pay: PayClient,
    worker: SigningKey,
    work: dict[str, Any],
    ref: str,
    owed: int,
    now_ms: Callable[[], int],
    *,
    tries: int = PAY_TRIES,
    on_retry: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Have the reserve pay `worker` `owed` units for the record `work` (whose ref is `ref`): the
    ledger's answer (``id``, ``certificate`` ...), else `RewardRefused`."""
    tx: Tx | None = None
    reason, detail = "", ""
    for attempt in range(tries):
        try:
            head = await pay.balance(RESERVE)
            seq, prev = head.get("seq"), head.get("head")
            if not isinstance(seq, int) or not isinstance(prev, str):
                raise PeerRejected(503, "no_reserve_head", "the reserve's head was not read")
            if tx is None or seq >= tx.seq:
                tx = sign_reward(worker, seq=seq + 1, prev=prev, amount=owed, ref=ref, ts=now_ms())
            return await pay.submit(tx, work=work)
        except PeerRejected as exc:
            if exc.reason not in RETRY_REASONS:
                raise RewardRefused(exc.reason, exc.detail, True) from None
            reason, detail = exc.reason, exc.detail
        except PeerError as exc:
            reason, detail = "ledger_unreachable", f"ledger unreachable: {exc}"[:200]
        if on_retry is not None:
            on_retry(detail if reason == "ledger_unreachable" else reason)
        if attempt + 1 < tries:
            await asyncio.sleep(random.uniform(*PAUSE_S))
    raise RewardRefused(reason, detail, False)
