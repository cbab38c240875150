"""borgAgentCell: hosts a node's agents, runs their sessions with the node's brain, and carries
their signed messages; its System Monitor agent watches every cell the registry lists.

* **Agents and owners.** ``agent.create`` registers an agent for the key that signed the request
  (the person, through the CLI or the conduit); only that key runs its sessions and changes its
  prompt. The agent's own key is derived from this node's key, its owner and its name (HKDF), so
  it is the same after a restart and never stored.
* **Sessions** (`borgusb.agents.session`): the model is asked through `BrainClient`; the hands
  (`hands.Hands`) reach the memory cells signed as the agent. One session per agent at a time.
* **Chat**: ``agent.chat`` picks the agent whose specialty the question names (else the least busy
  one), which searches memories, then replies; the answer names the agent and the memories used.
* **Messages** between agents are signed by the sending agent and checked by the receiving cell
  (``agent.message`` direct, or the ``agentmsg`` broadcast), rate-limited per sending key.
* **The System Monitor** (``monitor_every_s``): reads each registered cell's signed ``cell.status``,
  compares rounds (`borgusb.agents.monitor`), and reports each anomaly to the chat's reports, as a
  memory, and as a signed claim for useful work, which other nodes' monitors confirm
  (``agent.confirm``) and the reserve pays (`earnings`; docs/ledger.md, "The agent reward").
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ... import envelope
from ...agents.actions import ACTIONS
from ...agents.messages import AgentDocError, check_message
from ...agents.monitor import Anomaly, Monitor, Reading, read_status
from ...agents.prompts import PromptError, PromptHistory
from ...agents.session import BASE_PROMPT, Agent, Refused, run_session
from ...clock import Clock
from ...dna import CellDNA
from ...keys import SigningKey
from ...ledger.taskwork import SUBJECT, sign_claim
from ...memory.record import compose
from ...net.peer import PeerClient, PeerError
from ..brain.client import BrainClient
from ..kit import Cell, CellClient, RequestError, on_broadcast, receptor
from ..kit.guard import TokenBuckets
from ..peerpays.client import PayClient
from ..peerpays.prepaid import Prepaid
from ..servicemgr.client import ServiceMgrClient
from . import roster
from .compute import RULE, MeteredBrain
from .earnings import Earnings
from .hands import Hands
from .memoryaccess import NetworkMemory
from .settings import AgentSettings

log = logging.getLogger("borgusb.agents")

NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MONITOR = "monitor"
MAX_TASK = 1000
MAX_REPORTS = 100
MESSAGES_PER_MINUTE = 30
CHATS_PER_MINUTE = 10
MAX_RATE_KEYS = 4096
MONITOR_PROMPT = (
    "You are the System Monitor of a BorgUSB node. You read every cell's status and report "
    "anomalies plainly: what happened, where, and what the person can do."
)
HELLO_EVERY_S = 10
BRAIN_TIMEOUT_S = 120
MAX_NAMES = 256
MAX_COLONY = 1024
CHAT_AGENDA = [("search_memories",), ("reply_person",)]


class _AnyCell(CellClient):
    cell = "serviceMgrCell"  # only for its port when none is given; the monitor always gives one


def derive_agent_key(node_key: SigningKey, owner: str, name: str) -> SigningKey:
    """The agent's key: HKDF-SHA256 of this node's secret, salted by the owner, named by the agent."""
    secret = node_key.secret_bytes()
    try:
        for n in range(4):  # a derived value outside the curve's order is astronomically rare; step on
            okm = HKDF(hashes.SHA256(), 32, bytes.fromhex(owner), f"borgusb.agent|{name}|{n}".encode()).derive(
                bytes(secret)
            )
            try:
                return SigningKey(okm)
            except ValueError:
                continue
        raise ValueError("no valid agent key")
    finally:
        secret[:] = bytes(len(secret))


class AgentCell(Cell):
    settings: AgentSettings

    def __init__(self, dna: CellDNA, ip: str, **kw: Any) -> None:
        settings = kw.get("settings")
        if not isinstance(settings, AgentSettings):
            settings = kw["settings"] = AgentSettings.from_sources()
        super().__init__(dna, ip, **kw)
        # thinking takes seconds, not the 3 s every other request gets: the brain has its own client
        self.brain_peers = PeerClient(
            self.key, self.clock, self.verifier, ip=ip, port=dna.net_port, bind=ip, timeout_s=BRAIN_TIMEOUT_S
        )
        self.agents: dict[str, Agent] = {}
        self.busy: set[str] = set()
        self.hands = Hands(NetworkMemory(self.peers, ip), self._send_message, self.clock.now_ms)
        self.monitor = Monitor()
        self.reports: deque[dict[str, Any]] = deque(maxlen=MAX_REPORTS)
        self.sessions: deque[dict[str, Any]] = deque(maxlen=20)
        self.chat_rate = TokenBuckets(CHATS_PER_MINUTE / 60, CHATS_PER_MINUTE, MAX_RATE_KEYS)
        self.message_rate = TokenBuckets(MESSAGES_PER_MINUTE / 60, MESSAGES_PER_MINUTE, MAX_RATE_KEYS)
        self.monitor_rounds = 0
        self.monitored: set[tuple[str, str]] = set()  # (cell, ip) that answered the last round
        self.roster = Path(self.data_dir) / "agents.json" if self.data_dir is not None else None
        self.roster_refused: list[str] = []
        if self.roster is not None:
            stored, self.roster_refused = roster.load(self.roster, lambda o, n: derive_agent_key(self.key, o, n))
            self.agents.update((a.name, a) for a in stored)
        self.colony: dict[str, str] = {}  # agent names other agent cells host -> their cell's node key
        self.compute = Prepaid(
            RULE,
            "agent",
            Path(self.data_dir) / "credit.json" if self.data_dir is not None else None,
            self.key.public_key_hex,
            self.settings.free_compute_s * 1000,
            self.settings.free_pool_s * 1000,
            lambda cert: PayClient(self.peers, self.ip).verify(cert),
            self.counters,
        )
        self.earnings = Earnings(
            self.key,
            self.peers,
            ip,
            lambda: self.clock.now_ms(),
            self.counters,
            self.read_members,
            lambda k: any(a.pubkey == k for a in self.agents.values()),
            float(self.settings.monitor_every_s or 15),
        )

    @property
    def brain(self) -> BrainClient:
        return BrainClient(self.brain_peers, self.settings.brain or self.ip)

    def use_clock(self, clock: Clock, companion: Awaitable[Any] | None = None) -> None:
        super().use_clock(clock, companion)
        self.brain_peers.clock = clock

    async def on_stop(self) -> None:
        await self.brain_peers.close()

    def _save(self) -> None:
        """Keep the roster (without --data, agents live as long as the process)."""
        if self.roster is not None:
            try:
                roster.save(self.roster, [a for a in self.agents.values() if a.name != MONITOR])
            except OSError as exc:
                self.counters["agent_roster_unsaved"] += 1
                log.warning("agents: the roster could not be written: %s", exc)

    async def on_start(self) -> None:
        if self.settings.monitor_every_s:
            self._register(self.key.public_key_hex, MONITOR, MONITOR_PROMPT).specialty = "monitoring"
            self._spawn(self._monitor_loop())
        self._spawn(self._hello_loop())

    async def _hello_loop(self) -> None:
        """Tell the colony which agents live here (a message may be addressed only to a known name)."""
        while True:
            if self.agents:
                self.broadcast("agenthello", {"names": sorted(self.agents)[:MAX_NAMES]})
            await asyncio.sleep(HELLO_EVERY_S)

    @on_broadcast("agenthello")
    def _b_hello(self, origin: str, data: dict[str, Any]) -> None:
        names = data.get("names")
        if not isinstance(names, list):
            return
        for name in names[:MAX_NAMES]:
            if isinstance(name, str) and NAME.fullmatch(name) and name not in self.agents:
                if name not in self.colony and len(self.colony) >= MAX_COLONY:
                    self.colony.pop(next(iter(self.colony)))
                self.colony[name] = origin

    # ------------------------------------------------------------ agents

    def _register(self, owner: str, name: str, prompt: str) -> Agent:
        key = derive_agent_key(self.key, owner, name)
        agent = Agent(
            name, key, owner, PromptHistory(key, prompt if prompt.strip() else BASE_PROMPT, self.clock.now_ms())
        )
        self.agents[name] = agent
        return agent

    def _refuse(self, reason: str, text: str, status: int = 400) -> RequestError:
        self.counters[f"agent_refused:{reason}"] += 1
        return RequestError(reason, text, status)

    def _text(self, p: dict[str, Any], field: str, limit: int) -> str:
        value = p.get(field, "")
        if not isinstance(value, str) or len(value) > limit:
            raise self._refuse("malformed", f"{field} is text of at most {limit} characters")
        return value

    def _own_agent(self, env: envelope.Envelope) -> Agent:
        p = env.payload if isinstance(env.payload, dict) else {}
        name = p.get("name")
        agent = self.agents.get(name) if isinstance(name, str) else None
        if agent is None:
            raise self._refuse("no_agent", "no agent of that name here", 404)
        if env.signer != agent.owner:
            raise self._refuse("not_owner", "only the key that registered this agent may do that", 403)
        return agent

    @receptor("agent.create")
    async def _r_create(self, env: envelope.Envelope) -> Any:
        p = env.payload if isinstance(env.payload, dict) else {}
        name, prompt = p.get("name"), self._text(p, "prompt", 4000)
        if not isinstance(name, str) or not NAME.fullmatch(name) or name == MONITOR:
            raise self._refuse("malformed", "an agent's name is 1-32 of a-z, 0-9, _ and -, starting with a letter")
        if name in self.agents:
            if self.agents[name].owner != env.signer:
                raise self._refuse("name_taken", f"{name} is another person's agent", 409)
            return self._describe(self.agents[name])
        if len(self.agents) >= self.settings.max_agents:
            raise self._refuse("full", f"this cell hosts at most {self.settings.max_agents} agents", 507)
        if sum(a.owner == env.signer for a in self.agents.values()) >= self.settings.per_owner:
            raise self._refuse("quota", f"one person registers at most {self.settings.per_owner} agents here", 429)
        try:
            agent = self._register(env.signer, name, prompt)
        except PromptError as exc:
            raise self._refuse("bad_prompt", str(exc)) from None
        self._save()
        self.broadcast("agenthello", {"names": [name]})
        return self._describe(agent)

    def _describe(self, a: Agent) -> dict[str, Any]:
        return {
            "name": a.name,
            "pubkey": a.pubkey,
            "owner": a.owner,
            "specialty": a.specialty,
            "prompt": a.prompts.current.to_dict(),
            "versions": len(a.prompts.versions),
            "working_memory": a.memory.to_list(),
            "inbox": list(a.inbox),
            "claims": self.earnings.of(a.pubkey)[-20:],
            "busy": a.name in self.busy,
        }

    @receptor("agent.list")
    async def _r_list(self, env: envelope.Envelope) -> Any:
        return {"agents": [self._describe(a) for a in self.agents.values()], "colony": sorted(self.colony)}

    async def run(
        self, agent: Agent, task: str, agenda: list[tuple[str, ...]] | None, budget: int, payer: str
    ) -> dict[str, Any]:
        """A session of `agent`; its thinking time is charged to `payer` (`compute`)."""
        if agent.name in self.busy:
            raise self._refuse("busy", f"{agent.name} is in a session", 409)
        self.compute.may_start(payer, self.clock.now_ms())
        self.busy.add(agent.name)
        brain = MeteredBrain(self.brain)
        try:
            colony = tuple(sorted({*self.agents, *self.colony} - {MONITOR}))
            session = await run_session(agent, brain, self.hands, task, agenda=agenda, budget=budget, colony=colony)
        except PeerError as exc:
            raise self._refuse("brain_unreachable", f"the brain did not answer: {exc}", 503) from None
        finally:
            self.busy.discard(agent.name)
            self._save()  # the session may have changed its specialty or prompt
            charged = self.compute.charge(payer, brain.ms, self.clock.now_ms())
        doc = session.to_dict()
        doc["compute"] = {"ms": brain.ms, "charged": charged}
        for step in session.steps:
            self.counters[f"agent_step:{step.outcome}"] += 1
        self.sessions.append(
            {"agent": agent.name, "task": task[:200], "ended": session.ended, "steps": len(session.steps)}
        )
        return doc

    @receptor("agent.session")
    async def _r_session(self, env: envelope.Envelope) -> Any:
        agent = self._own_agent(env)
        p = env.payload
        task = self._text(p, "task", MAX_TASK)
        agenda = p.get("agenda")
        if agenda is not None and (
            not isinstance(agenda, list)
            or not 1 <= len(agenda) <= 16
            or not all(
                isinstance(s, list) and s and all(isinstance(a, str) and a in ACTIONS for a in s) for s in agenda
            )
        ):
            raise self._refuse("malformed", "agenda is 1 to 16 lists of action names")
        steps = [tuple(s) for s in agenda] if agenda else None
        return await self.run(agent, task or "Look after the network.", steps, self.settings.budget, env.signer)

    def _pick(self, question: str) -> Agent:
        free = [a for a in self.agents.values() if a.name not in self.busy and a.name != MONITOR]
        if not free:
            raise self._refuse("busy", "every agent here is thinking; ask again shortly", 503)
        words = set(re.findall(r"[a-z]+", question.lower()))
        named = [a for a in free if a.specialty and (a.specialty in words or a.specialty.rstrip("s") in words)]
        return (named or free)[0]

    @receptor("agent.chat")
    async def _r_chat(self, env: envelope.Envelope) -> Any:
        p = env.payload if isinstance(env.payload, dict) else {}
        question = self._text(p, "question", 500).strip()
        if not question:
            raise self._refuse("malformed", "ask a question")
        if not self.chat_rate.allow(env.signer, time.monotonic()):
            raise self._refuse("rate_limited", "at most 10 questions a minute", 429)
        agent = self._pick(question)
        task = (
            f"A person asks: {question}\nFirst search the memories, then reply to the person in one or two sentences."
        )
        doc = await self.run(agent, task, list(CHAT_AGENDA), len(CHAT_AGENDA) * 3, env.signer)
        used = [{"id": i, "text": self.hands.seen.get(i, "")} for i in doc["memories_used"][:5]]
        answer = doc["replies"][-1] if doc["replies"] else ""
        return {"agent": agent.name, "pubkey": agent.pubkey, "answer": answer, "memories": used, "steps": doc["steps"]}

    @receptor("agent.credit")
    async def _r_credit(self, env: envelope.Envelope) -> Any:
        """A payment for thinking time here (compute.py): its certificate, checked by this node's ledger."""
        cert = env.payload.get("cert") if isinstance(env.payload, dict) else None
        return await self.compute.pay_in(cert, self.clock.now_ms())

    @receptor("agent.usage")
    async def _r_usage(self, env: envelope.Envelope) -> Any:
        """The signer's thinking time and credit here, and how to pay: ``payee`` and ``ref``."""
        return self.compute.usage(env.signer, self.clock.now_ms())

    @receptor("agent.prompt")
    async def _r_prompt(self, env: envelope.Envelope) -> Any:
        agent = self._own_agent(env)
        p = env.payload
        text, back = self._text(p, "propose", 4000), p.get("rollback", 0)
        if not isinstance(back, int) or back < 0:
            raise self._refuse("malformed", "rollback is a version number")
        try:
            if text:
                agent.prompts.propose(text, self.clock.now_ms(), "proposed by its owner")
            elif back:
                agent.prompts.rollback(back, self.clock.now_ms())
        except PromptError as exc:
            raise self._refuse("bad_prompt", str(exc)) from None
        self._save()
        return {"versions": [v.to_dict() for v in agent.prompts.versions]}

    @receptor("agent.reports")
    async def _r_reports(self, env: envelope.Envelope) -> Any:
        claims = list(self.earnings.entries.values())[-40:]
        return {"reports": list(self.reports), "claims": claims, "sessions": list(self.sessions)}

    @receptor("agent.confirm")
    async def _r_confirm(self, env: envelope.Envelope) -> Any:
        """Another cell's monitor asks: did this node's monitor observe what its agent claims?"""
        p = env.payload if isinstance(env.payload, dict) else {}
        return {"confirm": self.earnings.witness(p.get("claim"), env.signer)}

    # ------------------------------------------------------------ messages between agents

    def _take(self, doc: Any) -> str:
        """A signed agent message for an agent of this cell: checked, rate-limited, delivered."""
        try:
            m = check_message(doc, self.clock.now_ms())
        except AgentDocError as exc:
            self.counters[f"agent_message_refused:{exc.reason}"] += 1
            raise RequestError(exc.reason, str(exc)) from None
        target = self.agents.get(m.to_name)
        if target is None:
            return "not here"
        if not self.message_rate.allow(m.sender, time.monotonic()):
            self.counters["agent_message_refused:rate_limited"] += 1
            raise RequestError("rate_limited", "too many messages from that agent", 429)
        target.inbox.append({"from": m.sender, "from_name": m.from_name, "text": m.text, "ts": m.ts})
        target.memory.add(f"message from {m.from_name}: {m.text}", 700)
        self.counters["agent_messages_send_messageed"] += 1
        return f"delivered to {m.to_name}"

    async def _send_message(self, doc: dict[str, Any]) -> str:
        if doc["to_name"] in self.agents:
            return self._take(doc)
        self.broadcast("agentmsg", {"m": doc})
        return f"sent to the colony for {doc['to_name']}"

    @receptor("agent.message")
    async def _r_message(self, env: envelope.Envelope) -> Any:
        p = env.payload if isinstance(env.payload, dict) else {}
        return {"status": self._take(p.get("m"))}

    @on_broadcast("agentmsg")
    def _b_message(self, origin: str, data: dict[str, Any]) -> None:
        try:
            self._take(data.get("m"))
        except RequestError:
            pass  # counted by _take

    # ------------------------------------------------------------ the System Monitor

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.monitor_every_s)
            try:
                await self.monitor_round()
            except PeerError as exc:
                self.counters["monitor_registry_unreachable"] += 1
                log.info("monitor: the registry did not answer: %s", exc)

    async def _read(self, entry: dict[str, Any]) -> Reading:
        cell, ip, node, ports = entry.get("cell"), entry.get("ip"), entry.get("node"), entry.get("ports")
        if not (isinstance(cell, str) and isinstance(ip, str) and isinstance(node, str) and isinstance(ports, list)):
            return Reading("?", "?", "?", answered=False)
        if len(ports) < 2 or not isinstance(ports[1], int):
            return Reading(cell, ip, node, answered=False)
        try:
            doc = await asyncio.wait_for(_AnyCell(self.peers, ip, pubkey=node, port=ports[1]).status(), 3)
        except (PeerError, TimeoutError):
            doc = None
        return read_status(cell, ip, node, doc)

    async def monitor_round(self) -> list[Anomaly]:
        """One round: read every registered cell, compare with the last round, report what changed."""
        entries = await ServiceMgrClient(self.peers, self.ip).services()
        readings = await asyncio.gather(*(self._read(e) for e in entries[:256]))
        found = self.monitor.compare([r for r in readings if r.cell != "?"])
        self.monitor_rounds += 1
        self.monitored = {(r.cell, r.ip) for r in readings if r.answered}
        agent = self.agents.get(MONITOR)
        for anomaly in found:
            self.counters[f"monitor_anomaly:{anomaly.kind}"] += 1
            ts = self.clock.now_ms()
            report: dict[str, Any] = {"kind": anomaly.kind, "text": anomaly.text(), "ts": ts}
            self.reports.append(report)
            subject = f"{anomaly.kind}|{anomaly.cell}|{anomaly.node}"
            if SUBJECT.fullmatch(subject):  # a registry entry's names are network text: claim only sane ones
                self.earnings.observe(subject, ts)
                if agent is not None:
                    entry = self.earnings.claim(sign_claim(agent.key, "anomaly_report", subject, anomaly.text(), ts))
                    self._spawn(self.earnings.settle(agent.key, entry))
            if agent is not None:
                try:
                    m = compose(agent.key, f"anomaly {anomaly.text()}", kind="anomaly", ts=ts)
                    report["memory"] = await self.hands.memory.put(m)
                except (Refused, PeerError) as exc:
                    report["memory_error"] = str(exc)[:200]
        return found

    def status(self) -> dict[str, Any]:
        doc = super().status()
        doc["agents"] = {
            "hosted": len(self.agents),
            "busy": sorted(self.busy),
            "reports": len(self.reports),
            "roster_refused": self.roster_refused[:10],
            "monitor": {"rounds": self.monitor_rounds, "cells": sorted(f"{c}@{ip}" for c, ip in self.monitored)},
        }
        return doc
