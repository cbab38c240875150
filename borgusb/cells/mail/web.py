"""The Mail page of the conduit: inbox, read, compose and reply through `MailClient` (the mail cell's page hook).

The conduit holds the unlocked wallet, so this is where mail is sealed and opened: the page's
script (static/mail.js) POSTs under ``/api/mail/`` and gets opened messages back as JSON text;
the cells it reaches see ciphertext only. A refusal is answered as ``{"error", "reason"}`` with the
mail core's reason word. Attachments are listed; sending and saving them is the CLI's for now.

Compose takes a public key or an address (``D…``): the page asks ``/api/mail/resolve`` first, which
checks the directory's answers here (`MailClient.resolve`), and shows the key's fingerprint before
anything is sent; the send itself names the key. The first inbox listing of a conduit run publishes
the person's directory entry when the directory has none (as the CLI's first ``ls`` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from ...conduit.network import NoEndpoint
from ...conduit.web import (
    NETWORK,
    Handler,
    Refusal,
    add_page,
    add_script,
    guarded,
    json_fields,
    render,
    require_unlocked,
)
from ...keys import SigningKey, fingerprint
from ...ledger.accounts import is_account
from ...mail.directory import address_of, check_address, sign_entry
from ...mail.errors import MailError
from ...mail.inbox import merge, opened
from ...mail.message import Content, compose
from ...mail.request import sign_request
from ...net.peer import PeerError
from .client import MailClient

CELL = "mailTreeCell"
HERE = Path(__file__).parent
MAX_BODY = 64 * 1024  # a composed message: subject and body are bounded by the core (48 KiB)
TIMEOUT_S = 20.0
PUBLISHED = web.AppKey("mail_published", set[str])  # keys whose directory entry this conduit run has seen

EXPLAIN = {
    "rate_limited": "The recipient's holders take no more mail from you right now; try again in a minute.",
    "inbox_full": "The recipient's inbox is full.",
    "too_large": "The message is too large.",
    "malformed": "That is not a message this network takes (is the recipient a public key of 66 hex digits?).",
    "no_holder": "No holder of that inbox answered.",
    "not_holder": "The mail nodes are changing; try again.",
    "no_node": "No mailTreeCell node answers right now; start one (or check the conduit's --node).",
    "bad_address": "That is neither a public key (66 hex digits) nor a Dogecoin address (D…).",
    "not_found": "Nobody has published a directory entry for that address; ask them for their key.",
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
    if key.public_key_hex not in request.app[PUBLISHED]:
        await _publish_if_missing(request)
    return web.json_response({"messages": opened(key, entries), "dropped": dropped, "served_by": ip})


async def _publish_if_missing(request: web.Request) -> None:
    """Make the person reachable by address: publish their entry (no name) when the directory has none.
    Best effort, once per conduit run; a failure is tried again at the next listing."""

    async def check(client: MailClient, key: SigningKey, now: int) -> None:
        entry, _ = await client.resolve(address_of(key.public_key_hex))
        if entry is None:
            await client.publish(sign_entry(key, now).to_dict())
        request.app[PUBLISHED].add(key.public_key_hex)

    try:
        await _call(request, check)
    except (PeerError, MailError, Refusal, NoEndpoint):
        pass


async def api_resolve(request: web.Request) -> web.Response:
    """Who a compose field names: ``{"key", "fingerprint", "address", "name"}`` (a key names itself)."""
    to = (await json_fields(request, MAX_BODY, 200)).get("to", "").strip()
    if is_account(to.lower()):
        key = to.lower()
        return web.json_response(
            {"key": key, "fingerprint": fingerprint(bytes.fromhex(key)), "address": "", "name": ""}
        )
    addr = check_address(to)
    _, (entry, dropped), _ = await _call(request, lambda c, k, now: c.resolve(addr))
    if entry is None:
        raise Refusal("not_found", f"no directory entry for {addr}")
    return web.json_response(
        {
            "key": entry.key,
            "fingerprint": fingerprint(bytes.fromhex(entry.key)),
            "address": addr,
            "name": entry.name,
            "dropped": dropped,
        }
    )


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
    app.router.add_post("/api/mail/resolve", _guarded(api_resolve))
    app[PUBLISHED] = set()
