"""The bridge reward on the bridge's side: the swap parties' vouchers kept, and claimed from the reserve
(docs/ledger.md, "The bridge reward"; docs/doge.md).

* **Intake** (``doge.voucher``): a party's settlement hands in its voucher (`ledger.bridgework`) with
  the HTLC's redeem script, once its funding, claim or refund went through this cell. Kept only if
  it checks, names this cell's node key as the bridge, was signed by the request's signer, is neither
  from the future nor too old to be paid, and the script is an HTLC's. That the signer is a party of
  the lock is left to the reserve's holders (``not_party``): this cell would have to ask the ledger
  for every voucher. Bounded: `PER_KEY_RATE` vouchers an hour per key (burst `PER_KEY_BURST`),
  `MAX_WAITING_PER_PARTY` unclaimed per key and `MAX_WAITING` in all; kept in the bridge's SQLite
  store, one per (transaction, party), so a restart keeps them. Refusals are counted as
  ``voucher_refused:<word>``.
* **Claiming** (the loop every `EARN_EVERY_S` when ``earn`` is on, and ``doge.earn`` now, refused
  ``busy`` while a round is under way): for each
  waiting voucher, oldest first, whose transaction has the cell's ``min_confirmations``, the record
  (`make_bridge`) is claimed with `claim_reward` through the peerPaysCell on this cell's address, one
  at a time. Paid, or ``already_paid``, marks every voucher of that transaction paid; a refusal that
  time can change (`WAIT_REASONS`, or tries that ran out) leaves it waiting; any other refusal is
  final. Vouchers older than `MAX_CLAIM_AGE_MS` are refused ``too_old`` here; settled ones are
  forgotten after `KEEP_MS`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from ... import canonical
from ...keys import SigningKey
from ...ledger.bridgework import MAX_CLAIM_AGE_MS, MAX_SKEW_MS, check_voucher, make_bridge, parse_script
from ...ledger.rules import HOUR_MS
from ...ledger.work import BadWork
from ...net.peer import PeerClient
from ...signed import SignedDocError
from ..kit import RequestError
from ..kit.guard import TokenBuckets
from ..peerpays.claim import RewardRefused, claim_reward
from ..peerpays.client import PayClient
from .store import BridgeStore, Voucher

log = logging.getLogger("borgusb.dogenode")

PER_KEY_RATE = 120  # vouchers an hour from one key
PER_KEY_BURST = 16
MAX_RATE_KEYS = 4096
MAX_WAITING_PER_PARTY = 64
MAX_WAITING = 4096
EARN_EVERY_S = 60.0
EARN_BATCH = 32  # vouchers claimed in one round
CLAIM_TRIES = 3
KEEP_MS = 7 * 24 * HOUR_MS
WAIT_REASONS = frozenset({"unconfirmed", "lock_open", "tx_unknown", "daily_cap", "bridge_unverifiable"})


class BridgeEarnings:
    """One bridge's vouchers and claims (the dogeNodeCell's, with a Dogecoin node)."""

    def __init__(
        self,
        db: BridgeStore,
        key: SigningKey,
        peers: PeerClient,
        ip: str,
        counters: Counter[str],
        now_ms: Callable[[], int],
        confirmations: Callable[[str], Awaitable[int]],
        min_confirmations: int,
    ) -> None:
        self.db, self.key, self.peers, self.ip, self.counters = db, key, peers, ip, counters
        self.now_ms, self.confirmations, self.min_confirmations = now_ms, confirmations, min_confirmations
        self.rate = TokenBuckets(PER_KEY_RATE / 3600, PER_KEY_BURST, MAX_RATE_KEYS)
        self._claiming = asyncio.Lock()

    def _refuse(self, reason: str, detail: str, status: int = 403) -> RequestError:
        self.counters[f"voucher_refused:{reason}"] += 1
        return RequestError(reason, detail, status)

    def take(self, signer: str, payload: Any) -> dict[str, Any]:
        """``doge.voucher``: keep a party's voucher, or refuse it."""
        if not self.rate.allow(signer, time.monotonic()):
            raise self._refuse("rate_limited", f"at most {PER_KEY_RATE} vouchers an hour from one key", 429)
        p = payload if isinstance(payload, dict) else {}
        try:
            v = check_voucher(p.get("voucher"))
            parse_script(p.get("script"))
        except SignedDocError as exc:
            raise self._refuse(exc.reason, str(exc)) from None
        except BadWork as exc:
            raise self._refuse("bad_script", exc.detail) from None
        if v["bridge"] != self.key.public_key_hex:
            raise self._refuse("not_mine", "the voucher names another bridge")
        if v["party"] != signer:
            raise self._refuse("not_party", "a voucher is handed in by the party that signed it")
        now = self.now_ms()
        if v["ts"] > now + MAX_SKEW_MS:
            raise self._refuse("future_voucher", "the voucher is dated ahead of network time", 409)
        if now - v["ts"] > MAX_CLAIM_AGE_MS:
            raise self._refuse("too_old", "the voucher is too old to be paid", 409)
        if self.db.count_waiting(signer) >= MAX_WAITING_PER_PARTY or self.db.count_waiting() >= MAX_WAITING:
            raise self._refuse("vouchers_full", "this bridge keeps as many unclaimed vouchers as it may", 429)
        doc = canonical.dumps(v).decode()
        new = self.db.add_voucher(Voucher(v["txid"], signer, v["op"], doc, p["script"], v["ts"]))
        self.counters["vouchers_kept" if new else "vouchers_again"] += 1
        return {"txid": v["txid"], "op": v["op"], "kept": True, "new": new}

    async def earn(self) -> dict[str, Any]:
        """``doge.earn``: a round now, unless one is under way (``busy``: requests cannot pile up)."""
        if self._claiming.locked():
            raise RequestError("busy", "a round of claims is under way", 429)
        return await self._round()

    async def _round(self) -> dict[str, Any]:
        """Claim every waiting voucher that can be (at most `EARN_BATCH`); what became of each."""
        async with self._claiming:
            now = self.now_ms()
            self.db.expire_vouchers(now - MAX_CLAIM_AGE_MS, now - KEEP_MS)
            results = []
            for v in self.db.waiting(EARN_BATCH):
                state, reason = await self._claim(v)
                if state != "waiting":
                    self.db.settle_voucher(v.txid, v.party, state, reason)
                self.counters[f"bridge_{state}"] += 1
                results.append({"txid": v.txid, "party": v.party, "op": v.op, "state": state, "reason": reason})
            return {"results": results, "paid": sum(r["state"] == "paid" for r in results)}

    async def _claim(self, v: Voucher) -> tuple[str, str]:
        """(``paid`` | ``refused`` | ``waiting``, the reward's id or the reason) of one voucher."""
        try:
            if await self.confirmations(v.txid) < self.min_confirmations:
                return "waiting", "unconfirmed"
        except RequestError as exc:
            return "waiting", exc.reason
        try:
            rec = make_bridge(self.key.public_key_hex, json.loads(v.doc), v.script)
        except BadWork as exc:  # kept before a change of the rules
            return "refused", exc.reason
        pay = PayClient(self.peers, self.ip)
        try:
            got = await claim_reward(pay, self.key, rec.to_dict(), rec.ref, rec.amount, self.now_ms, tries=CLAIM_TRIES)
        except RewardRefused as exc:
            if exc.reason == "already_paid":
                return "paid", "already_paid"
            if exc.final and exc.reason not in WAIT_REASONS:
                log.info("bridge claim of %s refused: %s", v.txid, exc)
                return "refused", exc.reason
            return "waiting", exc.reason
        log.info("bridge reward for %s %s paid: %s", v.op, v.txid, got.get("id"))
        return "paid", str(got.get("id", ""))

    async def loop(self) -> None:
        """Claim what can be claimed, every `EARN_EVERY_S`."""
        while True:
            await asyncio.sleep(EARN_EVERY_S)
            try:
                await self._round()
            except Exception:  # the loop must outlive one bad round; the reason is logged
                self.counters["bridge_earn_errors"] += 1
                log.exception("bridge claims")
