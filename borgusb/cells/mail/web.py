"""The Mail page of the conduit: inbox, read, compose and reply through `MailClient` (the mail cell's page hook).

The conduit holds the unlocked wallet, so this is where mail is sealed and opened: the page's
script (static/mail.js) POSTs under ``/api/mail/`` and gets opened messages back as JSON text;
the cells it reaches see ciphertext only. A refusal is answered as ``{"error", "reason"}`` with the
mail core's reason word. Attachments are listed; sending and saving them is the CLI's for now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from ...conduit.web import (
    NETWORK,
    Handler,
    add_page,
    add_script,
    guarded,
    json_fields,
    render,
    require_unlocked,
)
from ...keys import SigningKey
from ...mail.errors import MailError
from ...mail.inbox import merge, opened
from ...mail.message import Content, compose
from ...mail.request import sign_request
from .client import MailClient

CELL = "mailTreeCell"
HERE = Path(__file__).parent
MAX_BODY = 64 * 1024  # a composed message: subject and body are bounded by the core (48 KiB)
TIMEOUT_S = 20.0

EXPLAIN = {
    "rate_limited": "The recipient's holders take no more mail from you right now; try again in a minute.",
    "inbox_full": "The recipient's inbox is full.",
    "too_large": "The message is too large.",
    "malformed": "That is not a message this network takes (is the recipient a public key of 66 hex digits?).",
    "no_holder": "No holder of that inbox answered.",
    "not_holder": "The mail nodes are changing; try again.",
    "no_node": "No mailTreeCell node answers right now; start one (or check the conduit's --node).",
}


def _guarded(handler: Handler) -> Handler:
    return guarded(handler, EXPLAIN, (MailError,))


async def _call(request: web.Request, call: Any) -> tuple[SigningKey, Any, str]:
    """(key, reply, endpoint): `call(client, key, now_ms)` on the first mail cell that answers."""
    state = require_unlocked(request)
    assert state.wallet is not None
    key, network = state.wallet.key, request.app[NETWORK]
    served = await network.use(
        CELL, lambda peers, ip: call(MailClient(peers, ip), key, network.clock.now_ms()), key=key, timeout_s=TIMEOUT_S
    )
    return key, served.result, served.endpoint


async def page(request: web.Request) -> web.Response:
    state = require_unlocked(request)
    assert state.wallet is not None
    return render(request, "mail.html", public=state.wallet.public)


async def api_inbox(request: web.Request) -> web.Response:
    key, reply, ip = await _call(request, lambda c, k, now: c.ask(sign_request(k, "list", [], now)))
    replies = reply.get("replies") if isinstance(reply.get("replies"), list) else []
    entries, dropped = merge(key.public_key_hex, replies)
    return web.json_response({"messages": opened(key, entries), "dropped": dropped, "served_by": ip})


async def _ids_op(request: web.Request, op: str) -> web.Response:
    mid = (await json_fields(request, MAX_BODY)).get("id", "")
    await _call(request, lambda c, k, now: c.ask(sign_request(k, op, [mid], now)))
    return web.json_response({"id": mid, "done": op})


async def api_read(request: web.Request) -> web.Response:
    return await _ids_op(request, "read")


async def api_rm(request: web.Request) -> web.Response:
    return await _ids_op(request, "rm")


async def api_send(request: web.Request) -> web.Response:
    form = await json_fields(request, MAX_BODY)
    to, re_id = form.get("to", "").strip().lower(), form.get("re", "")
    content = Content(form.get("subject", ""), form.get("body", ""))

    async def send(client: MailClient, key: SigningKey, now: int) -> dict[str, Any]:
        return await client.post(compose(key, to, content, now, re_id).to_dict())

    _, done, ip = await _call(request, send)
    return web.json_response(
        {"id": done.get("id"), "stored": done.get("stored"), "holders": done.get("holders"), "served_by": ip}
    )


def setup(app: web.Application) -> None:
    """The page hook: the conduit calls this once (SPEC.web)."""
    add_page(app, "/mail", "Mail", "mail", HERE / "templates")
    add_script(app, "mail.js", HERE / "static" / "mail.js")
    app.router.add_get("/mail", page)
    app.router.add_post("/api/mail/inbox", _guarded(api_inbox))
    app.router.add_post("/api/mail/read", _guarded(api_read))
    app.router.add_post("/api/mail/rm", _guarded(api_rm))
    app.router.add_post("/api/mail/send", _guarded(api_send))
