"""Payloads shaped like borgAgentCell's and borgAgentBrain's real ones, for
tests/fuzz/test_receptor_fuzz.py's RECEPTORS and BROADCASTS.

Agent messages signed now by a fuzz key (fresh for the whole run), and the same with one member
changed after signing; think requests whose token budget stays tiny, so a valid one costs the
real model a token or two, not a paragraph."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from borgusb.agents.actions import ACTIONS
from borgusb.agents.messages import sign_message
from borgusb.clock import SystemClock
from borgusb.ledger.taskwork import sign_claim

from .mail_shapes import changed
from .peerpays_shapes import CERTS
from .strategies import JSON_SMALL, fixed_key, safe_ints, shaped_dict, texts

SENDER = fixed_key("owner")
NOW = SystemClock().now_ms()
NAMES = st.sampled_from(["alice", "bob", "monitor", "a" * 40, "Alice", "", "x/../y"])
ACTION_NAMES = st.lists(st.sampled_from([*ACTIONS, "rm_rf", ""]), min_size=0, max_size=3)
MESSAGES = [
    sign_message(SENDER, "carol", "alice", "look at the shard repair code", NOW),
    sign_message(SENDER, "carol", "bob", "x" * 1999, NOW),
    sign_message(SENDER, "carol", "alice", "old", NOW - 20 * 60_000),  # stale
]
SUBJECT = "cell_gone|peerMemoryCell|" + fixed_key("victim").public_key_hex
CLAIMS = [
    sign_claim(SENDER, "anomaly_report", SUBJECT, "cell_gone: peerMemoryCell on 127.0.0.4", NOW),
    sign_claim(SENDER, "anomaly_report", SUBJECT, "x" * 2000, NOW - 3_600_000),
]
CHAT = [{"role": "system", "content": "You are an agent."}, {"role": "user", "content": "Task: say hi"}]

AGENT_RECEPTORS: dict[str, st.SearchStrategy[Any]] = {
    "agent.create": shaped_dict({"name": NAMES, "prompt": (texts, JSON_SMALL)}),
    "agent.list": shaped_dict({}),
    "agent.session": shaped_dict(
        {"name": NAMES, "task": (texts, JSON_SMALL), "agenda": (st.lists(ACTION_NAMES, max_size=3), JSON_SMALL)}
    ),
    "agent.chat": shaped_dict({"question": (texts, JSON_SMALL)}),
    "agent.prompt": shaped_dict({"name": NAMES, "propose": (texts, JSON_SMALL), "rollback": (safe_ints, JSON_SMALL)}),
    "agent.reports": shaped_dict({}),
    "agent.usage": shaped_dict({}),
    "agent.credit": shaped_dict({"cert": CERTS}),
    "agent.message": shaped_dict({"m": (st.sampled_from(MESSAGES), changed(MESSAGES))}),
    "agent.confirm": shaped_dict({"claim": (st.sampled_from(CLAIMS), changed(CLAIMS))}),
    "brain.think": shaped_dict(
        {
            "messages": (st.just(CHAT), st.lists(JSON_SMALL, max_size=3)),
            "allowed": (st.sampled_from([["end_session"], ["reply_person"]]), ACTION_NAMES),
            "agents": (st.lists(NAMES, max_size=3), JSON_SMALL),
            "max_tokens": (st.sampled_from([1, 2]), st.sampled_from([0, -1, 513, 2**40, "1", True])),
        }
    ),
}
AGENT_BROADCASTS: dict[str, st.SearchStrategy[Any]] = {
    "agentmsg": shaped_dict({"m": (st.sampled_from(MESSAGES), changed(MESSAGES))}).map(
        lambda d: {**d, "k": "agentmsg"}
    ),
    "agenthello": shaped_dict({"names": (st.lists(NAMES, max_size=4), JSON_SMALL)}).map(
        lambda d: {**d, "k": "agenthello"}
    ),
}
