"""The receiver's memory: shard buffers reused across shards and streams."""

from __future__ import annotations

import threading


class Buffers:
    """Shard buffers reused across shards and streams: a fresh 1 MiB buffer per shard costs
    more in page faults than the copy it receives. Bounded; a lost buffer is only garbage."""

    def __init__(self, keep_bytes: int = 64 << 20) -> None:
        self.free: dict[int, list[bytearray]] = {}
        self.kept = 0
        self.keep_bytes = keep_bytes
        self.lock = threading.Lock()

    def take(self, n: int) -> bytearray:
        with self.lock:
            free = self.free.get(n)
            if free:
                self.kept -= n
                return free.pop()
        return bytearray(n)

    def give(self, buf: bytearray) -> None:
        with self.lock:
            if self.kept + len(buf) <= self.keep_bytes:
                self.free.setdefault(len(buf), []).append(buf)
                self.kept += len(buf)


BUFFERS = Buffers()
