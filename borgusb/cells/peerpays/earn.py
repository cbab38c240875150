"""peerPaysCell's check of a ``hold`` or ``serve`` reward claim, before the core's `verify_work` is asked.

The core's ``verify_work(tx)`` is synchronous; checking a hold claim takes the network (fetch
sampled shards from the claimant). So a reserve holder checks the claim's work record first, here,
and the core then only looks the claim up in `HoldChecks.approves` (a bounded table of refs this
holder verified, with the claimant and amount they were verified for).

The check (docs/ledger.md, "The hold reward"): the record's own rules (`ledger.work.check_work`:
fields, grid, bounds, the hold rule's amount), that the claim pays exactly that record
(`check_claim`: ref, claimant, amount, period ended and not too old), one approved record per
(claimant, period) on this holder, then possession: this node's own shard cell is asked
(``shard.audit``) to confirm the claimant is a shard node of its view, among each sampled shard's
placement winners, and serves the sampled shards' bytes (SHA-256 and size checked). Any failure
refuses the claim with its reason word, counted as ``pay_work_refused:<reason>``.

A ``serve`` claim (`ledger.servework`: receipts its readers signed) is checked the same way: its
own rules (every receipt's signature, holder, period; the serve rule's amount), one approved record
per (claimant, period), and possession of a sample of the shards the receipts name: a holder can
only be paid for serving shards it holds and is placed to hold.

**One reward offer at a time.** Every reward takes the reserve's next seq, and two claims offered
at once could split the reserve holders' votes so that neither reaches a quorum, which would leave
that seq of the reserve unconfirmable for good. So a cell forwards each reward claim to the
reserve's first holder in key order (the sequencer), which offers them one at a time
(`one_reward`): a second claim at a seq already taken is refused by every holder
(``conflicting_spend``) instead of splitting them. The claimant reads the head again and retries.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import Awaitable
from typing import Any

from ...ledger.servework import ServeRecord, check_serve, check_serve_claim
from ...ledger.tx import Tx
from ...ledger.work import BadWork, HoldRecord, check_claim, check_work, sample
from ...net.peer import PeerClient, PeerError, PeerRejected
from ..kit import RequestError
from ..shard.client import ShardClient
from .workchecks import WorkChecks

MAX_CLAIMED = 8192  # (claimant, period) pairs remembered: at most one approved record each
MAX_REFUSED = 1024  # records whose audit failed, refused again without a new audit for a while
REFUSED_FOR_MS = 10 * 60_000
AUDIT_TIMEOUT_S = 30.0  # the local shard cell fetches up to SAMPLE shards of up to 4 MiB from the claimant


class HoldChecks(WorkChecks):
    """What one reserve holder has verified of hold and serve claims; its `check` does the verifying."""

    def __init__(self, peers: PeerClient, ip: str, verifier: str, counters: Counter[str]) -> None:
        super().__init__(peers, ip, counters)
        self.verifier = verifier
        self.claimed: OrderedDict[tuple[str, str, int], str] = OrderedDict()  # (rule, claimant, start) -> ref
        self.refused: OrderedDict[str, tuple[str, str, int]] = OrderedDict()  # ref -> (reason, detail, until)
        self._busy = asyncio.Semaphore(2)  # audits at once: each may pull 12 MiB
        self.one_reward = asyncio.Lock()  # the sequencer offers one reward at a time

    async def forward(self, call: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        """The sequencer's answer to a forwarded reward claim, its refusal passed on as the same word."""
        self.counters["pay_reward_forwarded"] += 1
        try:
            return await asyncio.wait_for(call, 4 * AUDIT_TIMEOUT_S)
        except PeerRejected as exc:
            raise RequestError(exc.reason, exc.detail, exc.status) from None
        except (TimeoutError, PeerError) as exc:
            self.counters["pay_reward_sequencer_unreachable"] += 1
            raise RequestError(
                "sequencer_unreachable", f"the reserve's first holder: {exc or 'timeout'}", 503
            ) from None

    async def check(self, tx: Tx, work: Any, now_ms: int) -> None:
        """Verify the hold or serve record `work` that the reward `tx` claims, or raise the refusal."""
        if tx.ref in self.verified:
            return  # verified already (a resend, or this holder offered it to itself first)
        rec: HoldRecord | ServeRecord
        try:
            if isinstance(work, dict) and work.get("rule") == "serve":
                rec = check_serve(work)
                check_serve_claim(rec, tx, now_ms)
            else:
                rec = check_work(work)
                check_claim(rec, tx, now_ms)
        except BadWork as exc:
            raise self._refuse(exc.reason, exc.detail) from None
        key = ("serve" if isinstance(rec, ServeRecord) else "hold", rec.claimant, rec.start)
        failed = self.refused.get(rec.ref)
        if failed is not None and now_ms < failed[2]:  # the same record again: no second audit for a while
            raise self._refuse(failed[0], failed[1])
        earlier = self.claimed.get(key)
        if earlier is not None and earlier != rec.ref:
            raise self._refuse("already_claimed", f"this holder approved {earlier[:16]} for that period already")
        picked = sample(rec.shards, tx.id, self.verifier)
        async with self._busy:
            try:
                await asyncio.wait_for(ShardClient(self.peers, self.ip).audit(rec.claimant, picked), AUDIT_TIMEOUT_S)
            except PeerRejected as exc:
                detail = f"the audit of the claimant's shards: {exc.detail or exc.reason}"
                self.refused[rec.ref] = (exc.reason, detail, now_ms + REFUSED_FOR_MS)
                while len(self.refused) > MAX_REFUSED:
                    self.refused.popitem(last=False)
                raise self._refuse(exc.reason, detail) from None
            except (TimeoutError, PeerError) as exc:
                self.counters["pay_work_audit_unavailable"] += 1
                raise RequestError(
                    "audit_unavailable", f"this node's shard cell could not audit: {exc or 'timeout'}", 503
                ) from None
        self._approve(tx)
        self.claimed[key] = rec.ref
        while len(self.claimed) > MAX_CLAIMED:
            self.claimed.popitem(last=False)
