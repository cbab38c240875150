"""The echo cell's conduit page (the page hook: the conduit calls `setup` once)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from borgusb.conduit.web import add_page, render, require_unlocked


async def page(request: web.Request) -> web.Response:
    require_unlocked(request)
    return render(request, "echo.html")


def setup(app: web.Application) -> None:
    add_page(app, "/echo", "Echo", "echo", Path(__file__).parent / "templates")
    app.router.add_get("/echo", page)
