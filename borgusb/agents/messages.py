"""Signed documents of the agent colony: messages between agents and claims for useful work.

An agent signs with its own key (domain-separated, as every BorgUSB document), so a message that
names a sender proves it, and a relaying cell cannot change a word. A claim is what an agent says
it did (say, an anomaly it reported) with the evidence; the ledger can pay it later once another
agent or a person has confirmed it by signing its id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..exchange.order import signing_bytes
from ..keys import SigningKey, is_public_key_hex, verify_signature

MESSAGE_DOMAIN = "borgusb.agent.message"
CLAIM_DOMAIN = "borgusb.agent.claim"
MAX_TEXT = 2000
MAX_AGE_MS = 5 * 60_000


class AgentDocError(ValueError):
    """A message or claim that does not check out; ``reason`` is one word."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


def _sign(key: SigningKey, body: dict[str, Any], domain: str) -> dict[str, Any]:
    return {**body, "sig": key.sign(signing_bytes(body, domain)).hex()}


def _check(doc: Any, fields: set[str], signer_field: str, domain: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.keys() != fields | {"sig"}:
        raise AgentDocError("malformed", f"the document has exactly {sorted(fields | {'sig'})}")
    signer, sig = doc[signer_field], doc["sig"]
    if not is_public_key_hex(signer) or not isinstance(sig, str):
        raise AgentDocError("malformed", f"{signer_field} is a public key and sig is hex")
    try:
        raw = bytes.fromhex(sig)
    except ValueError:
        raise AgentDocError("malformed", "sig is hex") from None
    if not verify_signature(signer, raw, signing_bytes(doc, domain)):
        raise AgentDocError("bad_signature", f"not signed by its {signer_field}")
    return doc


def doc_id(doc: dict[str, Any], domain: str) -> str:
    return hashlib.sha256(signing_bytes(doc, domain)).hexdigest()


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
    return _sign(key, body, MESSAGE_DOMAIN)


def check_message(doc: Any, now_ms: int) -> AgentMessage:
    """A received message: its fields, its sender's signature, and its age (a replay months later is refused)."""
    d = _check(doc, {"from", "from_name", "to_name", "text", "ts"}, "from", MESSAGE_DOMAIN)
    names_ok = all(isinstance(d[f], str) and 0 < len(d[f]) <= 64 for f in ("from_name", "to_name"))
    if not names_ok or not isinstance(d["text"], str) or len(d["text"]) > MAX_TEXT or not isinstance(d["ts"], int):
        raise AgentDocError("malformed", f"names are 1 to 64 characters, text at most {MAX_TEXT}, ts an integer")
    if abs(now_ms - d["ts"]) > MAX_AGE_MS:
        raise AgentDocError("stale", "the message is more than 5 minutes from this node's time")
    return AgentMessage(d["from"], d["from_name"], d["to_name"], d["text"], d["ts"], d)


def sign_claim(key: SigningKey, kind: str, evidence: str, ts: int) -> dict[str, Any]:
    """A claim for useful work, to be paid from the reserve once confirmed."""
    return _sign(
        key, {"agent": key.public_key_hex, "kind": kind, "evidence": evidence[:MAX_TEXT], "ts": ts}, CLAIM_DOMAIN
    )


def check_claim(doc: Any) -> dict[str, Any]:
    d = _check(doc, {"agent", "kind", "evidence", "ts"}, "agent", CLAIM_DOMAIN)
    if not isinstance(d["kind"], str) or not isinstance(d["evidence"], str) or not isinstance(d["ts"], int):
        raise AgentDocError("malformed", "kind and evidence are text, ts an integer")
    return d
