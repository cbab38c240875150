"""`Cell.stop` stops its doors before it closes its PeerClient: a request in hand when stop() runs
finishes with the client still open, what it began in the background is cancelled, and no client
session is left behind."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from borgusb import dna
from borgusb.cells.kit import Cell, route
from borgusb.net.peer import PeerError

IP = "127.0.0.211"
DNA = dna.get("peerTreeNet")


class BusyCell(Cell):
    """A cell whose one handler waits to be let go, then uses the cell's client (fetching `url`)."""

    url = ""
    entered: asyncio.Event
    release: asyncio.Event
    late: asyncio.Task[Any] | None = None

    @route("mon", "GET", "/busy")
    async def _busy(self, request: web.Request) -> web.Response:
        self.entered.set()
        await self.release.wait()
        self.late = self._spawn(asyncio.Event().wait())  # a background task begun while the doors stop
        try:
            async with self.peers.session.get(self.url) as resp:
                return web.Response(text=f"used the client: {resp.status}")
        except PeerError as exc:
            return web.Response(text=f"refused: {exc}")


async def refuses(ip: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(ip, port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def test_a_request_in_hand_at_stop_finishes_with_the_client_open() -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    other = TestServer(app, host="127.0.0.1")
    await other.start_server()
    cell = BusyCell(DNA, IP)
    cell.url, cell.entered, cell.release = str(other.make_url("/")), asyncio.Event(), asyncio.Event()
    await cell.start()
    stopping: asyncio.Future[None] | None = None
    try:
        async with aiohttp.ClientSession() as http:
            request = asyncio.ensure_future(http.get(f"http://{IP}:{DNA.mon_port}/busy"))
            await asyncio.wait_for(cell.entered.wait(), 30)
            stopping = asyncio.ensure_future(cell.stop())
            # the doors are being stopped once the net door refuses connections: only then is the handler let go
            deadline = time.monotonic() + 30
            while not await refuses(IP, DNA.net_port):
                assert time.monotonic() < deadline, "the net door still takes connections"
                await asyncio.sleep(0.02)
            cell.release.set()
            resp = await asyncio.wait_for(request, 30)
            assert resp.status == 200 and await resp.text() == "used the client: 200"
            await asyncio.wait_for(stopping, 30)
        assert cell.peers._session is None  # closed after the handler used it; none reopened
        assert cell.late is not None and cell.late.cancelled()  # what the request began ended with the cell
    finally:
        cell.release.set()
        await (stopping if stopping is not None else cell.stop())
        cell.key.close()
        await other.close()
