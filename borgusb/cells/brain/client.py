"""BrainClient: what borgAgentCell calls on its node's brain."""

from __future__ import annotations

from typing import Any

from ...agents.session import Thought
from ..kit import CellClient


class BrainClient(CellClient):
    cell = "borgAgentBrain"

    async def think(self, messages: list[dict[str, str]], schema: dict[str, Any], max_tokens: int) -> Thought:
        """One model call: the text (JSON under the schema, unchecked: the caller parses it) and its cost."""
        reply = await self.call("brain.think", {"messages": messages, "schema": schema, "max_tokens": max_tokens})
        doc = reply if isinstance(reply, dict) else {}
        text, tokens, ms = doc.get("text"), doc.get("tokens"), doc.get("ms")
        return Thought(
            text if isinstance(text, str) else "",
            tokens if isinstance(tokens, int) else 0,
            ms if isinstance(ms, int) else 0,
        )
