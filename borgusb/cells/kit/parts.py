"""What the kit's parts share: the attributes `Cell.__init__` sets, and two helpers they all use.

`Cell` is put together from parts (the tree driver, the net door) that live in
modules of their own; each part subclasses this, so each is typed against the
same attributes without knowing `Cell`, and none imports another.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from aiohttp import web

from ... import envelope
from ...clock import Clock
from ...dna import CellDNA
from ...keys import SigningKey
from ...net.nat import Placement, Relays
from ...net.peer import PeerClient, Pin
from ...net.tls import TLSIdentity
from ...tree.model import Member, TreeConfig, TreeNode
from .guard import Guard
from .handlers import HandlerTable
from .settings import Settings


class CellParts:
    """The state of a cell, as its parts see it (set by `Cell.__init__`)."""

    dna: CellDNA
    ip: str
    key: SigningKey
    clock: Clock
    verifier: envelope.Verifier
    settings: Settings
    contacts: list[str]
    contact_pins: dict[str, tuple[str, int, Pin]]
    data_dir: Path | None
    tick_ms: int
    me: Member
    tree: TreeNode
    _tree_config: TreeConfig
    placement: Placement
    relays: Relays
    counters: Counter[str]
    guard: Guard
    peers: PeerClient
    tls: TLSIdentity | None
    handlers: HandlerTable
    _tasks: set[asyncio.Task[Any]]

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """A background task of the cell, cancelled when the cell stops."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _read_verified(self, request: web.Request, **expect: Any) -> envelope.Envelope:
        """A request's body through the one `Verifier` (a body over the app's limit is TooLarge)."""
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.verifier.counters[envelope.TooLarge.reason] += 1
            raise envelope.TooLarge("request body too large") from None
        return self.verifier.verify(body, **expect)
