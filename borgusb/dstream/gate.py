"""The holder's fair gate: many receivers share one holder's disk without one starving another."""

from __future__ import annotations

import asyncio

from ..shard.window import FairQueue


class FairGate:
    """At most `slots` shard reads at once; waiting streams are served round-robin, so a
    stream that asks for many shards at once does not delay one that asks for few."""

    def __init__(self, slots: int = 8) -> None:
        self.free = slots
        self.queue: FairQueue[asyncio.Future[None]] = FairQueue()

    async def acquire(self, stream: str) -> None:
        if self.free > 0 and not len(self.queue):
            self.free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.push(stream, fut)
        try:
            await fut
        except asyncio.CancelledError:
            if not self.queue.remove(stream, fut):
                self.release()  # it had been granted: pass the slot on
            raise

    def release(self) -> None:
        while True:
            fut = self.queue.pop()
            if fut is None:
                self.free += 1
                return
            if not fut.done():
                fut.set_result(None)
                return
