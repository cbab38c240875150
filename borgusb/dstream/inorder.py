"""The receiver's memory and its second core: reused shard buffers, and the whole file's
SHA-256 computed in file order while the stream runs (so the end of a transfer does not wait
for a second pass over the file)."""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from .frames import StreamError


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


class InOrderHash:
    """The whole file's SHA-256, computed while the stream runs: shards are fed in file order
    by one background thread as they land, from the buffer they arrived in (up to `hold`
    buffers kept for shards that landed early) or else read back from ``FILE.part``."""

    def __init__(self, fd: int, bounds: list[tuple[int, int]], hold: int = 8) -> None:
        self.fd = fd
        self.bounds = bounds
        self.hold = hold
        self.sha = hashlib.sha256()
        self.next = 0
        self.held = 0
        self.ready: dict[int, tuple[memoryview | None, bytearray | None]] = {}
        self.cv = threading.Condition()
        self.busy = False
        self.error: BaseException | None = None
        self.reread = 0  # shards hashed from the file (resumed, or landed too early to be kept)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="dstream-sha")

    def on_disk(self, i: int) -> None:
        """Shard i is already right in FILE.part (resumed)."""
        with self.cv:
            self.ready[i] = (None, None)

    def offer(self, i: int, view: memoryview, buf: bytearray | None) -> None:
        """Shard i was checked and written; takes the buffer (given back to the pool once hashed)."""
        with self.cv:
            if i != self.next and self.held >= self.hold:
                self.ready[i] = (None, None)
                if buf is not None:
                    BUFFERS.give(buf)
            else:
                self.ready[i] = (view, buf)
                self.held += 1
            if self.busy:
                return
            self.busy = True
        self.pool.submit(self._drain)

    def _drain(self) -> None:
        scratch: bytearray | None = None
        try:
            while True:
                with self.cv:
                    item = self.ready.pop(self.next, None)
                    if item is None:
                        self.busy = False
                        self.cv.notify_all()
                        return
                    i = self.next
                    self.next += 1
                    if item[0] is not None:
                        self.held -= 1
                view, buf = item
                if view is None:
                    self.reread += 1
                    off, n = self.bounds[i]
                    if scratch is None or len(scratch) < n:
                        scratch = BUFFERS.take(max(n, self.bounds[0][1]))
                    got = os.preadv(self.fd, [memoryview(scratch)[:n]], off)
                    if got != n:
                        raise OSError(f"short read of shard #{i} from the .part file")
                    view = memoryview(scratch)[:n]
                self.sha.update(view)
                if buf is not None:
                    BUFFERS.give(buf)
        except BaseException as exc:  # reported by finish()
            with self.cv:
                self.error = exc
                self.busy = False
                self.cv.notify_all()
        finally:
            if scratch is not None:
                BUFFERS.give(scratch)

    def finish(self) -> str:
        """Wait for the background thread, hash what is left, return the hex digest."""
        with self.cv:
            while self.busy:
                self.cv.wait()
            self.busy = True
        self._drain()
        self.close()
        if self.error is not None:
            raise self.error
        if self.next != len(self.bounds):
            raise StreamError(f"only {self.next} of {len(self.bounds)} shards were hashed")
        return self.sha.hexdigest()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        with self.cv:
            for _view, buf in self.ready.values():
                if buf is not None:
                    BUFFERS.give(buf)
            self.ready.clear()
