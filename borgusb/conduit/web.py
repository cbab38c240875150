"""What every conduit page shares: the app's keys, rendering, errors and the page hook.

Pages of the conduit's core (wallet, home) and pages that cells bring (a
cell's SPEC names ``web="module:setup"``; the conduit calls
``setup(app)`` once) use only this module, so no page module imports
another and the core is not edited when a cell adds a page. A cell's
`setup` calls `add_page` for its navigation entry and template folder and
adds its routes; every route passes the conduit's `guard` first.

A page is fetched by the page script with the conduit's secret (`SECRET_HEADER`)
and shown inside the static shell (`static/shell.html`); a browser that
navigates to a page's address gets only the shell. So a page may hold the
person's data, and its handler must not reach the network: what reaches the
network is a POST under ``/api/`` that the page script makes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from ..net.peer import PeerRejected
from . import stickstatus
from .network import Network, NoEndpoint
from .state import ConduitState

STATE = web.AppKey("state", ConduitState)
NETWORK = web.AppKey("network", Network)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
PORT = web.AppKey("port", int)
HOME_CELL = web.AppKey("home_cell", str)
# on a booted stick (borgusb.conduit.bootedstick, the desktop image's kiosk): the write-back's status file
BOOTED_STICK: web.AppKey[Path | None] = web.AppKey("booted_stick")

SECRET_HEADER = "X-Borg-Conduit"  # every request of the page script carries the conduit's secret in it
# set by the page script on its own timed refreshes: they are not the person's activity, so they never
# hold off the idle lock (a Home page left open used to keep the keys in memory for ever)
BACKGROUND_HEADER = "X-Borg-Background"


@dataclass(frozen=True)
class NavEntry:
    path: str
    label: str
    key: str  # the template name's stem that marks the entry as the current page


NAV = web.AppKey("nav", list[NavEntry])
TEMPLATE_DIRS = web.AppKey("template_dirs", list[Path])

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'"
)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PageError(Exception):
    """A problem to show to the person on the page they came from."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Refusal(Exception):
    """What a page's API call refuses before the network is asked; `reason` is the word the page shows."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def refused(reason: str, detail: str, status: int, explain: Mapping[str, str] | None = None) -> web.Response:
    """A refusal as the page scripts read it: ``{"error", "reason", "detail"}``. With `explain` (reason ->
    a sentence for people) the error leads with that sentence; without it, with the detail."""
    if explain is None:
        message = f"{detail} ({reason})"
    else:
        message = f"{explain.get(reason, 'The network refused.')} ({reason}){': ' + detail if detail else ''}"
    return web.json_response({"error": message, "reason": reason, "detail": detail}, status=status)


def guarded(
    handler: Handler,
    explain: Mapping[str, str] | None = None,
    errors: tuple[type[Exception], ...] = (),
    peer_silent: str = "",
) -> Handler:
    """An API handler whose refusals become `refused` JSON, whoever raised them: a `Refusal` or one of
    `errors` (each with a ``reason``) as 400, a node's refusal as 409 (503 when it was the node's fault,
    `peer_silent` standing in for a refusal without words), no reachable node as 503."""

    caught: tuple[type[Exception], ...] = (Refusal, *errors)

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except caught as exc:
            return refused(getattr(exc, "reason", "refused"), str(exc), 400, explain)
        except PeerRejected as exc:
            return refused(exc.reason, exc.detail or peer_silent, 503 if exc.status >= 500 else 409, explain)
        except NoEndpoint as exc:
            return refused("no_node", str(exc), 503, explain)

    return run


async def json_fields(request: web.Request, limit: int, max_text: int | None = None) -> dict[str, str]:
    """The small JSON object a page's script sends: at most `limit` bytes read, string members only
    (each cut at `max_text` characters when given); else `Refusal` ``too_large`` or ``malformed``."""
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise Refusal("too_large", "the request is too large")
    try:
        doc = json.loads(raw or b"{}")
    except ValueError:
        raise Refusal("malformed", "the request is not JSON") from None
    if not isinstance(doc, dict):
        raise Refusal("malformed", "the request is not an object")
    return {k: v[:max_text] for k, v in doc.items() if isinstance(k, str) and isinstance(v, str)}


def add_page(app: web.Application, path: str, label: str, key: str, templates: Path | None = None) -> None:
    """A cell's page: its entry in the navigation bar and (optionally) its template folder."""
    app[NAV].append(NavEntry(path, label, key))
    if templates is not None:
        app[TEMPLATE_DIRS].append(templates)


def add_script(app: web.Application, name: str, path: Path) -> None:
    """A cell page's own script, served as ``/static/cells/NAME`` (code, the same for everyone).

    The page names it in a ``data-script`` attribute; the page script loads it once, and it starts
    its page through ``Borg.onPage`` (no inline script: the CSP forbids them)."""
    body = path.read_bytes()

    async def serve(request: web.Request) -> web.Response:
        headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        return web.Response(body=body, content_type="text/javascript", charset="utf-8", headers=headers)

    app.router.add_get(f"/static/cells/{name}", serve)


def page_headers() -> dict[str, str]:
    """What every HTML answer carries: not stored, not framed, not sniffed, no foreign or inline script."""
    return {
        "Cache-Control": "no-store",
        "Vary": SECRET_HEADER,  # the same address is the shell without the secret and the page with it
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": CSP,
    }


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    """A page (a template extending base.html), for the page script to show inside the shell."""
    state = request.app[STATE]
    template = request.app[TEMPLATES].get_template(name)
    context.setdefault("unlocked", state.unlocked)
    context.setdefault("nav", name.split(".")[0])
    context.setdefault("nav_entries", request.app[NAV])
    context.setdefault("identity", state.wallet.public if state.wallet else None)
    stick_file = request.app.get(BOOTED_STICK)
    context.setdefault("stick", stickstatus.read(state.keystore_path, stick_file) if stick_file else None)
    return web.Response(
        text=template.render(**context),
        content_type="text/html",
        status=status,
        headers=page_headers(),
    )


def require_unlocked(request: web.Request) -> ConduitState:
    """The conduit's state, or a redirect to where the person can unlock (or create) a wallet.

    Under ``/api/`` the refusal is an error the page script shows, not a redirect to a page."""
    state = request.app[STATE]
    if not state.unlocked:
        if request.path.startswith("/api/"):
            raise PageError("The wallet is locked: unlock it again.", 403)
        raise web.HTTPFound("/unlock" if state.has_keystore else "/welcome")
    return state
