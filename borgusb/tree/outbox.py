"""A member's own broadcasts, kept until the root's flood brings them back.

A broadcast travels up to the root in one message and the root floods it down
to every member, its sender included, so the sender knows its broadcast went
out when it is delivered to itself. Until then it may have been lost: sent to
a root that had just died, or held while the member had no root (joining,
healing). The outbox re-sends such a broadcast every ``retry_ms`` under the
same id (receivers dedupe by id, so nobody gets it twice) and gives up after
``give_up_ms``: the cell kit's broadcasts carry their origin's signed
envelope, which receivers refuse once it is older than the 30 s freshness
window, so a later retry could not be delivered anyway.

Bounded: at most ``capacity`` broadcasts wait; past that the oldest is given up.
Sans-I/O like the tree model that owns it: time comes in as arguments.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

__all__ = ["BroadcastOutbox", "Due"]

DEFAULT_CAPACITY = 64


class _Waiting(NamedTuple):
    payload: dict[str, Any]
    first_ms: int
    last_ms: int


class Due(NamedTuple):
    """What a tick found: broadcasts to send again, and how many were given up."""

    resend: list[tuple[str, dict[str, Any]]]
    given_up: int


class BroadcastOutbox:
    """Broadcasts this member sent that have not come back to it yet."""

    __slots__ = ("retry_ms", "give_up_ms", "capacity", "_waiting")

    def __init__(self, retry_ms: int, give_up_ms: int, capacity: int = DEFAULT_CAPACITY) -> None:
        if retry_ms <= 0 or give_up_ms < retry_ms or capacity < 1:
            raise ValueError("an outbox needs 0 < retry_ms <= give_up_ms and room for one broadcast")
        self.retry_ms = retry_ms
        self.give_up_ms = give_up_ms
        self.capacity = capacity
        self._waiting: OrderedDict[str, _Waiting] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, bid: str, payload: dict[str, Any], now_ms: int) -> int:
        """Keep a broadcast just sent (or held); returns how many older ones were given up for room."""
        given_up = 0
        while len(self._waiting) >= self.capacity:
            self._waiting.popitem(last=False)
            given_up += 1
        self._waiting[bid] = _Waiting(payload, now_ms, now_ms)
        return given_up

    def done(self, bid: str) -> None:
        """The broadcast came back in the root's flood: it went out."""
        self._waiting.pop(bid, None)

    def due(self, now_ms: int) -> Due:
        """Broadcasts not back ``retry_ms`` after their last sending (marked sent again now);
        those past ``give_up_ms`` are dropped instead."""
        resend: list[tuple[str, dict[str, Any]]] = []
        given_up = 0
        for bid, w in list(self._waiting.items()):
            if now_ms - w.first_ms >= self.give_up_ms:
                del self._waiting[bid]
                given_up += 1
            elif now_ms - w.last_ms >= self.retry_ms:
                self._waiting[bid] = w._replace(last_ms=now_ms)
                resend.append((bid, w.payload))
        return Due(resend, given_up)
