"""The conduit on a booted stick (``borgusb conduit --booted-stick``, the desktop image's kiosk): every page
says whether the wallet is saved on the stick (borgusb.conduit.stickstatus), and a power-off button turns the
machine off as pulling the stick does, after a write to the stick under way (borgusb.image.removed)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .web import PageError, render

POWEROFF_UNIT = "borgusb-poweroff.service"


async def power_off(request: web.Request) -> web.Response:
    proc = await asyncio.create_subprocess_exec(
        "systemctl", "start", "--no-block", POWEROFF_UNIT, stdout=asyncio.subprocess.DEVNULL
    )
    if await proc.wait() != 0:
        raise PageError("The machine could not be powered off from here: pull the stick instead.", 500)
    return render(request, "poweroff.html")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/power-off", power_off)
