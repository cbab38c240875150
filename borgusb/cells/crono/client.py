"""CronoClient: the `Clock` the node injects into every cell but crono itself."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ...net.peer import PeerClient, PeerError
from ...timesync import BadExchange, NetworkClock
from .exchange import CRONO, NotSynced, Syncer, describe

log = logging.getLogger("borgusb.crono")


class CronoClient(NetworkClock):
    """The `Clock` of every cell but crono: network time from the crono cell on the same IP.

    A background task (`run`) does a couple of exchanges with the local crono
    receptor every `refresh_ms` (the short cache: `now_ms` itself never
    waits on the network) and keeps the best sample. If crono stops
    answering, the last offset simply stays in force; `describe()` then says
    ``last-offset`` (or ``local`` when crono never answered).
    """

    def __init__(
        self,
        ip: str,
        peers: PeerClient,
        *,
        node_key: str | None,
        port: int = CRONO.recp_port,
        refresh_ms: int = 1000,
        stale_ms: int = 3000,
        samples: int = 2,
    ) -> None:
        super().__init__()
        self.ip = ip
        self.port = port
        self.refresh_s = refresh_ms / 1000
        self.stale_us = stale_ms * 1000
        self.samples = samples
        self.syncer = Syncer(self, peers)
        self.node_key = node_key  # the crono cell on our IP is ours: it answers with our node key
        self.failures = 0
        self.last_ok_mono_us: int | None = None

    async def refresh(self, n: int | None = None) -> bool:
        try:
            await self.syncer.round(self.ip, self.port, self.node_key, n or self.samples)
        except (PeerError, BadExchange, NotSynced) as exc:
            self.failures += 1
            log.debug("crono at %s:%s: %s", self.ip, self.port, exc)
            return False
        self.last_ok_mono_us = self.mono_us()
        return True

    async def first_sync(self, timeout_s: float = 1.0) -> bool:
        try:
            return await asyncio.wait_for(self.refresh(4), timeout_s)
        except TimeoutError:
            return False

    async def run(self) -> None:
        delay = self.refresh_s
        while True:
            await asyncio.sleep(delay)
            ok = await self.refresh()
            # back off while crono is away (up to 5 s), so a cell without crono costs nothing
            delay = self.refresh_s if ok else min(5.0, max(self.refresh_s, delay * 1.5))

    @property
    def source(self) -> str:
        if self.last_ok_mono_us is None:
            return "last-offset" if self.synced else "local"
        if self.mono_us() - self.last_ok_mono_us <= self.stale_us:
            return "crono"
        return "last-offset"

    def describe(self) -> dict[str, Any]:
        doc = describe(self, self.source)
        doc["failures"] = self.failures
        return doc
