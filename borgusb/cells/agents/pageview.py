"""What the Chat and Agents pages show of an agent cell's replies: shaped, bounded and checked, without I/O.

The reply envelope is signed by the agent cell's node, which is all that vouches for an agent's name,
owner, memory and inbox. Prompt versions and claims carry the agent's own signature: only those
that verify against the agent's key (and, for versions, link into one chain) are shown; the others
are dropped and counted, so a cell cannot slip a prompt into an agent's history.
"""

from __future__ import annotations

from typing import Any

from ...agents.prompts import PromptError, check_version
from ...ledger.taskwork import check_claim
from ...ledger.units import format_shells
from ...signed import SignedDocError

MAX_AGENTS = 64
MAX_ITEMS = 32  # working memory items, inbox messages, claims, steps, reports per list
TEXT = 2000  # characters of any one text shown


def _text(value: Any, limit: int = TEXT) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _list(value: Any, limit: int = MAX_ITEMS) -> list[Any]:
    return value[-limit:] if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def versions(agent_key: str, docs: Any) -> tuple[list[dict[str, Any]], int]:
    """(the prompt versions signed by the agent, each following the one before, newest last; dropped)."""
    shown: list[dict[str, Any]] = []
    items = _list(docs, 64)
    prev_id = ""
    for doc in items:
        try:
            v = check_version(doc)
        except PromptError:
            continue
        if v.agent != agent_key or (shown and (v.prev != prev_id or v.n != shown[-1]["n"] + 1)):
            continue
        shown.append({"n": v.n, "id": v.id, "why": v.why[:200], "text": v.text, "ts": v.ts})
        prev_id = v.id
    return shown, len(items) - len(shown)


CLAIM_STATES = {
    "confirming": "waiting for another node's monitor to confirm",
    "claiming": "confirmed; the reserve's holders are checking it",
    "paid": "paid",
    "paid_to_another": "confirmed, but another monitor's claim of it was paid first",
    "unconfirmed": "no other node's monitor confirmed it",
    "refused": "refused by the reserve's holders",
    "unpaid": "not paid",
    "skipped": "not claimed (too many claims in progress)",
}


def claims(agent_key: str, docs: Any) -> tuple[list[dict[str, Any]], int, int]:
    """(claims for useful work signed by the agent, with their payment state; dropped; units earned)."""
    shown: list[dict[str, Any]] = []
    items = _list(docs)
    earned = 0
    for entry in items:
        try:
            c = check_claim(entry.get("claim") if isinstance(entry, dict) else None)
        except SignedDocError:
            continue
        if c["agent"] != agent_key:
            continue
        state = entry.get("state")
        paid = _int(entry.get("amount")) if state == "paid" else 0
        earned += paid
        shown.append(
            {
                "kind": _text(c["kind"], 64),
                "evidence": _text(c["evidence"]),
                "ts": c["ts"],
                "state": CLAIM_STATES.get(state, "unknown") if isinstance(state, str) else "unknown",
                "reason": _text(entry.get("reason"), 200),
                "witnesses": _int(entry.get("witnesses")),
                "paid": format_shells(paid) if paid else "",
            }
        )
    return shown, len(items) - len(shown), earned


def agent(doc: Any, me: str) -> dict[str, Any] | None:
    """One agent as the Agents page lists it (`me`: the person's key, to tell their agents from others')."""
    if not isinstance(doc, dict) or not isinstance(doc.get("pubkey"), str):
        return None
    key = doc["pubkey"]
    prompt = doc["prompt"] if isinstance(doc.get("prompt"), dict) else {}
    current, _ = versions(key, [prompt])
    shown_claims, dropped, earned = claims(key, doc.get("claims"))
    owner = _text(doc.get("owner"), 66)
    return {
        "name": _text(doc.get("name"), 32),
        "pubkey": key[:66],
        "owner": owner,
        "mine": owner == me,
        "specialty": _text(doc.get("specialty"), 32),
        "busy": doc.get("busy") is True,
        "prompt": current[0]["text"] if current else "",
        "prompt_n": current[0]["n"] if current else 0,
        "versions": _int(doc.get("versions")),
        "working_memory": [
            {"rank": _int(i.get("rank")), "text": _text(i.get("text"), 400)}
            for i in _list(doc.get("working_memory"))
            if isinstance(i, dict)
        ],
        "inbox": [
            {"from_name": _text(m.get("from_name"), 64), "from": _text(m.get("from"), 66), "text": _text(m.get("text"))}
            for m in _list(doc.get("inbox"))
            if isinstance(m, dict)
        ],
        "claims": shown_claims,
        "claims_dropped": dropped,
        "earned": format_shells(earned),
    }


def agents(reply: Any, me: str) -> dict[str, Any]:
    doc = reply if isinstance(reply, dict) else {}
    shown = [a for a in (agent(d, me) for d in _list(doc.get("agents"), MAX_AGENTS)) if a is not None]
    colony = [_text(n, 32) for n in _list(doc.get("colony"), 256)]
    return {"agents": shown, "colony": colony}


def steps(docs: Any) -> list[dict[str, Any]]:
    """A session's steps: the action's name, what came of it and why."""
    shown = []
    for s in _list(docs):
        if not isinstance(s, dict):
            continue
        action = s["action"] if isinstance(s.get("action"), dict) else {}
        shown.append(
            {
                "n": _int(s.get("n")),
                "action": _text(action.get("action"), 32) or "(not an action)",
                "outcome": _text(s.get("outcome"), 16),
                "reason": _text(s.get("reason"), 64),
                "result": _text(s.get("result"), 600),
            }
        )
    return shown


def session(reply: Any) -> dict[str, Any]:
    doc = reply if isinstance(reply, dict) else {}
    return {
        "ended": _text(doc.get("ended"), 32),
        "replies": [_text(r) for r in _list(doc.get("replies"), 8)],
        "steps": steps(doc.get("steps")),
    }


def answer(reply: Any) -> dict[str, Any]:
    """A chat answer: which agent gave it, the text, the memories it used (id and text)."""
    doc = reply if isinstance(reply, dict) else {}
    memories = [
        {"id": _text(m.get("id"), 64), "text": _text(m.get("text"), 400)}
        for m in _list(doc.get("memories"), 5)
        if isinstance(m, dict)
    ]
    return {
        "agent": _text(doc.get("agent"), 32),
        "pubkey": _text(doc.get("pubkey"), 66),
        "answer": _text(doc.get("answer")),
        "memories": memories,
        "steps": len(_list(doc.get("steps"))),
    }


def reports(reply: Any) -> dict[str, Any]:
    """The System Monitor's reports (newest last) and how many claims the cell's agents hold."""
    doc = reply if isinstance(reply, dict) else {}
    shown = [
        {"kind": _text(r.get("kind"), 32), "text": _text(r.get("text"), 400), "ts": _int(r.get("ts"))}
        for r in _list(doc.get("reports"))
        if isinstance(r, dict)
    ]
    return {"reports": shown, "claims": len(_list(doc.get("claims"), 10_000))}


def thinking_left(usage: dict[str, Any]) -> str:
    """The free thinking time left today, as the Thinking time card says it: "25 min 30 s of 30 min"."""

    def mins(ms: int) -> str:
        s = ms // 1000
        return f"{s // 60} min{f' {s % 60} s' if s % 60 else ''}" if s >= 60 else f"{s} s"

    return f"{mins(_int(usage.get('free_left')))} of {mins(_int(usage.get('free')))} free thinking left today"
