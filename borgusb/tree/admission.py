"""New members admitted per address: what a root lets one address add to its tree.

Keys are free, so one machine can ask to join as a thousand members; each one the root
places takes a position, a parent's attention and, when it never answers, a repair. The
root therefore admits new members (not members it already places: a resync is free) at
most `burst` at once and then one per `every_ms` from each address, the address the
joiner gives, where the tree will reach it. A joiner that gives an address not its own is
placed where it cannot answer and is repaired away like any dead member. Pure: time is
passed in, in ms; at most `max_addresses` addresses are kept (least recently used dropped,
which only ever errs toward admitting).
"""

from __future__ import annotations

from collections import OrderedDict


class JoinAdmission:
    """A token bucket of new members per address, in integer ms."""

    def __init__(self, burst: int, every_ms: int, max_addresses: int = 10_000) -> None:
        if burst < 1 or every_ms < 1:
            raise ValueError("burst and every_ms are at least 1")
        self.burst = burst
        self.every_ms = every_ms
        self.max_addresses = max_addresses
        self._spent: OrderedDict[str, int] = OrderedDict()  # address -> ms at which its bucket is full again

    def __len__(self) -> int:
        return len(self._spent)

    def allow(self, address: str, now_ms: int) -> bool:
        """Spend one admission of address at now_ms, if it has one left."""
        full_at = max(now_ms, self._spent.pop(address, now_ms))
        allowed = full_at + self.every_ms <= now_ms + self.burst * self.every_ms
        self._spent[address] = full_at + self.every_ms if allowed else full_at
        while len(self._spent) > self.max_addresses:
            self._spent.popitem(last=False)
        return allowed
