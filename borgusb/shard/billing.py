"""What a holder charges for the copies it keeps: the ``storage`` price, metered; no I/O.

A holder charges each owner for the MiB-hours of that owner's shards it holds (its own copies; the
other holders charge for theirs), beyond the owner's free share here (`free_share`). Time is the
network clock's; `StorageMeter.tick` turns the bytes held since the last tick into whole MiB-hours
and carries the remainder, so frequent ticks lose nothing to rounding. The charges go to the cell's
prepaid book (`cells/peerpays/prepaid.py`), which takes the free share first.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..ledger.rules import FREE_QUOTA_BYTES, HOUR_MS, MIB

MIB_HOUR = MIB * HOUR_MS  # byte-milliseconds in one MiB-hour
SLACK = 2  # a holder's free share is twice its expected part of the quota: the lottery is uneven


def free_share(r: int, members: int, quota: int = FREE_QUOTA_BYTES) -> int:
    """Bytes of one owner this holder keeps free: its expected part of the owner's network-wide free
    `quota` (R copies spread over `members` holders), with `SLACK`, at most the quota itself."""
    if r < 1 or members < 1:
        raise ValueError("r and members are at least 1")
    return min(quota, -(-SLACK * quota * r // members))


def free_per_day(free_bytes: int) -> int:
    """The free share as the book counts it: MiB-hours of holding it for a whole day."""
    return free_bytes * 24 // MIB


class StorageMeter:
    """Byte-milliseconds each owner's copies were held here, charged in whole MiB-hours."""

    def __init__(self) -> None:
        self.last_ms: int | None = None
        self.carry: dict[str, int] = {}  # owner -> byte-ms held and not yet charged (< one MiB-hour)

    def tick(self, now_ms: int, held: Mapping[str, int], max_step_ms: int | None = None) -> dict[str, int]:
        """MiB-hours to charge each owner for the time since the last tick, `held` being the bytes
        of each owner held now (the first tick only starts the clock; a clock that went back
        charges nothing, one that jumped ahead at most `max_step_ms`)."""
        last, self.last_ms = self.last_ms, now_ms if self.last_ms is None else max(now_ms, self.last_ms)
        if last is None:
            return {}
        dt = max(0, now_ms - last)
        if max_step_ms is not None:
            dt = min(dt, max_step_ms)
        out: dict[str, int] = {}
        for owner, n in held.items():
            acc = self.carry.get(owner, 0) + n * dt
            whole, self.carry[owner] = divmod(acc, MIB_HOUR)
            if whole:
                out[owner] = whole
        for owner in [o for o in self.carry if o not in held]:  # nothing held any more: nothing carried
            del self.carry[owner]
        return out
