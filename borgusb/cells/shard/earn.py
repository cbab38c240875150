"""The shard cell's side of the ``hold`` and ``serve`` rewards (docs/ledger.md, "The hold reward",
"The serve reward").

* **Claimant.** After each period of the grid (`ledger.work.HOLD_PERIOD_MS`, whole hours of
  network time) ends, the cell claims the reward for the shards it held throughout that period
  (each shard's file is older than the period's start), at most `work.MAX_SHARDS` of them: it
  signs a ``reward`` with its node key on the reserve's chain and hands it, with its work record,
  to the peerPaysCell on its own address (``pay.send``). The claim waits a random part of
  `CLAIM_SPREAD_MS` after the period ends, so the network's claims do not all race for the same
  seq of the reserve's chain; one that lost its seq (``conflicting_spend``, ``bad_prev``) or found
  no quorum is tried again later: a claim that no quorum answered, as the very same bytes while it is
  fresh (a new claim at that seq could split the votes the first one got). A period is claimed
  once: the last period claimed is kept in ``earned.json`` in the cell's directory, and
  ``already_paid`` counts as claimed.
  ``shard.earn`` claims one period on request (what the background loop does; a test or an
  operator may ask it sooner). The serve reward is claimed the same way, right after the hold
  reward of the same period, from the readers' receipts the cell kept (`serving.ServeReceipts`).
* **Auditor.** ``shard.audit``, asked by the peerPaysCell on the same address while it checks a
  claim: the claimant must be a shard node of this node's view, among each sampled shard's
  placement winners (`PLACEMENT_SLACK` ranks beyond R, for repairs), and must serve each sampled
  shard's bytes (SHA-256 and size checked). Refusals: ``not_member``, ``not_placed``, ``not_held``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from pathlib import Path
from typing import Any

from ... import envelope
from ...keystore import atomic_write
from ...ledger import RESERVE, Tx, sign_reward
from ...ledger.servework import ServeRecord
from ...ledger.work import (
    HOLD_PERIOD_MS,
    MAX_CLAIM_AGE_MS,
    MAX_SHARDS,
    SAMPLE,
    BadWork,
    HoldRecord,
    make_hold,
    period_start,
)
from ...net.peer import PeerError, PeerRejected
from ...shard import model, placement
from ..kit import RequestError, receptor
from ..peerpays.client import PayClient
from .base import ShardBase

log = logging.getLogger("borgusb.shard.earn")

PLACEMENT_SLACK = 2  # a holder may rank this far beyond R: repair moved the shard to the next ticket
CLAIM_SPREAD_MS = 30 * 60_000  # claims spread over the first half hour after a period ends
RETRY_MS = (20_000, 120_000)  # a claim that lost its seq or found no quorum waits this long (random)
RETRY_REASONS = frozenset(
    {"conflicting_spend", "bad_prev", "gap", "no_quorum", "view_mismatch", "stale", "sequencer_unreachable", "skipped"}
)
RESEND_MS = 8 * 60_000  # a claim no quorum answered is sent again as the same bytes while this young
EARNED_FILE = "earned.json"


class HoldEarner(ShardBase):
    """The hold and serve rewards: the claim loop and the audit a reserve holder asks of its shard cell."""

    earn: bool
    _audits: asyncio.Semaphore
    _claiming: asyncio.Lock
    _unanswered: dict[tuple[str, int], Tx]  # (rule, period start) -> the claim no quorum answered (resent)

    # ------------------------------------------------------------ auditor

    @receptor("shard.audit")
    async def _r_audit(self, env: envelope.Envelope) -> Any:
        # a reserve holder asks the shard cell of its own machine; the address is the sender's own
        # (signed) word, so this keeps out other nodes' cells, and `_audits` bounds what gets through
        if env.sender.ip != self.ip:
            raise self._reject("not_local", "only a cell on this node's address may ask for an audit", 403)
        p = env.payload if isinstance(env.payload, dict) else {}
        claimant, shards = p.get("claimant"), p.get("shards")
        if not isinstance(claimant, str) or not isinstance(shards, list) or not 1 <= len(shards) <= SAMPLE:
            raise RequestError("malformed", f'{{"claimant": key, "shards": [[sha256, size], ...]}} (1..{SAMPLE})')
        pairs: list[tuple[str, int]] = []
        for s in shards:
            if not (isinstance(s, list) and len(s) == 2 and model.is_hash(s[0]) and isinstance(s[1], int)):
                raise RequestError("malformed", "a shard is [sha256, size]")
            pairs.append((s[0], s[1]))
        live = self.live()
        holder = live.get(claimant)
        if holder is None:
            raise self._reject("not_member", "the claimant is not a shard node of this node's view", 403)
        for h, _ in pairs:
            if claimant not in placement.choose(h, live, self.default_r + PLACEMENT_SLACK):
                raise self._reject("not_placed", f"the claimant is not among the winners of {h[:16]}", 403)
        async with self._audits:
            for h, n in pairs:
                why = await self._fetch_check(holder.ip, holder.port, claimant, h, n)
                if why:
                    raise self._reject("not_held", f"shard {h[:16]}: {why}", 403)
        self.counters["shard_audits_passed"] += 1
        return {"ok": True, "checked": len(pairs)}

    # ------------------------------------------------------------ claimant

    @property
    def _earned_path(self) -> Path:
        assert self.data_dir is not None
        return Path(self.data_dir) / EARNED_FILE

    def _earned(self) -> dict[str, Any]:
        try:
            doc = json.loads(self._earned_path.read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def _last_claimed(self, rule: str = "hold") -> int:
        """The last period whose `rule` reward was claimed (-1: none); earned.json keeps the hold's
        as ``last`` (as it always did) and the serve's as ``serve``."""
        last = self._earned().get("last" if rule == "hold" else rule)
        return last if isinstance(last, int) and not isinstance(last, bool) else -1

    def _mark_claimed(self, rule: str, start: int) -> None:
        doc = self._earned()
        doc["last" if rule == "hold" else rule] = max(start, self._last_claimed(rule))
        atomic_write(self._earned_path, json.dumps(doc, sort_keys=True).encode())

    def held_through(self, start: int) -> dict[str, int]:
        """The shards (sha256 -> size) whose copy here is older than `start` (network ms), at most
        `MAX_SHARDS` of them (the largest first)."""
        found: list[tuple[int, str]] = []
        for h, entry in list(self.store.records.items()):
            try:
                since_ms = os.stat(self.store.root / "shards" / h[:2] / h).st_mtime_ns // 1_000_000
            except OSError:
                continue
            if since_ms <= start:
                found.append((entry["rec"]["n"], h))
        found.sort(reverse=True)
        return {h: n for n, h in found[:MAX_SHARDS]}

    async def claim(self, start: int, rule: str = "hold") -> dict[str, Any]:
        """Claim the `rule` reward (``hold`` or ``serve``) of the period starting at `start`:
        ``{"claimed": bool, "why", ...}`` (one claim at a time: the loop and ``shard.earn`` never
        race each other)."""
        async with self._claiming:
            if start <= self._last_claimed(rule):
                return {"claimed": False, "why": "claimed_before", "start": start, "rule": rule}
            me = self.key.public_key_hex
            try:
                rec = make_hold(me, start, self.held_through(start)) if rule == "hold" else self.serve_record(start)
            except BadWork as exc:
                return {"claimed": False, "why": "nothing_owed", "detail": exc.detail, "start": start, "rule": rule}
            return {**await self._claim(rule, start, rec), "rule": rule}

    async def _claim(self, rule: str, start: int, rec: HoldRecord | ServeRecord) -> dict[str, Any]:
        pay = PayClient(self.peers, self.ip)
        tx = self._unanswered.pop((rule, start), None)
        try:
            if tx is None or tx.ref != rec.ref or self.clock.now_ms() - tx.ts > RESEND_MS:
                head = await pay.balance(RESERVE)
                seq, prev = head.get("seq"), head.get("head")
                if not isinstance(seq, int) or not isinstance(prev, str):
                    return {"claimed": False, "why": "no_reserve_head", "start": start}
                now = self.clock.now_ms()
                tx = sign_reward(self.key, seq=seq + 1, prev=prev, amount=rec.amount, ref=rec.ref, ts=now)
            reply = await pay.submit(tx, work=rec.to_dict())
        except PeerRejected as exc:
            self.counters[f"shard_earn_refused:{exc.reason}"] += 1
            if exc.reason == "already_paid":
                self._mark_claimed(rule, start)
            elif exc.reason in ("no_quorum", "sequencer_unreachable") and tx is not None:
                self._unanswered = {(rule, start): tx}
            return {"claimed": False, "why": exc.reason, "detail": exc.detail, "start": start, "ref": rec.ref}
        except PeerError as exc:
            self.counters["shard_earn_unreachable"] += 1
            return {"claimed": False, "why": "unreachable", "detail": str(exc), "start": start}
        self._mark_claimed(rule, start)
        self.counters[f"shard_earned:{rule}"] += 1
        self.counters[f"shard_earned_units:{rule}"] += rec.amount
        return {"claimed": True, "start": start, "ref": rec.ref, "amount": rec.amount, "id": reply.get("id")}

    @receptor("shard.earn")
    async def _r_earn(self, env: envelope.Envelope) -> Any:
        """Claim one finished period now (``{"start": ms, "rule": "hold" | "serve"}``, default the
        last period's hold): the loop's step."""
        now = self.clock.now_ms()
        p = env.payload if isinstance(env.payload, dict) else {}
        start, rule = p.get("start", period_start(now) - HOLD_PERIOD_MS), p.get("rule", "hold")
        if not isinstance(start, int) or isinstance(start, bool) or start % HOLD_PERIOD_MS:
            raise RequestError("malformed", f"start is a multiple of {HOLD_PERIOD_MS} ms")
        if rule not in ("hold", "serve"):
            raise RequestError("malformed", 'rule is "hold" or "serve"')
        if not now - MAX_CLAIM_AGE_MS <= start + HOLD_PERIOD_MS <= now:
            raise RequestError("not_claimable", "the period has not ended, or ended too long ago to be paid")
        return await self.claim(start, rule)

    async def _earn_loop(self) -> None:
        """Claim each finished period's hold, then its serve reward, once each, at a random moment
        of the spread after it ends."""
        rng = random.SystemRandom()
        wait_ms = rng.randrange(CLAIM_SPREAD_MS)
        while True:
            await asyncio.sleep(wait_ms / 1000)
            start = period_start(self.clock.now_ms()) - HOLD_PERIOD_MS
            got: dict[str, Any] = {}
            for rule in ("hold", "serve"):
                try:
                    got = await self.claim(start, rule)
                except Exception:  # the loop must outlive one bad claim; the reason is logged
                    log.exception("%s claim of %d", rule, start)
                    got = {"why": "no_quorum"}
                if got.get("why") in RETRY_REASONS:
                    break  # the serve claim waits for the hold's retry (one reward offer at a time)
            wait_ms = next_wait_ms(self.clock.now_ms(), got.get("why"), rng)


def next_wait_ms(now_ms: int, why: Any, rng: random.Random) -> int:
    """How long the claim loop sleeps after a claim that ended with `why` (None: paid): a lost seq
    or no quorum is tried again soon; otherwise the next claim is at a random moment of the
    spread after the current period ends."""
    if why in RETRY_REASONS:
        return rng.randrange(*RETRY_MS)
    return period_start(now_ms) + HOLD_PERIOD_MS + rng.randrange(CLAIM_SPREAD_MS) - now_ms
