"""BorgHUIConduit: the person's browser talks to localhost, the conduit to the network.

Routes are declared in one place (`create_app`). Every request passes
`guard`, in this order:

* the Host header must name this conduit on a loopback address (DNS
  rebinding: a name the attacker controls that resolves to 127.0.0.1);
* a request that says it comes from another origin is refused;
* the request must carry the conduit's secret in the ``X-Borg-Conduit``
  header. The secret is random for each start and kept in memory; it reaches
  the browser once, in the fragment of the link the conduit prints (and the
  launcher opens), and the page script sends it with every request. Served
  HTML never holds it, and a page of another site cannot send the header
  (that needs CORS, which the conduit never grants). Without it, a GET of a
  page gets the static shell and a GET under ``/static/`` the asset (neither
  holds private data); anything else is refused with 401.

Every route that reaches the network (and signs with a key to do so) is a
POST under ``/api/``: no GET has an effect on the network. No cookies:
identity is the key the conduit holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
import segno
from aiohttp import web

from .. import dna, keystore
from ..cells import dna_of, specs
from ..cells.spec import load
from ..clock import Clock, SystemClock
from ..identity import MnemonicError
from ..net.peer import PeerRejected
from . import bootedstick, onboarding, stickstatus
from .network import Network, NoEndpoint
from .state import ConduitState
from .web import (
    BACKGROUND_HEADER,
    BOOTED_STICK,
    HOME_CELL,
    NAV,
    NETWORK,
    PORT,
    SECRET_HEADER,
    STATE,
    TEMPLATE_DIRS,
    TEMPLATES,
    NavEntry,
    PageError,
    page_headers,
    render,
    require_unlocked,
)

log = logging.getLogger("borgusb.conduit")

HERE = Path(__file__).parent
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
SHELL = web.AppKey("shell", bytes)  # static/shell.html: what a browser navigating to any page gets
NEED_LINK = (
    "This conduit answers only the browser tab opened with the link it printed when it started "
    "(http://127.0.0.1:{port}/#k=…). Open that link; if the conduit was restarted, open the new one."
)
HTTP_ERRORS = {404: "There is no such page.", 405: "That address does not take this kind of request."}


def _allowed_hosts(port: int) -> set[str]:
    return {f"{h}:{port}" for h in LOOPBACK_HOSTS} | ({*LOOPBACK_HOSTS} if port == 80 else set())


def _shell(request: web.Request) -> web.Response:
    return web.Response(body=request.app[SHELL], content_type="text/html", charset="utf-8", headers=page_headers())


def _refused(request: web.Request) -> web.Response:
    """401 without the secret: what to do, and nothing else."""
    message = NEED_LINK.format(port=request.app[PORT])
    headers = {"WWW-Authenticate": 'Borg-Conduit realm="BorgUSB conduit"', "Cache-Control": "no-store"}
    if request.path.startswith("/api/"):
        return web.json_response({"error": message}, status=401, headers=headers)
    return web.Response(status=401, text=message, headers=headers)


@web.middleware
async def guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    port = request.app[PORT]
    if request.headers.get("Host", "") not in _allowed_hosts(port):
        return web.Response(status=421, text="This conduit answers only at http://127.0.0.1 or http://localhost.")
    origin = request.headers.get("Origin")
    if origin is not None and origin not in {f"http://{h}" for h in _allowed_hosts(port)}:
        return web.Response(status=403, text="Cross-site request refused.")
    state = request.app[STATE]
    given = request.headers.get(SECRET_HEADER)
    if given is None and request.method in ("GET", "HEAD") and not request.path.startswith("/api/"):
        if request.path.startswith("/static/"):
            return await handler(request)  # the same files for everyone
        if request.path.startswith("/media/"):
            return await handler(request)  # a <video> cannot send the secret: its address is a capability
        return _shell(request)  # a navigation: the page script then fetches the page, with the secret
    if not state.is_secret(given):
        return _refused(request)
    if state.idle_expired():
        state.lock()
        await request.app[NETWORK].close()
    if request.headers.get(BACKGROUND_HEADER) != "1":
        state.touch()  # only the person's own requests count as activity
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects: the page script follows them
        return _error(request, HTTP_ERRORS.get(exc.status) or exc.text or exc.reason, exc.status)
    except PageError as exc:
        return _error(request, str(exc), exc.status)
    except (keystore.KeystoreError, MnemonicError, ValueError) as exc:
        return _error(request, str(exc), 400)
    except NoEndpoint as exc:
        return _error(request, str(exc), 503)
    except PeerRejected as exc:
        return _error(
            request,
            f"The network refused ({exc.reason}): {exc.detail}" if exc.detail else f"The network refused: {exc.reason}",
            502,
        )
    except Exception:  # never a stack trace on the page
        log.exception("conduit handler failed")
        return _error(request, "Something went wrong inside the conduit; the details are in its log.", 500)


def _error(request: web.Request, message: str, status: int) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"error": message}, status=status)
    return render(request, "error.html", status=status, message=message)


# ---------------------------------------------------------------- pages


async def index(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.unlocked:
        raise web.HTTPFound("/home")
    raise web.HTTPFound("/unlock" if state.has_keystore else "/welcome")


async def lock(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.wallet is not None:
        await request.app[NETWORK].forget_key(state.wallet.key)
    state.lock()
    raise web.HTTPFound("/unlock")


def qr_svg(text: str) -> str:
    return segno.make(text, error="m").svg_inline(scale=4, dark="#1b1f24", light="#ffffff")


async def home(request: web.Request) -> web.Response:
    state = require_unlocked(request)
    assert state.wallet is not None
    public = state.wallet.public
    return render(
        request,
        "home.html",
        public=public,
        qr=qr_svg(f"dogecoin:{public.doge_address}"),
        home_cell=request.app[HOME_CELL],
    )


# ---------------------------------------------------------------- JSON API (for the page script)
# What reaches the network is a POST: a GET (a link, an <img>, a prefetch) never makes the conduit send.


async def api_tree(request: web.Request) -> web.Response:
    network = request.app[NETWORK]
    cell = request.query.get("cell", request.app[HOME_CELL])
    if cell not in dna.CELLS:
        raise PageError(f"unknown cell type {cell}")
    entry = await network.refresh(cell)
    node: dict[str, Any] | None = None
    served = None
    if entry.endpoints:
        try:
            served = await network.call(cell, "cell.status", {})
            node = served.result
        except NoEndpoint:
            node = None
    return web.json_response(
        {
            "cell": cell,
            "tree": entry.tree,
            "k": entry.k,
            "members": entry.members,
            "me": node.get("node") if isinstance(node, dict) else None,
            "status": node.get("status") if isinstance(node, dict) else None,
            "served_by": served.endpoint if served else None,
            "error": entry.error,
        }
    )


async def api_cells(request: web.Request) -> web.Response:
    network = request.app[NETWORK]
    await network.refresh_all()
    cells = []
    for name, entry in network.cells.items():
        d = dna_of(name)
        cells.append(
            {
                "name": name,
                "summary": d.summary,
                "ports": d.to_dict(),
                "endpoints": entry.endpoints[:8],
                "more": max(0, len(entry.endpoints) - 8),  # the page shows "…" for the ones cut
                "size": len(entry.members),
                "source": entry.source,
                "error": None if entry.endpoints else entry.error,
            }
        )
    return web.json_response({"cells": cells})


async def api_session(request: web.Request) -> web.Response:
    state = request.app[STATE]
    status = request.app[BOOTED_STICK]
    stick = stickstatus.read(state.keystore_path, status) if status else None
    return web.json_response(
        {
            "unlocked": state.unlocked,
            "idle_lock_s": state.idle_lock_s,
            "identity": state.wallet.public.to_dict() if state.wallet else None,
            "stick": {"state": stick.state, "words": stick.words} if stick else None,
        }
    )


# ---------------------------------------------------------------- assembly


async def _autolock(app: web.Application) -> Any:
    """Forget the keys once nobody acted for the idle time: looked at twice a second (a comparison), so
    they are gone at most half a second late, also when the idle time is changed while it waits."""

    async def loop() -> None:
        state = app[STATE]
        while True:
            await asyncio.sleep(min(0.5, max(0.05, state.idle_lock_s / 4)))
            if state.idle_expired():
                if state.wallet is not None:
                    await app[NETWORK].forget_key(state.wallet.key)
                state.lock()

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    app[STATE].lock()
    await app[NETWORK].close()


def create_app(
    state: ConduitState,
    seeds: list[str],
    *,
    port: int = 8088,
    clock: Clock | None = None,
    home_cell: str = "peerTreeNet",
    booted_stick: Path | None = None,
) -> web.Application:
    """The conduit's app; `booted_stick` is the write-back's status file when it runs on a booted stick."""
    app = web.Application(middlewares=[guard], client_max_size=1 << 30)
    app[STATE] = state
    app[NETWORK] = Network(seeds, clock or SystemClock())
    app[PORT] = port
    app[HOME_CELL] = home_cell
    app[BOOTED_STICK] = booted_stick
    app[SHELL] = (HERE / "static" / "shell.html").read_bytes()
    app[NAV] = [NavEntry("/home", "Home", "home")]
    app[TEMPLATE_DIRS] = [HERE / "templates"]
    app.router.add_get("/", index)
    onboarding.add_routes(app)  # welcome, create, restore, unlock
    app.router.add_post("/lock", lock)
    app.router.add_get("/home", home)
    app.router.add_post("/api/tree", api_tree)
    app.router.add_post("/api/cells", api_cells)
    app.router.add_get("/api/session", api_session)
    if booted_stick:
        bootedstick.add_routes(app)
    for spec in specs().values():  # each cell's pages, through the page hook (borgusb.conduit.web)
        if spec.web:
            load(spec.web)(app)
    app[TEMPLATES] = jinja2.Environment(loader=jinja2.FileSystemLoader(app[TEMPLATE_DIRS]), autoescape=True)
    app.router.add_static("/static", HERE / "static")
    app.cleanup_ctx.append(_autolock)
    return app
