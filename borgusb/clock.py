"""Network time as an injected clock.

Every timestamp BorgUSB signs or checks is network time in integer
milliseconds. The host clock is never changed: network time is the local
clock plus an offset that the crono cell maintains. Code takes a `Clock`
so tests and the simulator can supply their own time.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Current network time in milliseconds since the Unix epoch."""


class SystemClock:
    """The host's wall clock, unadjusted."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class OffsetClock:
    """Local wall clock plus an offset, never going backwards.

    The crono cell sets the offset; `now_ms` is monotonic even when a new
    offset is smaller than the last one, because a signed timestamp that
    went backwards would make later messages look older than earlier ones.
    """

    def __init__(self, offset_ms: int = 0) -> None:
        self._offset_ms = offset_ms
        self._last = 0
        self._lock = threading.Lock()

    @property
    def offset_ms(self) -> int:
        return self._offset_ms

    def set_offset(self, offset_ms: int) -> None:
        self._offset_ms = offset_ms

    def now_ms(self) -> int:
        with self._lock:
            now = time.time_ns() // 1_000_000 + self._offset_ms
            if now < self._last:
                now = self._last
            self._last = now
            return now


class ManualClock:
    """A clock that moves only when told: for tests and the simulator."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.ms = start_ms

    def now_ms(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms
