"""kit.coalesce: calls to one peer go at once when it is idle and together while a request to it is out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from borgusb.cells.kit.coalesce import Busy, Coalescer, ShortReply


class Peer:
    """A peer whose requests the test releases one by one (`release`), each answered item * 10."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, list[int]]] = []
        self.gates: list[asyncio.Event] = []
        self.fail: BaseException | None = None
        self.short = False
        self.tasks: set[asyncio.Task[Any]] = set()

    async def send(self, peer: str, items: list[int]) -> list[int]:
        gate = asyncio.Event()
        self.requests.append((peer, list(items)))
        self.gates.append(gate)
        await gate.wait()
        if self.fail is not None:
            raise self.fail
        return [i * 10 for i in items][: len(items) - 1 if self.short else None]

    def spawn(self, coro: Awaitable[None]) -> object:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def release(self, k: int) -> None:
        """Answer request k once it is out."""
        await until(lambda: len(self.gates) > k)
        self.gates[k].set()


async def until(cond: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0)


def coalescer(peer: Peer, **kw: Any) -> Coalescer[int, int]:
    return Coalescer(peer.send, peer.spawn, **kw)


async def test_a_call_to_an_idle_peer_goes_at_once_alone() -> None:
    p = Peer()
    c = coalescer(p)
    call = asyncio.ensure_future(c.call("a", 1))
    await until(lambda: p.requests)
    assert p.requests == [("a", [1])]
    await p.release(0)
    assert await call == 10
    assert (c.requests, c.calls) == (1, 1)
    await until(lambda: not p.tasks)
    assert c.queues == {} and c.draining == set()  # nothing kept for a peer with nothing waiting


async def test_calls_made_while_a_request_is_out_go_together_next_in_order() -> None:
    p = Peer()
    c = coalescer(p)
    first = asyncio.ensure_future(c.call("a", 1))
    await until(lambda: p.requests)
    rest = [asyncio.ensure_future(c.call("a", i)) for i in (2, 3, 4)]
    other = asyncio.ensure_future(c.call("b", 5))  # another peer is not held up by a's request
    await until(lambda: len(p.requests) == 2)
    assert p.requests[1] == ("b", [5])
    await p.release(0)
    await p.release(1)
    await p.release(2)
    assert [await t for t in (first, *rest, other)] == [10, 20, 30, 40, 50]
    assert p.requests[2] == ("a", [2, 3, 4])
    assert (c.requests, c.calls) == (3, 5)


async def test_a_request_carries_at_most_max_items() -> None:
    p = Peer()
    c = coalescer(p, max_items=3)
    calls = [asyncio.ensure_future(c.call("a", i)) for i in range(8)]  # all queued before the first goes
    for k in range(3):
        await p.release(k)
    assert [await t for t in calls] == [i * 10 for i in range(8)]
    assert [items for _, items in p.requests] == [[0, 1, 2], [3, 4, 5], [6, 7]]


async def test_a_full_queue_refuses_the_next_call_at_once() -> None:
    p = Peer()
    c = coalescer(p, max_queued=2)
    first = asyncio.ensure_future(c.call("a", 0))
    await until(lambda: p.requests)
    waiting = [asyncio.ensure_future(c.call("a", i)) for i in (1, 2)]
    await asyncio.sleep(0)
    with pytest.raises(Busy):
        await c.call("a", 3)
    await p.release(0)
    await p.release(1)
    assert [await t for t in (first, *waiting)] == [0, 10, 20]


async def test_too_many_peers_waiting_are_refused() -> None:
    p = Peer()
    c = coalescer(p, max_peers=2)
    calls = [asyncio.ensure_future(c.call(name, 1)) for name in ("a", "b")]
    await until(lambda: len(p.requests) == 2)
    with pytest.raises(Busy):
        await c.call("c", 1)
    await p.release(0)
    await p.release(1)
    assert [await t for t in calls] == [10, 10]
    await until(lambda: not p.tasks)
    assert await asyncio.wait_for(asyncio.gather(c.call("c", 2), p.release(2)), 10) == [20, None]


async def test_a_failed_request_fails_each_of_its_calls_and_the_next_request_still_goes() -> None:
    p = Peer()
    c = coalescer(p)
    first = asyncio.ensure_future(c.call("a", 1))
    await until(lambda: p.requests)
    pair = [asyncio.ensure_future(c.call("a", i)) for i in (2, 3)]
    p.fail = ConnectionResetError("the peer went away")
    await p.release(0)
    with pytest.raises(ConnectionResetError):
        await first
    await p.release(1)
    for t in pair:
        with pytest.raises(ConnectionResetError):
            await t
    p.fail = None
    later = asyncio.ensure_future(c.call("a", 4))
    await p.release(2)
    assert await later == 40


async def test_a_reply_with_a_result_missing_fails_every_call_of_it() -> None:
    p = Peer()
    p.short = True
    c = coalescer(p)
    first = asyncio.ensure_future(c.call("a", 1))
    await until(lambda: p.requests)
    pair = [asyncio.ensure_future(c.call("a", i)) for i in (2, 3)]
    await p.release(0)
    await p.release(1)
    for t in (first, *pair):
        with pytest.raises(ShortReply):
            await t


async def test_a_call_given_up_is_not_sent() -> None:
    p = Peer()
    c = coalescer(p)
    first = asyncio.ensure_future(c.call("a", 1))
    await until(lambda: p.requests)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(c.call("a", 2), 0.01)  # its caller stops waiting before it is sent
    kept = asyncio.ensure_future(c.call("a", 3))
    await p.release(0)
    await p.release(1)
    assert (await first, await kept) == (10, 30)
    assert p.requests[1] == ("a", [3])


async def test_a_stopped_sender_fails_the_calls_still_waiting() -> None:
    p = Peer()
    c = coalescer(p)
    first = asyncio.ensure_future(c.call("a", 1))
    await until(lambda: p.requests)
    waiting = asyncio.ensure_future(c.call("a", 2))
    await asyncio.sleep(0)
    for task in list(p.tasks):  # as a cell's stop cancels its background tasks
        task.cancel()
    for t in (first, waiting):
        with pytest.raises(ConnectionAbortedError):
            await t
    assert c.queues == {}
