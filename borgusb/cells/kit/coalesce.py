"""Calls to one peer carried several to a request while another to it is in flight.

Why: between holders most of a request's CPU is its envelope, its TLS records and its HTTP
exchange at both ends, not the work it carries (bench_ledger: a confirmed transfer is nine
holder-to-holder requests). A call that finds a request to the same peer already
out waits for it to come back and then goes with every call queued meanwhile, one request
for all of them. A call to an idle peer goes at once: no timer and no added wait (Nagle's
rule without the delayed acknowledgement), so a quiet network answers as quickly as before
and a busy one sends fewer, larger requests.

Bounded: at most `max_items` calls to a request and `max_queued` calls waiting per peer (one
more is refused with `Busy` at once, never queued), at most `max_peers` peers with calls
waiting. A failed request fails each of its calls with the same error; a call whose caller
gave up (cancelled, timed out) is dropped from the queue unsent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Send = Callable[[str, list[T]], Awaitable[list[R]]]


class Busy(Exception):
    """Too many calls already wait for this peer (or too many peers have calls waiting)."""


class ShortReply(Exception):
    """The peer answered a different number of results than the request carried calls."""


class Coalescer(Generic[T, R]):
    """`call(peer, item)`: the item's result from `send(peer, items)`, which carries several."""

    def __init__(
        self,
        send: Send[T, R],
        spawn: Callable[[Awaitable[None]], object],
        *,
        max_items: int = 32,
        max_queued: int = 256,
        max_peers: int = 1024,
    ) -> None:
        self.send, self.spawn = send, spawn
        self.max_items, self.max_queued, self.max_peers = max_items, max_queued, max_peers
        self.queues: dict[str, deque[tuple[T, asyncio.Future[R]]]] = {}
        self.draining: set[str] = set()  # peers with a request out (their queue's one sender runs)
        self.requests = 0  # requests sent
        self.calls = 0  # calls they carried

    async def call(self, peer: str, item: T) -> R:
        queue = self.queues.get(peer)
        if queue is None:
            if len(self.queues) >= self.max_peers:
                raise Busy(f"calls wait for {len(self.queues)} peers already")
            queue = self.queues[peer] = deque()
        if len(queue) >= self.max_queued:
            raise Busy(f"{len(queue)} calls wait for this peer already")
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        queue.append((item, fut))
        if peer not in self.draining:
            self.draining.add(peer)
            self.spawn(self._drain(peer))
        return await fut

    async def _drain(self, peer: str) -> None:
        """Send what waits for `peer`, a request at a time, until nothing does."""
        try:
            while batch := self._take(peer):
                self.requests += 1
                self.calls += len(batch)
                try:
                    results = await self.send(peer, [item for item, _ in batch])
                except asyncio.CancelledError:  # the cell stops: no call waits for a request never sent
                    stopped = ConnectionAbortedError("the sender stopped")
                    _fail(batch, stopped)
                    _fail(list(self.queues.get(peer, ())), stopped)
                    self.queues.pop(peer, None)
                    raise
                except Exception as exc:  # every call of the request learns why it failed
                    _fail(batch, exc)
                    continue
                if len(results) != len(batch):
                    _fail(batch, ShortReply(f"{len(results)} results for {len(batch)} calls"))
                    continue
                for (_, fut), result in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
        finally:
            self.draining.discard(peer)
            if not self.queues.get(peer):
                self.queues.pop(peer, None)

    def _take(self, peer: str) -> list[tuple[T, asyncio.Future[R]]]:
        queue = self.queues.get(peer)
        batch: list[tuple[T, asyncio.Future[R]]] = []
        while queue and len(batch) < self.max_items:
            item, fut = queue.popleft()
            if not fut.done():  # its caller gave up: not sent
                batch.append((item, fut))
        return batch


def _fail(batch: Sequence[tuple[object, asyncio.Future[R]]], exc: BaseException) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_exception(exc)
