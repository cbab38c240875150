"""An agent and its thinking loop, without I/O: the model and the world are injected.

A session is a bounded series of steps. Each step shows the model the agent's prompt, its
specialty, its working memory and the last result, and asks for one action as JSON under the
schema of the actions allowed at that step (an agenda may narrow them step by step: the chat asks
for a search, then a reply). The text that comes back goes through `actions.parse_action`; output
that fails is retried with the reason (up to `retries` times) and never executed; a valid action
goes to the hands, whose refusal is recorded with its reason. The budget counts model calls, so a
session that keeps failing still ends.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from ..keys import SigningKey
from .actions import ACTIONS, ActionError, EndSession, ReplyPerson, describe, parse_action, token_budget
from .prompts import PromptHistory
from .workingmemory import WorkingMemory

MAX_NOTES = 16
DEFAULT_BUDGET = 8
RESULT_CHARS = 600

BASE_PROMPT = (
    "You are a BorgUSB agent: you look after a peer-to-peer network of cells. "
    "Read its code, keep useful findings as memories, answer people briefly and truthfully."
)


@dataclass(frozen=True, slots=True)
class Thought:
    """What the model wrote, and what it cost."""

    text: str
    tokens: int
    ms: int
    cut: bool = False  # the token budget ended the output (finish_reason "length")


class Brain(Protocol):
    """The model: one action as JSON under the schema of the allowed actions (`actions.schema_for`),
    a message addressed only to one of `agents`."""

    async def think(
        self, messages: list[dict[str, str]], allowed: tuple[str, ...], agents: tuple[str, ...], max_tokens: int
    ) -> Thought: ...


class Refused(Exception):
    """The hands would not (or could not) carry out a valid action; ``reason`` is one word."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


# (agent, action) -> (result text, ids of the memories it used), or raise Refused
Hands = Callable[["Agent", Any], Awaitable[tuple[str, list[str]]]]


@dataclass
class Agent:
    name: str
    key: SigningKey
    owner: str  # the person's public key that registered the agent
    prompts: PromptHistory
    specialty: str = ""
    memory: WorkingMemory = field(default_factory=WorkingMemory)
    notes: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_NOTES))
    inbox: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=32))
    reading: str | None = None  # the module last read (the next read without a name follows it)

    @property
    def pubkey(self) -> str:
        return self.key.public_key_hex


@dataclass(frozen=True, slots=True)
class Step:
    n: int
    raw: str
    action: dict[str, Any] | None  # None: the output was not a valid action (never executed)
    outcome: str  # "done" | "refused" | "invalid"
    reason: str
    result: str
    tokens: int
    ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "raw": self.raw[:2000],
            "action": self.action,
            "outcome": self.outcome,
            "reason": self.reason,
            "result": self.result[:RESULT_CHARS],
            "tokens": self.tokens,
            "ms": self.ms,
        }


@dataclass
class Session:
    agent: str
    task: str
    steps: list[Step] = field(default_factory=list)
    ended: str = ""  # "end_session" | "budget" | "agenda"
    replies: list[str] = field(default_factory=list)
    memories_used: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "task": self.task,
            "ended": self.ended,
            "replies": self.replies,
            "memories_used": self.memories_used,
            "steps": [s.to_dict() for s in self.steps],
        }


def messages_for(agent: Agent, task: str, allowed: tuple[str, ...], last: str) -> list[dict[str, str]]:
    """The model's view of one step."""
    system = (
        f"{agent.prompts.current.text}\n\nYou are agent {agent.name}"
        f"{', specialty ' + agent.specialty if agent.specialty else ''}. "
        "Answer with exactly one JSON object, one of these actions:\n"
        + describe(allowed)
        + "\nKeep every text short: one or two sentences."
    )
    inbox = "\n".join(f"from {m.get('from_name', '?')}: {m.get('text', '')}" for m in list(agent.inbox)[-3:])
    user = (
        f"Task: {task}\n\nWorking memory:\n{agent.memory.render()}\n"
        + (f"\nMessages:\n{inbox}\n" if inbox else "")
        + (f"\nLast result: {last[:RESULT_CHARS]}\n" if last else "")
        + "\nYour next action (JSON):"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


async def run_session(
    agent: Agent,
    brain: Brain,
    hands: Hands,
    task: str,
    *,
    agenda: list[tuple[str, ...]] | None = None,
    allowed: tuple[str, ...] = tuple(ACTIONS),
    budget: int = DEFAULT_BUDGET,
    retries: int = 2,
    max_tokens: int | None = None,
    colony: tuple[str, ...] = (),
) -> Session:
    """Think until the agent ends the session, the agenda is done or the budget is spent; `colony`
    names the agents a message may go to. Each call's token budget is `max_tokens`, or by default
    sized from the allowed actions' own bounds (`actions.token_budget`); an output the budget cut
    that does not parse is refused as ``cut`` and asked again."""
    session = Session(agent.name, task)
    last = ""
    calls = 0
    step_n = 0
    while True:
        if agenda is not None and step_n >= len(agenda):
            session.ended = "agenda"
            return session
        now_allowed = agenda[step_n] if agenda is not None else allowed
        others = tuple(n for n in colony if n != agent.name)
        action = None
        for _attempt in range(retries + 1):
            if calls >= budget:
                session.ended = "budget"
                return session
            calls += 1
            start = time.monotonic()
            tokens = max_tokens or token_budget(now_allowed)
            thought = await brain.think(messages_for(agent, task, now_allowed, last), now_allowed, others, tokens)
            try:
                action = parse_action(thought.text, now_allowed)
            except ActionError as exc:
                why = ActionError("cut", f"cut by the token budget ({tokens} tokens); write shorter texts")
                why = why if thought.cut else exc
                ms = int((time.monotonic() - start) * 1000)
                session.steps.append(
                    Step(step_n + 1, thought.text, None, "invalid", why.reason, str(why), thought.tokens, ms)
                )
                last = f"your output was refused ({why.reason}): {why}. Write one valid JSON action."
                continue
            break
        step_n += 1
        if action is None:
            continue  # every attempt was invalid: nothing ran; the agenda moves on
        doc = msgspec.to_builtins(action)
        start = time.monotonic()
        try:
            result, used = await hands(agent, action)
            outcome, reason = "done", ""
            session.memories_used.extend(i for i in used if i not in session.memories_used)
            if isinstance(action, ReplyPerson):
                session.replies.append(action.text)
        except Refused as exc:
            result, outcome, reason = str(exc), "refused", exc.reason
        ms = int((time.monotonic() - start) * 1000)
        session.steps.append(Step(step_n, thought.text, doc, outcome, reason, result, thought.tokens, ms))
        last = f"{doc['action']} {outcome}{' (' + reason + ')' if reason else ''}: {result}"
        agent.notes.append(last[:200])
        if isinstance(action, EndSession):
            session.ended = "end_session"
            return session
