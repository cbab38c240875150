"""Value types shared by the PeerTree state machine and whoever drives it.

``Member`` is a peer's identity plus address; the actions (``Send``,
``Deliver``, ``StatusChanged``) are what ``TreeNode`` asks its driver to do.
Wire messages are plain JSON dicts; the ``_field`` helpers below turn a bad
field into ``Malformed`` so a hostile or buggy peer can never crash a node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Malformed(Exception):
    """A wire message failed validation; the node drops and counts it."""


@dataclass(frozen=True, slots=True)
class Member:
    """A peer: ``node_id`` is its hex public key, ``ip``/``port`` its address."""

    node_id: str
    ip: str
    port: int
    _wire: dict[str, Any] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Built once: a member's record is copied into many messages (assigns, replicas).
        object.__setattr__(self, "_wire", {"pubkey": self.node_id, "ip": self.ip, "port": self.port})

    def to_dict(self) -> dict[str, Any]:
        """The address record as it travels on the wire (shared: do not mutate)."""
        return self._wire

    @classmethod
    def from_dict(cls, d: Any) -> Member:
        """Parse an address record (``pubkey`` or ``node_id`` key); raise Malformed."""
        if not isinstance(d, dict):
            raise Malformed("member record is not an object")
        nid = d.get("pubkey", d.get("node_id"))
        ip, port = d.get("ip"), d.get("port")
        if not isinstance(nid, str) or not nid or len(nid) > 256:
            raise Malformed("bad pubkey")
        if not isinstance(ip, str) or len(ip) > 256:
            raise Malformed("bad ip")
        if type(port) is not int or not 0 <= port <= 65535:
            raise Malformed("bad port")
        key = (nid, ip, port)
        member = _MEMBERS.get(key)
        if member is None:
            member = cls(nid, ip, port)
            if len(_MEMBERS) >= MAX_SHARED:  # a bound, not a policy: a flood of made-up records starts it over
                _MEMBERS.clear()
            _MEMBERS[key] = member
        return member


#: parsed records shared by value (a Member is immutable): the root and a parent are named in many
#: messages, and a node keeps them; one object each instead of a copy per message and per holder
_MEMBERS: dict[tuple[str, str, int], Member] = {}
MAX_SHARED = 4096  # ~2 MiB at most: a flood of made-up records costs a cell little


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``msg`` to ``to`` (the runtime signs and transports it)."""

    to: Member
    msg: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Deliver:
    """A broadcast payload for this node's application (exactly once per id)."""

    msg: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """The node's status moved to one of startup|joining|online|root|offline."""

    status: str


Action = Send | Deliver | StatusChanged


# -- field validation ----------------------------------------------------------


def f_int(msg: dict[str, Any], key: str, lo: int = 0, hi: int = 1 << 62) -> int:
    v = msg.get(key)
    if type(v) is not int or not lo <= v <= hi:
        raise Malformed(f"{key}: expected int in [{lo}, {hi}]")
    return v


def f_str(msg: dict[str, Any], key: str, maxlen: int = 256) -> str:
    v = msg.get(key)
    if not isinstance(v, str) or not v or len(v) > maxlen:
        raise Malformed(f"{key}: expected non-empty string")
    return v


def f_strs(msg: dict[str, Any], key: str, max_items: int, maxlen: int = 256) -> list[str]:
    """A list of at most ``max_items`` non-empty strings."""
    v = msg.get(key)
    if not isinstance(v, list) or len(v) > max_items:
        raise Malformed(f"{key}: expected a list of at most {max_items} strings")
    if not all(isinstance(x, str) and x and len(x) <= maxlen for x in v):
        raise Malformed(f"{key}: expected non-empty strings")
    return v


def f_member(msg: dict[str, Any], key: str) -> Member:
    return Member.from_dict(msg.get(key))


def f_opt_member(msg: dict[str, Any], key: str) -> Member | None:
    v = msg.get(key)
    return None if v is None else Member.from_dict(v)


def f_dict(msg: dict[str, Any], key: str) -> dict[str, Any]:
    v = msg.get(key)
    if not isinstance(v, dict):
        raise Malformed(f"{key}: expected object")
    return v


def f_slots(msg: dict[str, Any], key: str) -> dict[int, Member | None]:
    """A ``[[pos, member-or-null], ...]`` list (positions as ints, JSON-safe)."""
    v = msg.get(key)
    if not isinstance(v, list):
        raise Malformed(f"{key}: expected list")
    out: dict[int, Member | None] = {}
    for item in v:
        if not isinstance(item, list) or len(item) != 2:
            raise Malformed(f"{key}: expected [pos, member] pairs")
        pos, rec = item
        if type(pos) is not int or pos < 1:
            raise Malformed(f"{key}: bad position")
        out[pos] = None if rec is None else Member.from_dict(rec)
    return out


def slots(d: dict[int, Member | None]) -> list[list[Any]]:
    """Encode a position map for the wire (JSON objects cannot have int keys)."""
    return [[p, None if m is None else m.to_dict()] for p, m in d.items()]
