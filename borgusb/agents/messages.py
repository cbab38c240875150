"""Signed messages between agents.

An agent signs with its own key (domain-separated, as every BorgUSB document: `borgusb.signed`),
so a message that names a sender proves it, and a relaying cell cannot change a word. (An agent's
claims of useful work are the ledger's documents: `borgusb.ledger.taskwork`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..keys import SigningKey
from ..signed import SignedDocError, check_doc, sign_doc

MESSAGE_DOMAIN = "borgusb.agent.message"
MAX_TEXT = 2000
MAX_AGE_MS = 5 * 60_000

AgentDocError = SignedDocError  # a message that does not check out; ``reason`` is one word


@dataclass(frozen=True, slots=True)
class AgentMessage:
    sender: str
    from_name: str
    to_name: str
    text: str
    ts: int
    doc: dict[str, Any]


def sign_message(key: SigningKey, from_name: str, to_name: str, text: str, ts: int) -> dict[str, Any]:
    body = {"from": key.public_key_hex, "from_name": from_name, "to_name": to_name, "text": text[:MAX_TEXT], "ts": ts}
    return sign_doc(key, body, MESSAGE_DOMAIN)


def check_message(doc: Any, now_ms: int) -> AgentMessage:
    """A received message: its fields, its sender's signature, and its age (a replay months later is refused)."""
    d = check_doc(doc, {"from", "from_name", "to_name", "text", "ts"}, "from", MESSAGE_DOMAIN)
    names_ok = all(isinstance(d[f], str) and 0 < len(d[f]) <= 64 for f in ("from_name", "to_name"))
    if not names_ok or not isinstance(d["text"], str) or len(d["text"]) > MAX_TEXT or not isinstance(d["ts"], int):
        raise AgentDocError("malformed", f"names are 1 to 64 characters, text at most {MAX_TEXT}, ts an integer")
    if abs(now_ms - d["ts"]) > MAX_AGE_MS:
        raise AgentDocError("stale", "the message is more than 5 minutes from this node's time")
    return AgentMessage(d["from"], d["from_name"], d["to_name"], d["text"], d["ts"], d)
