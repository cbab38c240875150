"""BrainClient: what borgAgentCell calls on its node's brain."""

from __future__ import annotations

from ...agents.session import Thought
from ..kit import CellClient


class BrainClient(CellClient):
    cell = "borgAgentBrain"

    async def think(
        self, messages: list[dict[str, str]], allowed: tuple[str, ...], agents: tuple[str, ...], max_tokens: int
    ) -> Thought:
        """One model call: the text (JSON under the allowed actions' schema, unchecked: the caller
        parses it) and its cost."""
        payload = {"messages": messages, "allowed": list(allowed), "agents": list(agents), "max_tokens": max_tokens}
        reply = await self.call("brain.think", payload)
        doc = reply if isinstance(reply, dict) else {}
        text, tokens, ms = doc.get("text"), doc.get("tokens"), doc.get("ms")
        return Thought(
            text if isinstance(text, str) else "",
            tokens if isinstance(tokens, int) else 0,
            ms if isinstance(ms, int) else 0,
            doc.get("cut") is True,
        )
