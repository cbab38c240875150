"""Broadcasts a parent delivered lately, kept for a child placed under it since.

A member that moves (it fills a hole, or takes the root's place) or rejoins
changes parent in the middle of the tree's traffic. A flood that passed its new
parent just before the parent knew it, or reached it from its old parent just
after it had left, is refused as coming from the wrong position, and the
flood never passes that way again: measured in a churn soak, one broadcast sent
while the root's restart was healed missed the two members moving to replace
it. So a parent keeps what it delivered in the last ``window_ms`` and, once a
child under a new parent asks (its first heartbeat there), names those ids;
the child asks for the ones it has not seen and the parent sends them down as
the flood would have.

Bounded: at most ``capacity`` broadcasts and none older than ``window_ms``
(inside the cell kit's 30 s freshness of a broadcast's signed origin, so a
broadcast caught up is still accepted). Sans-I/O: time comes in as arguments.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

__all__ = ["RecentBroadcasts"]


class _Kept(NamedTuple):
    payload: dict[str, Any]
    hops: int
    at_ms: int


class RecentBroadcasts:
    """The last broadcasts this member delivered, oldest first."""

    __slots__ = ("capacity", "window_ms", "_kept")

    def __init__(self, capacity: int, window_ms: int) -> None:
        if capacity < 1 or window_ms <= 0:
            raise ValueError("recent broadcasts need room for one and a window")
        self.capacity = capacity
        self.window_ms = window_ms
        self._kept: OrderedDict[str, _Kept] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def add(self, bid: str, payload: dict[str, Any], hops: int, now_ms: int) -> None:
        """Keep one just delivered (the oldest leaves when full)."""
        self._kept[bid] = _Kept(payload, hops, now_ms)
        self._kept.move_to_end(bid)
        while len(self._kept) > self.capacity:
            self._kept.popitem(last=False)

    def _expire(self, now_ms: int) -> None:
        while self._kept:
            bid, kept = next(iter(self._kept.items()))
            if now_ms - kept.at_ms < self.window_ms:
                return
            del self._kept[bid]

    def ids(self, now_ms: int) -> list[str]:
        """The ids still inside the window, oldest first."""
        self._expire(now_ms)
        return list(self._kept)

    def get(self, bids: list[str], now_ms: int) -> list[tuple[str, dict[str, Any], int]]:
        """Those of ``bids`` still kept: (id, payload, hops as delivered here)."""
        self._expire(now_ms)
        found = ((bid, self._kept.get(bid)) for bid in bids)
        return [(bid, k.payload, k.hops) for bid, k in found if k is not None]
