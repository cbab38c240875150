"""The Chat and Agents pages of the conduit (the agent cell's page hook).

Every request to the agent cell is signed by the unlocked wallet's key, so the person owns the
agents they create here, and only they run their sessions or change their prompts. The pages'
script (static/agents.js) POSTs under ``/api/chat/`` and ``/api/agents/``; what comes back is
shaped and checked by `pageview` (prompt versions and claims only when the agent's own signature
verifies). A chat answer or a session is the model thinking for seconds to minutes on a small
machine: those calls get a client that waits `THINK_S` (`Network.use`'s ``reply_s``), every other
call the usual few seconds, and a think that outlasts it is refused as ``too_slow``, never sent to a
second node (it would think the same question twice).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

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
from ...net.peer import PeerRejected
from ..peerpays import creditweb
from . import pageview
from .client import AgentClient

CELL = "borgAgentCell"
HERE = Path(__file__).parent
MAX_BODY = 16 * 1024  # a question (500 characters), a task (1000) or a prompt (4000), as JSON
TIMEOUT_S = 10.0
MONITOR = "monitor"  # the node's System Monitor agent, which the cell never picks for a question
THINK_S = 240.0  # a session of 8 model calls on a loaded 2-core node; the cell gives the brain 120 s a call

SELLER = creditweb.Seller("compute", "borgAgentCell", AgentClient, "agent cell", pageview.thinking_left)
EXPLAIN = {
    "rate_limited": "You asked too often: the agent cell takes at most 10 questions a minute; wait a minute.",
    "busy": "Every agent is thinking right now (or this one is in a session); ask again in a moment.",
    "brain_unreachable": "The agents' model (borgAgentBrain) did not answer; start one on the agent cell's node.",
    "no_agent": "No agent of that name, or none that takes questions, is on this node: create one on the Agents page.",
    "not_owner": "Only the person who created this agent may do that.",
    "name_taken": "That name is another person's agent here; choose another.",
    "quota": "You have as many agents on this node as it allows one person.",
    "full": "This agent cell hosts as many agents as it may.",
    "bad_prompt": "That prompt is not one an agent can take (1 to 4000 characters).",
    "malformed": "The agent cell did not take that.",
    "too_large": "That is too long.",
    "too_slow": f"The agent did not finish within {THINK_S:.0f} s (the node is loaded); try again later.",
    "payment_required": "Today's free thinking time on this node is used: pay ahead for more on the Agents page.",
    "again": "That payment is already credited.",
    "expired": "That confirmation is no longer open; review the payment again.",
    "insufficient_funds": "Insufficient funds: your balance is lower than the amount.",
    "bad_amount": "Bad amount.",
    "no_node": "No agent cell (borgAgentCell) answers right now: start one, or give the conduit its node with --node.",
}


def _guarded(handler: Handler) -> Handler:
    return guarded(handler, EXPLAIN)


async def _call(
    request: web.Request, call: Callable[[AgentClient], Awaitable[Any]], think: bool = False
) -> tuple[str, Any, str]:
    """(the person's key, reply, endpoint): `call` on the first agent cell that answers, signed by the wallet."""
    state = require_unlocked(request)
    assert state.wallet is not None
    key, network = state.wallet.key, request.app[NETWORK]

    async def run(peers: Any, ip: str) -> Any:
        if not think:
            return await call(AgentClient(peers, ip))
        try:
            return await asyncio.wait_for(call(AgentClient(peers, ip)), THINK_S)
        except TimeoutError:
            raise Refusal("too_slow", f"no answer from {ip} within {THINK_S:.0f} s") from None

    served = await network.use(CELL, run, key=key, timeout_s=TIMEOUT_S, reply_s=THINK_S + 15 if think else None)
    return key.public_key_hex, served.result, served.endpoint


def _name(form: dict[str, str]) -> str:
    name = form.get("name", "").strip()
    if not name:
        raise Refusal("malformed", "name an agent")
    return name


async def chat_page(request: web.Request) -> web.Response:
    state = require_unlocked(request)
    assert state.wallet is not None
    return render(request, "chat.html", public=state.wallet.public, think_s=int(THINK_S))


async def agents_page(request: web.Request) -> web.Response:
    state = require_unlocked(request)
    assert state.wallet is not None
    return render(request, "agents.html", public=state.wallet.public)


async def api_ask(request: web.Request) -> web.Response:
    question = (await json_fields(request, MAX_BODY)).get("question", "").strip()
    if not question:
        raise Refusal("malformed", "type a question")
    try:
        _, reply, ip = await _call(request, lambda c: c.chat(question), think=True)
    except PeerRejected as exc:
        # the cell says "busy" when no agent is free, also when none but its monitor exists: say which
        if exc.reason == "busy" and not await _chat_agents(request):
            raise Refusal("no_agent", "no agent here takes questions yet") from None
        raise
    return web.json_response({**pageview.answer(reply), "served_by": ip})


async def _chat_agents(request: web.Request) -> list[str]:
    """The names of the agents that may answer a question (all but the node's System Monitor)."""
    _, reply, _ = await _call(request, lambda c: c.agents())
    return [a["name"] for a in pageview.agents(reply, "")["agents"] if a["name"] != MONITOR]


async def api_reports(request: web.Request) -> web.Response:
    _, reply, ip = await _call(request, lambda c: c.reports())
    return web.json_response({**pageview.reports(reply), "served_by": ip})


async def api_list(request: web.Request) -> web.Response:
    me, reply, ip = await _call(request, lambda c: c.agents())
    return web.json_response({**pageview.agents(reply, me), "me": me, "served_by": ip})


async def api_create(request: web.Request) -> web.Response:
    form = await json_fields(request, MAX_BODY)
    name, prompt = _name(form), form.get("prompt", "")
    me, reply, ip = await _call(request, lambda c: c.create(name, prompt))
    return web.json_response({"agent": pageview.agent(reply, me), "served_by": ip})


async def api_session(request: web.Request) -> web.Response:
    form = await json_fields(request, MAX_BODY)
    name, task = _name(form), form.get("task", "").strip()
    _, reply, ip = await _call(request, lambda c: c.session(name, task), think=True)
    return web.json_response({**pageview.session(reply), "served_by": ip})


async def _versions(request: web.Request, name: str, call: Callable[[AgentClient], Awaitable[Any]]) -> web.Response:
    """The agent's prompt versions after `call`, checked against the agent's key (from the agent list)."""
    _, reply, ip = await _call(request, call)
    _, listed, _ = await _call(request, lambda c: c.agents())
    keys = [a.get("pubkey") for a in listed.get("agents", []) if isinstance(a, dict) and a.get("name") == name]
    shown, dropped = pageview.versions(keys[0] if keys and isinstance(keys[0], str) else "", reply.get("versions"))
    return web.json_response({"name": name, "versions": shown, "dropped": dropped, "served_by": ip})


async def api_versions(request: web.Request) -> web.Response:
    name = _name(await json_fields(request, MAX_BODY))
    return await _versions(request, name, lambda c: c.prompt(name))


async def api_propose(request: web.Request) -> web.Response:
    form = await json_fields(request, MAX_BODY)
    name, text = _name(form), form.get("prompt", "")
    if not text.strip():
        raise Refusal("bad_prompt", "write the new prompt")
    return await _versions(request, name, lambda c: c.prompt(name, propose=text))


async def api_rollback(request: web.Request) -> web.Response:
    form = await json_fields(request, MAX_BODY)
    name, n = _name(form), form.get("n", "")
    if not n.isdigit() or not 0 < int(n) < 1 << 31:
        raise Refusal("malformed", "restore names a version number")
    return await _versions(request, name, lambda c: c.prompt(name, rollback=int(n)))


def setup(app: web.Application) -> None:
    """The page hook: the conduit calls this once (SPEC.web)."""
    add_page(app, "/chat", "Chat", "chat", HERE / "templates")
    add_page(app, "/agents", "Agents", "agents")
    add_script(app, "agents.js", HERE / "static" / "agents.js")
    app.router.add_get("/chat", chat_page)
    app.router.add_get("/agents", agents_page)
    app.router.add_post("/api/chat/ask", _guarded(api_ask))
    app.router.add_post("/api/chat/reports", _guarded(api_reports))
    for path, handler in (
        ("list", api_list),
        ("create", api_create),
        ("session", api_session),
        ("versions", api_versions),
        ("propose", api_propose),
        ("rollback", api_rollback),
    ):
        app.router.add_post(f"/api/agents/{path}", _guarded(handler))
    creditweb.setup(app, SELLER, "/api/agents", EXPLAIN)
