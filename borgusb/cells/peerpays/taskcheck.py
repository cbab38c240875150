"""peerPaysCell's check of an ``agent`` reward claim (docs/ledger.md, "The agent reward").

The record's own rules are `ledger.taskwork.check_task` (every signature, witnesses distinct and
not the host, the rule's amount) and `check_task_claim` (the reward pays exactly that record, fresh).
What needs the network is here: the host and every witness must be members of the agents' tree as
this node's own borgAgentCell reads the tree root's table (a tree admits members at a bounded rate,
so keys made up by the thousand are not members), and a host is paid for at most
`MAX_TASKS_PER_HOST_DAY` tasks a day as this holder counts them: what a few colluding member nodes
could mint is bounded (docs/ledger.md, limits). Refusals are counted as
``pay_work_refused:<reason>``; `approves` is the core's question, as for hold claims.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from typing import Any

from ...ledger.rules import HOUR_MS
from ...ledger.taskwork import TaskRecord, check_task, check_task_claim
from ...ledger.tx import Tx
from ...ledger.work import BadWork
from ...net.peer import PeerClient, PeerError
from ..agents.client import AgentClient
from ..kit import RequestError
from .workchecks import WorkChecks

MAX_TASKS_PER_HOST_DAY = 24  # 12 Shells a day at the agent rule's 0.5 Shell per task
MAX_MEMBERS = 4096  # rows of the agents' member table read
MAX_HOST_DAYS = 8192
MEMBERS_TIMEOUT_S = 5.0
DAY_MS = 24 * HOUR_MS


class TaskChecks(WorkChecks):
    """What one reserve holder has verified of agent claims; its `check` does the verifying."""

    def __init__(self, peers: PeerClient, ip: str, counters: Counter[str]) -> None:
        super().__init__(peers, ip, counters)
        self.per_host_day: OrderedDict[tuple[str, int], set[str]] = OrderedDict()  # -> refs approved

    async def _members(self) -> set[str]:
        """Node keys of the agents' tree, as this node's borgAgentCell reads the root's table."""
        try:
            doc = await asyncio.wait_for(AgentClient(self.peers, self.ip).members(), MEMBERS_TIMEOUT_S)
        except (TimeoutError, PeerError) as exc:
            self.counters["pay_work_members_unavailable"] += 1
            raise RequestError(
                "members_unavailable", f"this node's agent cell did not give its tree's members: {exc}", 503
            ) from None
        found = doc.get("members")
        rows = found[:MAX_MEMBERS] if isinstance(found, list) else []
        return {m["pubkey"] for m in rows if isinstance(m, dict) and isinstance(m.get("pubkey"), str)}

    async def check(self, tx: Tx, work: Any, now_ms: int) -> None:
        """Verify the agent record `work` that the reward `tx` claims, or raise the refusal."""
        if tx.ref in self.verified:
            return
        try:
            rec = check_task(work)
            check_task_claim(rec, tx, now_ms)
        except BadWork as exc:
            raise self._refuse(exc.reason, exc.detail) from None
        members = await self._members()
        strangers = [k[:16] for k in (rec.host, *rec.witnesses) if k not in members]
        if strangers:
            raise self._refuse("not_member", f"not members of the agents' tree: {', '.join(strangers)}")
        self._count(rec)
        self._approve(tx)

    def _count(self, rec: TaskRecord) -> None:
        """One more task of the host's day, or `task_limit`."""
        day = (rec.host, rec.ts // DAY_MS)
        refs = self.per_host_day.setdefault(day, set())
        if rec.ref not in refs and len(refs) >= MAX_TASKS_PER_HOST_DAY:
            raise self._refuse("task_limit", f"this host was paid for {MAX_TASKS_PER_HOST_DAY} tasks that day", 429)
        refs.add(rec.ref)
        while len(self.per_host_day) > MAX_HOST_DAYS:
            self.per_host_day.popitem(last=False)
