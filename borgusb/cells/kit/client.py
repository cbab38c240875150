"""CellClient: the base of every typed client that calls a cell's receptor.

A typed client (``ShardClient``, ``ServiceMgrClient`` ...) is a thin class of
methods with typed arguments; each builds one payload and calls `call`,
which signs it with the caller's key, sends it over the one pinned path
(`PeerClient.post`), and returns the reply payload after checking the reply
envelope against the key that was expected (or the pinned one). A refusal
arrives as `PeerRejected` whose ``reason`` is the handler's reason word.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ...net.peer import PeerClient


class CellClient:
    """Calls one cell type's receptor at one address."""

    cell: ClassVar[str]  # the DNA name of the cell this client talks to

    def __init__(self, peers: PeerClient, ip: str, *, pubkey: str | None = None, port: int | None = None) -> None:
        self.peers = peers
        self.ip = ip
        self.pubkey = pubkey  # the node key expected to answer; None: whoever holds the pinned certificate
        if port is None:
            from .. import (
                spec,  # the registry: a cell shipped elsewhere brings its DNA row with its SPEC
            )

            port = spec(self.cell).dna_row().recp_port
        self.port = port

    async def call(self, type: str, payload: Any, *, broadcast: bool = False) -> Any:
        """One signed request (addressed to every cell of the type when it is to be broadcast);
        the verified reply payload."""
        return await self.peers.post(
            self.ip,
            self.port,
            "/recp",
            type,
            payload,
            expect_pubkey=self.pubkey,
            signed_reply=True,
            broadcast=broadcast,
        )

    async def send(self, type: str, payload: Any) -> None:
        """One signed request whose reply carries nothing the caller needs."""
        await self.peers.post(self.ip, self.port, "/recp", type, payload, expect_pubkey=self.pubkey)

    async def status(self) -> dict[str, Any]:
        """The cell's status (the same document as its monPort)."""
        reply = await self.call("cell.status", {})
        return reply if isinstance(reply, dict) else {}

    async def members(self) -> dict[str, Any]:
        """Every member of the cell's tree (the root's table)."""
        reply = await self.call("tree.members", {})
        return reply if isinstance(reply, dict) else {}

    async def broadcast(self, kind: str, data: dict[str, Any]) -> str:
        """Have the cell broadcast data, signed by the caller, to its whole tree."""
        reply = await self.call("tree.broadcast", {**data, "k": kind}, broadcast=True)
        return str(reply.get("id", "")) if isinstance(reply, dict) else ""
