"""The person's swaps, run by the conduit while the wallet is unlocked (the Exchange page's "Settle").

A `Settlement` needs the party's key, so it runs where the key is: here, in the conduit, one
task per fill, a round every `EVERY_S`, until the swap is done, refunded or abandoned, or the
wallet locks (the key is closed: the task stops). The seller's secret lives in that task's
memory only: a swap interrupted by a lock or a restart cannot claim any more, and both legs
come back after their timeouts (docs/exchange.md, "Timeouts"); the ledger refund of an
interrupted seller is then the wallet's own (``pay.refund``). At most `MAX_RUNNING` swaps run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ...conduit.network import Network, NoEndpoint
from ...exchange.swap import SwapTimes
from ...keys import SigningKey
from ..dogenode.client import DogeNodeClient
from ..peerpays.client import PayClient
from .client import BtraderClient
from .settle import Settlement

EVERY_S = 2.0
MAX_RUNNING = 16
CELL = "btraderOrganCell"
log = logging.getLogger("borgusb.btrader.runner")


class SwapRunner:
    """Running settlements by fill id, with their tasks."""

    def __init__(self, times: SwapTimes | None = None, every_s: float = EVERY_S) -> None:
        self.times = times or SwapTimes()
        self.every_s = every_s
        self.running: dict[str, Settlement] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def progress(self, fill_id: str) -> dict[str, Any] | None:
        """What the page shows of a fill's swap: its state, the last thing done, the last problem."""
        s = self.running.get(fill_id)
        if s is None:
            return None
        return {"state": s.state, "role": s.role, "last": s.log[-1:], "problem": s.errors[-1:]}

    async def _endpoint(self, network: Network, cell: str) -> str:
        entry = await network.refresh(cell)
        if not entry.endpoints:
            raise NoEndpoint(f"no {cell} node answers")
        return entry.endpoints[0]

    async def start(self, key: SigningKey, fill: dict[str, Any], network: Network) -> Settlement:
        """Run the person's side of a final fill (once: a fill already running is left as it is)."""
        if fill["id"] in self.running:
            return self.running[fill["id"]]
        if sum(not t.done() for t in self._tasks.values()) >= MAX_RUNNING:
            raise NoEndpoint(f"{MAX_RUNNING} swaps are running already; wait for one to finish")
        peers = network.client_for(key)
        doge = DogeNodeClient(peers, await self._endpoint(network, "dogeNodeCell"))
        net = (await doge.status()).get("network")
        if not isinstance(net, str):
            raise NoEndpoint("the Dogecoin bridge does not say which network it is on")
        settlement = Settlement(
            key,
            fill,
            self.times,
            pay=PayClient(peers, await self._endpoint(network, "peerPaysCell")),
            doge=doge,
            bt=BtraderClient(peers, await self._endpoint(network, CELL)),
            net=net,
            now_ms=network.clock.now_ms,
        )
        self.running[fill["id"]] = settlement
        self._tasks[fill["id"]] = asyncio.ensure_future(self._run(key, settlement))
        return settlement

    async def _run(self, key: SigningKey, s: Settlement) -> None:
        while not s.done and not key.closed:
            try:
                await s.step()
            except Exception as exc:  # an unexpected reply or a bug: shown on the page, tried again next round
                s.errors.append(f"{type(exc).__name__}: {exc}")
                log.exception("a swap round failed")
            await asyncio.sleep(self.every_s)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
