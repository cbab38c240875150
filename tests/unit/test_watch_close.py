"""The Watch page's cleanup ends the read receipt hand-ins it cancels: none is left pending (a
pending task at the loop's end is "Task was destroyed but it is pending"), and one that holds off
its cancellation delays the cleanup by `CLOSE_WAIT_S` at most."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from borgusb.cells.fstream import web as watch


def page_app(*tasks: asyncio.Task[None]) -> web.Application:
    app = web.Application()
    app[watch.READ_TASKS] = set(tasks)
    app[watch.HTTP] = []
    return app


async def test_cancelled_hand_ins_have_ended_when_the_cleanup_returns() -> None:
    ended: list[str] = []

    async def hand_in() -> None:
        try:
            await asyncio.Event().wait()  # a receipt still on its way
        finally:
            await asyncio.sleep(0)  # its own cleanup takes a turn of the loop
            ended.append("ended")

    tasks = [asyncio.ensure_future(hand_in()) for _ in range(3)]
    await asyncio.sleep(0)  # under way
    await watch._close(page_app(*tasks))
    assert all(t.cancelled() for t in tasks) and ended == ["ended"] * 3


async def test_a_hand_in_that_holds_off_its_cancellation_delays_the_cleanup_boundedly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch, "CLOSE_WAIT_S", 0.1)
    let_go = asyncio.Event()

    async def stubborn() -> None:
        while not let_go.is_set():
            try:
                await let_go.wait()
            except asyncio.CancelledError:
                pass

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(watch._close(page_app(task)))
    done, _ = await asyncio.wait([closing], timeout=10)
    let_go.set()
    await asyncio.gather(task, closing)
    assert closing in done
