"""Relay grants: a node's signed word that one gateway may relay for it.

A node behind NAT is reached through its gateway (see nat.py). A gateway's
hello used to list bare node keys, so any address could claim to relay for
any key and swallow posts meant for it. Now the hello carries, for each node
it relays for, a grant that node signed: "gateway G may relay for me, until
T". A sender takes the relay path to node N through the gateway answering
as G only when N's grant names G and is still valid. The grant is sent with
each `net.attach` (renewed every few seconds), so it expires soon after the
node stops attaching.

Pure functions, no I/O: the same check runs in `PeerClient.route`, in the
gateway's attach door, and in tests.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .. import canonical
from ..keys import SigningKey
from ..signed import is_sig_hex, signed_by

DOMAIN = b"borgusb relay grant v1\n"  # a grant's signature can never be taken for any other signed thing
TTL_MS = 60_000
_PUBKEY = re.compile(r"0[23][0-9a-f]{64}")
_FIELDS = frozenset(("node", "gateway", "until", "sig"))


def grant(key: SigningKey, gateway: str, now_ms: int) -> dict[str, Any]:
    """The grant `key`'s node gives `gateway` (a node key) to relay for it for `TTL_MS`."""
    doc: dict[str, Any] = {"node": key.public_key_hex, "gateway": gateway, "until": now_ms + TTL_MS}
    doc["sig"] = key.sign(DOMAIN + canonical.dumps(doc)).hex()
    return doc


def granted_node(doc: Any, gateway: str, now_ms: int) -> str | None:
    """The node key that granted `gateway` relaying, if `doc` is a valid, current grant; else None."""
    if not isinstance(doc, dict) or doc.keys() != _FIELDS:
        return None
    node, named, until, sig = doc["node"], doc["gateway"], doc["until"], doc["sig"]
    if not (isinstance(node, str) and _PUBKEY.fullmatch(node) and named == gateway):
        return None
    if not isinstance(until, int) or isinstance(until, bool) or not now_ms <= until <= now_ms + 2 * TTL_MS:
        return None  # expired, or dated so far ahead that it would outlive a detach
    if not is_sig_hex(sig):
        return None
    return node if _signed(node, named, until, sig) else None


@lru_cache(maxsize=4096)
def _signed(node: str, gateway: str, until: int, sig: str) -> bool:
    """Whether `node` signed this grant. Cached: a gateway's hello shows the same grants to every
    post relayed through it until they are renewed, and the expiry is checked outside the cache."""
    body = {"node": node, "gateway": gateway, "until": until}
    return signed_by(node, sig, DOMAIN + canonical.dumps(body))


def relays_for(grants: Any, gateway: str, node: str, now_ms: int) -> bool:
    """Whether a hello's list of grants holds a valid one from `node` naming `gateway`."""
    if not isinstance(grants, list):
        return False
    return any(isinstance(g, dict) and g.get("node") == node and granted_node(g, gateway, now_ms) for g in grants)
