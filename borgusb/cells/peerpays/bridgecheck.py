"""peerPaysCell's check of a ``bridge`` reward claim (docs/ledger.md, "The bridge reward").

The record's own rules are `ledger.bridgework.check_bridge` (the HTLC script, the voucher signed by
a party and naming the claimant, the lock and the transaction, the rule's amount) and
`check_bridge_claim` (the reward pays exactly that record; the voucher is neither from the future nor
older than 6 h). What needs the network or this holder's memory is here:

* **The ledger lock**: read through this node's own peerPaysCell (``pay.lock_status``, a quorum of
  the lock's holders agreeing): a hash-time lock of that account and id (``lock_unknown``), claimed
  or refunded (``lock_open``), whose payer or payee signed the voucher (``not_party``) and whose
  hash is the script's secret hash (``hash_mismatch``).
* **The Dogecoin transaction**, asked of this node's own dogeNodeCell (``doge.tx``, the bytes hashed
  to their txid there): known (``tx_unknown``), with at least that cell's ``min_confirmations``
  (``unconfirmed``), and the record's operation (`check_bridge_tx`: ``not_htlc_tx``). A node whose
  dogeNodeCell has no Dogecoin node, or whose node or ledger does not answer, refuses nothing: 503
  ``bridge_unverifiable`` (the claimant tries again later; not counted as a refusal).
* **One approved record per transaction** (``already_claimed``: another bridge's claim of it) and
  at most `MAX_OPS_PER_DAY` operations a UTC day per bridge (``daily_cap``), in memory: the days
  still claimable, at most `MAX_BRIDGES_PER_DAY` bridges a day (``claims_full``, 503).

Refusals are counted as ``pay_work_refused:<reason>``; `approves` is the core's question.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from ...ledger.bridgework import MAX_CLAIM_AGE_MS, check_bridge, check_bridge_claim, check_bridge_tx
from ...ledger.errors import LedgerError
from ...ledger.rules import HOUR_MS
from ...ledger.tx import Tx, check_tx
from ...ledger.work import BadWork
from ...net.peer import PeerClient, PeerError, PeerRejected
from ..dogenode.client import DogeNodeClient
from ..kit import RequestError
from .client import PayClient
from .workchecks import WorkChecks

MAX_OPS_PER_DAY = 24  # operations of one bridge this holder approves in a UTC day
MAX_BRIDGES_PER_DAY = 16_384
DAY_MS = 24 * HOUR_MS
ASK_TIMEOUT_S = 20.0


class BridgeChecks(WorkChecks):
    """What one reserve holder has verified of bridge claims; its `check` does the verifying."""

    max_verified = 16_384  # transactions approved, remembered (one approved bridge per transaction)

    def __init__(self, peers: PeerClient, ip: str, counters: Counter[str]) -> None:
        super().__init__(peers, ip, counters)
        self.per_day: dict[int, Counter[str]] = {}  # UTC day -> bridge -> operations approved

    def _unverifiable(self, detail: str) -> RequestError:
        self.counters["pay_work_bridge_unverifiable"] += 1
        return RequestError("bridge_unverifiable", detail[:300], 503)

    async def check(self, tx: Tx, work: Any, now_ms: int) -> None:
        """Verify the bridge record `work` that the reward `tx` claims, or raise the refusal."""
        known = self.verified.get(tx.ref)
        if known is not None:
            if known != (tx.to, tx.amount):
                raise self._refuse("already_claimed", "this holder approved that transaction for another bridge")
            return  # verified already (a resend, or the sequencer offered it to itself first)
        try:
            rec = check_bridge(work)
            check_bridge_claim(rec, tx, now_ms)
        except BadWork as exc:
            raise self._refuse(exc.reason, exc.detail) from None
        day = self._day(now_ms)
        if day[rec.claimant] >= MAX_OPS_PER_DAY:
            raise self._refuse("daily_cap", f"this holder paid this bridge {MAX_OPS_PER_DAY} operations today", 429)
        if rec.claimant not in day and len(day) >= MAX_BRIDGES_PER_DAY:
            raise self._refuse("claims_full", f"this holder paid {MAX_BRIDGES_PER_DAY} bridges today", 503)
        lock = await self._lock(rec.account, rec.lock)
        if lock is None:
            raise self._refuse("lock_unknown", f"no hash-time lock {rec.lock[:16]} of that account")
        if lock[1] not in ("claimed", "refunded"):
            raise self._refuse("lock_open", f"the lock is {lock[1]}: paid once the swap is over")
        if rec.party not in (lock[0].account, lock[0].to):
            raise self._refuse("not_party", "the voucher's signer is neither the lock's payer nor its payee")
        if lock[0].ref != rec.secret_hash:
            raise self._refuse("hash_mismatch", "the script's secret hash is not the lock's")
        raw, confirmations, wanted = await self._doge_tx(rec.txid)
        if confirmations < wanted:
            raise self._refuse("unconfirmed", f"{confirmations} of {wanted} confirmations", 409)
        try:
            check_bridge_tx(rec, raw)
        except BadWork as exc:
            raise self._refuse(exc.reason, exc.detail) from None
        if self.verified.get(tx.ref, (tx.to, tx.amount)) != (tx.to, tx.amount):  # approved meanwhile
            raise self._refuse("already_claimed", "this holder approved that transaction for another bridge")
        day[rec.claimant] += 1
        self._approve(tx)

    def _day(self, now_ms: int) -> Counter[str]:
        today = now_ms // DAY_MS
        oldest = (now_ms - MAX_CLAIM_AGE_MS) // DAY_MS - 1
        for gone in [d for d in self.per_day if d < oldest]:
            del self.per_day[gone]
        return self.per_day.setdefault(today, Counter())

    async def _lock(self, account: str, lock_id: str) -> tuple[Tx, str] | None:
        """The lock and its state as a quorum of its holders says (through this node's own cell)."""
        try:
            st = await asyncio.wait_for(PayClient(self.peers, self.ip).lock_status(account, lock_id), ASK_TIMEOUT_S)
        except PeerRejected as exc:
            if exc.status >= 500:
                raise self._unverifiable(f"the ledger did not say what lock {lock_id[:16]} is: {exc}") from None
            return None
        except (PeerError, TimeoutError) as exc:
            raise self._unverifiable(f"the ledger did not answer: {exc}") from None
        try:
            lock = check_tx(st.get("tx"))
        except LedgerError:
            return None
        if lock.kind != "htlc-lock" or lock.id != lock_id or lock.account != account:
            return None
        return lock, str(st.get("state", ""))

    async def _doge_tx(self, txid: str) -> tuple[str, int, int]:
        """(raw hex, confirmations, the confirmations this node's dogeNodeCell requires)."""
        doge = DogeNodeClient(self.peers, self.ip)
        try:
            async with asyncio.timeout(ASK_TIMEOUT_S):  # not wait_for: cancelled, it leaves the gather unretrieved
                info, status = await asyncio.gather(doge.tx(txid), doge.status())
        except PeerRejected as exc:
            if exc.reason == "not_found":
                raise self._refuse("tx_unknown", f"this node's Dogecoin node has no transaction {txid[:16]}") from None
            raise self._unverifiable(f"this node's dogeNodeCell cannot say: {exc.reason}: {exc.detail}") from None
        except (PeerError, TimeoutError) as exc:
            raise self._unverifiable(f"this node's dogeNodeCell did not answer: {exc}") from None
        confirmations, wanted = info.get("confirmations"), status.get("min_confirmations")
        if not isinstance(confirmations, int) or not isinstance(wanted, int) or not isinstance(info.get("hex"), str):
            raise self._unverifiable("this node's dogeNodeCell gave no transaction and confirmations")
        return str(info["hex"]), confirmations, max(1, wanted)
