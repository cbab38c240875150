"""What an agent's actions do in the world: the hands `borgusb.agents.session` is given.

Every action arrives already checked against its schema (`borgusb.agents.actions`); here each one
meets the network or the agent's own state, and anything that cannot be done is a `Refused` with
its reason, recorded in the session, never an exception that ends it. Memories are signed by the
agent's own key; a memory search's results are checked against their owners' signatures by the
memory side before they reach the agent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ...agents import actions as A
from ...agents import source
from ...agents.messages import sign_message
from ...agents.prompts import PromptError
from ...agents.session import Agent, Refused
from ...memory.errors import MemoryRefused
from ...memory.query import Query, Result, make_query
from ...memory.record import Memory, compose

SEARCH_RANK = 600
SOURCE_RANK = 400


class MemoryAccess(Protocol):
    """The memory cells as an agent reaches them (`memoryaccess.NetworkMemory`)."""

    async def put(self, m: Memory) -> str: ...
    async def search(self, q: Query) -> list[Result]: ...
    async def get(self, ids: list[str]) -> list[Memory]: ...


Deliver = Callable[[dict[str, Any]], Awaitable[str]]  # a signed agent message -> how it went


class Hands:
    """One agent cell's hands; `now_ms` is the node's clock."""

    def __init__(self, memory: MemoryAccess, deliver: Deliver, now_ms: Callable[[], int]) -> None:
        self.memory = memory
        self.deliver = deliver
        self.now_ms = now_ms
        self.seen: dict[str, str] = {}  # memory id -> text the agent was shown (the chat lists them)

    async def __call__(self, agent: Agent, action: Any) -> tuple[str, list[str]]:
        try:
            return await self._act(agent, action)
        except MemoryRefused as exc:
            raise Refused(exc.reason, str(exc)) from None
        except (PromptError, source.SourceError) as exc:
            raise Refused("refused", str(exc)) from None

    async def _act(self, agent: Agent, a: Any) -> tuple[str, list[str]]:
        if isinstance(a, A.PutMemory):
            m = compose(agent.key, a.text, kind=a.kind, ts=self.now_ms(), private=not a.public)
            mid = await self.memory.put(m)
            return f"kept memory {mid}", []
        if isinstance(a, A.SearchMemories):
            found = await self.memory.search(make_query(a.query, self.now_ms(), limit=a.limit))
            for r in found:
                self.seen[r.memory.id] = r.memory.text
                agent.memory.add(f"memory {r.memory.id[:12]}: {r.memory.text}", SEARCH_RANK)
            del_old(self.seen)
            lines = [f"{r.memory.id} ({r.score / 1e6:.2f}): {r.memory.text[:200]}" for r in found]
            return ("\n".join(lines) or "no memory matched"), [r.memory.id for r in found]
        if isinstance(a, A.GetMemories):
            got = await self.memory.get(list(a.ids))
            for m in got:
                self.seen[m.id] = m.text
            return ("\n".join(f"{m.id}: {m.text[:300]}" for m in got) or "none of those ids is held"), [
                m.id for m in got
            ]
        if isinstance(a, A.MessageAgent):
            if a.to == agent.name:
                raise Refused("to_self", "an agent does not message itself")
            doc = sign_message(agent.key, agent.name, a.to, a.text, self.now_ms())
            return await self.deliver(doc), []
        if isinstance(a, A.ReplyPerson):
            return "reply shown to the person", []
        if isinstance(a, A.RankItem):
            if not agent.memory.rank(a.item, a.rank):
                raise Refused("no_item", f"no item {a.item} in the working memory")
            return f"item {a.item} ranked {a.rank}", []
        if isinstance(a, A.PruneItems):
            return f"dropped {agent.memory.prune(a.below)} items", []
        if isinstance(a, A.ReadSource):
            module = a.module or source.next_module(agent.reading)
            text = source.read(module, a.start, a.count)
            agent.reading = module
            agent.memory.add(f"read {module} from line {a.start}", SOURCE_RANK)
            return f"{module}:\n{text}", []
        if isinstance(a, A.ChooseSpecialty):
            agent.specialty = a.specialty
            return f"specialty is now {a.specialty}", []
        if isinstance(a, A.ProposePrompt):
            v = agent.prompts.propose(a.text, self.now_ms())
            return f"prompt version {v.n} signed ({v.id[:12]}); version {v.n - 1} can be restored", []
        if isinstance(a, A.EndSession):
            return "session ended", []
        raise Refused("unknown_action", f"no hands for {type(a).__name__}")


def del_old(seen: dict[str, str], keep: int = 256) -> None:
    """Keep the chat's memory of shown texts bounded (the oldest go first)."""
    for key in list(seen)[: max(0, len(seen) - keep)]:
        del seen[key]
