"""The agent cell's side of the ``agent`` reward (docs/ledger.md, "The agent reward").

* **Witness.** Every System Monitor remembers the subjects it observed (``cell_gone|cell|node``,
  bounded, for `WITNESS_WINDOW_MS`). Another agent cell asks ``agent.confirm`` with a signed claim;
  this cell signs a confirmation with its node key only if its own monitor observed that subject
  near the claim's time, and never for a claim of its own agents. Rate-limited per asking key.
* **Claimant.** A claim of this cell's monitor is settled in the background: confirmations are
  asked of the other members of the agents' tree (each monitor reads on its own schedule, so this
  is tried for `CONFIRM_ROUNDS` rounds), the host's voucher is signed with the node key, and the
  agent signs a ``reward`` on the reserve's chain, handed with the record to the peerPaysCell on
  this address. A lost seq is tried again; ``already_paid`` means another monitor's claim of the
  same subject and hour was paid first. Each claim's state is kept for the Agents page.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from ...keys import SigningKey
from ...ledger.taskwork import MIN_CONFIRMATIONS, check_claim, claim_id, make_task, sign_confirm, sign_host
from ...ledger.work import BadWork
from ...net.peer import PeerClient, PeerError
from ...signed import SignedDocError
from ..kit import RequestError
from ..kit.guard import TokenBuckets
from ..peerpays.claim import RewardRefused, claim_reward
from ..peerpays.client import PayClient
from .client import AgentClient

log = logging.getLogger("borgusb.agents.earnings")

WITNESS_WINDOW_MS = 10 * 60_000  # a subject observed this close to a claim's time may be confirmed
MAX_OBSERVED = 1024
MAX_ENTRIES = 200
MAX_SETTLING = 16  # claims being confirmed or paid at once; more wait for the next anomaly
MAX_WITNESSES_ASKED = 8
CONFIRM_ROUNDS = 6
CONFIRMS_PER_MINUTE = 60
ASK_TIMEOUT_S = 5.0


class Earnings:
    """Witness other cells' claims; settle this cell's own."""

    def __init__(
        self,
        node: SigningKey,
        peers: PeerClient,
        ip: str,
        now_ms: Callable[[], int],
        counters: Counter[str],
        members: Callable[[], Awaitable[dict[str, str] | None]],
        hosted: Callable[[str], bool],
        round_s: float,
    ) -> None:
        self.node, self.peers, self.ip, self.now_ms, self.counters = node, peers, ip, now_ms, counters
        self.members, self.hosted, self.round_s = members, hosted, round_s
        self.observed: OrderedDict[str, int] = OrderedDict()  # subject -> when this monitor saw it
        self.entries: OrderedDict[str, dict[str, Any]] = OrderedDict()  # claim id -> its state
        self.rate = TokenBuckets(CONFIRMS_PER_MINUTE / 60, CONFIRMS_PER_MINUTE, 4096)

    def observe(self, subject: str, ts: int) -> None:
        self.observed.pop(subject, None)
        self.observed[subject] = ts
        while len(self.observed) > MAX_OBSERVED:
            self.observed.popitem(last=False)

    def _refuse(self, reason: str, text: str, status: int = 403) -> RequestError:
        self.counters[f"agent_confirm_refused:{reason}"] += 1
        return RequestError(reason, text, status)

    def witness(self, doc: Any, asker: str) -> dict[str, Any]:
        """A confirmation of another cell's claim, signed by this node, or the refusal."""
        if not self.rate.allow(asker, time.monotonic()):
            raise self._refuse("rate_limited", f"at most {CONFIRMS_PER_MINUTE} confirmations a minute", 429)
        try:
            claim = check_claim(doc)
        except SignedDocError as exc:
            raise self._refuse(exc.reason, str(exc), 400) from None
        if self.hosted(claim["agent"]):
            raise self._refuse("own_claim", "a cell does not confirm its own agents' claims")
        seen = self.observed.get(claim["subject"])
        if seen is None or abs(seen - claim["ts"]) > WITNESS_WINDOW_MS:
            raise self._refuse("not_observed", "this node's monitor did not observe that", 404)
        self.counters["agent_confirmed"] += 1
        return sign_confirm(self.node, claim, self.now_ms())

    def claim(self, claim: dict[str, Any]) -> dict[str, Any]:
        """Record `claim` (of an agent hosted here) and return its entry; `settle` pays it."""
        busy = sum(e["state"] in ("confirming", "claiming") for e in self.entries.values()) >= MAX_SETTLING
        state, reason = ("skipped", "too many claims in progress") if busy else ("confirming", "")
        entry = {"claim": claim, "state": state, "reason": reason, "witnesses": 0, "amount": 0, "tx": ""}
        self.entries[claim_id(claim)] = entry
        while len(self.entries) > MAX_ENTRIES:
            self.entries.popitem(last=False)
        return entry

    def of(self, agent_key: str) -> list[dict[str, Any]]:
        return [e for e in self.entries.values() if e["claim"]["agent"] == agent_key]

    async def settle(self, agent: SigningKey, entry: dict[str, Any]) -> None:
        """Confirm, then claim the reward; the entry's state says how it ended."""
        if entry["state"] != "confirming":
            return
        claim = entry["claim"]
        confirms: list[dict[str, Any]] = []
        for _ in range(CONFIRM_ROUNDS):
            confirms = await self._confirmations(claim)
            entry["witnesses"] = len(confirms)
            if len(confirms) >= MIN_CONFIRMATIONS:
                break
            await asyncio.sleep(self.round_s)
        else:
            self._end(entry, "unconfirmed", "no other node's monitor confirmed it")
            return
        try:
            rec = make_task(claim, sign_host(self.node, claim), confirms)
        except BadWork as exc:
            self._end(entry, "refused", exc.reason)
            return
        entry["state"] = "claiming"
        await self._pay(agent, entry, rec.doc, rec.ref, rec.amount)

    async def _confirmations(self, claim: dict[str, Any]) -> list[dict[str, Any]]:
        table = await self.members() or {}
        others = [(k, ip) for k, ip in table.items() if k != self.node.public_key_hex]
        random.shuffle(others)

        async def ask(key: str, ip: str) -> dict[str, Any] | None:
            try:
                reply = await asyncio.wait_for(
                    AgentClient(self.peers, ip, pubkey=key).call("agent.confirm", {"claim": claim}), ASK_TIMEOUT_S
                )
            except (PeerError, TimeoutError):
                return None
            ok = isinstance(reply, dict) and isinstance(reply.get("confirm"), dict)
            return reply["confirm"] if ok and reply["confirm"].get("node") == key else None

        got = await asyncio.gather(*(ask(k, ip) for k, ip in others[:MAX_WITNESSES_ASKED]))
        return [c for c in got if c is not None]

    async def _pay(self, agent: SigningKey, entry: dict[str, Any], work: dict[str, Any], ref: str, owed: int) -> None:
        """Claim the reward (`peerpays.claim.claim_reward`, which tries again while the ledger is busy)."""

        def retrying(reason: str) -> None:
            entry["reason"] = reason

        try:
            reply = await claim_reward(
                PayClient(self.peers, self.ip), agent, work, ref, owed, self.now_ms, on_retry=retrying
            )
        except RewardRefused as exc:
            if exc.reason == "already_paid":
                self._end(entry, "paid_to_another", "another monitor's claim of this was paid first")
            elif exc.final:
                self._end(entry, "refused", exc.reason)
            else:
                self._end(entry, "unpaid", str(entry["reason"]) or "the ledger did not confirm it")
            return
        entry.update(tx=str(reply.get("id", "")), amount=owed)
        self._end(entry, "paid", "")

    def _end(self, entry: dict[str, Any], state: str, reason: str) -> None:
        entry.update(state=state, reason=reason)
        self.counters[f"agent_claim:{state}"] += 1
        if state not in ("paid", "paid_to_another"):
            log.info("agent claim %s: %s", state, reason)
