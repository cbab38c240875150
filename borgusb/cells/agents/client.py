"""AgentClient: what the CLI, the conduit and other agent cells call on a borgAgentCell."""

from __future__ import annotations

from typing import Any

from ..kit import CellClient


def _doc(reply: Any) -> dict[str, Any]:
    return reply if isinstance(reply, dict) else {}


class AgentClient(CellClient):
    cell = "borgAgentCell"

    async def create(self, name: str, prompt: str = "") -> dict[str, Any]:
        """Register an agent owned by the caller's key: ``{"name", "pubkey", "owner"}``."""
        return _doc(await self.call("agent.create", {"name": name, "prompt": prompt}))

    async def agents(self) -> dict[str, Any]:
        """``{"agents": [...], "colony": [names other agent cells host]}``."""
        return _doc(await self.call("agent.list", {}))

    async def session(self, name: str, task: str, agenda: list[list[str]] | None = None) -> dict[str, Any]:
        """Run one session of the caller's agent: its steps, replies and the memories it used."""
        return _doc(await self.call("agent.session", {"name": name, "task": task, "agenda": agenda}))

    async def chat(self, question: str) -> dict[str, Any]:
        """Ask the colony: ``{"agent", "pubkey", "answer", "memories", "steps"}``."""
        return _doc(await self.call("agent.chat", {"question": question}))

    async def prompt(self, name: str, *, propose: str = "", rollback: int = 0) -> dict[str, Any]:
        """Propose a new prompt version, or restore version ``rollback``: the signed versions."""
        return _doc(await self.call("agent.prompt", {"name": name, "propose": propose, "rollback": rollback}))

    async def reports(self) -> dict[str, Any]:
        """The System Monitor's reports and the agents' claims for useful work."""
        return _doc(await self.call("agent.reports", {}))

    async def usage(self) -> dict[str, Any]:
        """The caller's thinking time and credit on this cell: ``{"free", "free_left", "paid", "charged",
        "balance", "payee", "ref", "exempt"}`` (ms and units; pay ``payee`` with ``ref`` to add credit)."""
        return _doc(await self.call("agent.usage", {}))

    async def credit(self, cert: dict[str, Any]) -> dict[str, Any]:
        """Hand the cell a payment's certificate: ``{"credited", "id", "usage"}``."""
        return _doc(await self.call("agent.credit", {"cert": cert}))
