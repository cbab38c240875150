"""The DStream window and the holder's fair queue, without I/O.

`Window` decides which shard to ask which holder for next. The receiver
keeps at most `window` requests in flight, at most `per_holder` on one
holder, spreading them over the holders that have each shard (least loaded
first). A shard whose bytes were bad is asked of another holder; a holder
that cannot be reached is dropped for every shard; a shard nobody has left is
`stuck`. Shards complete out of order; `done` is what is on disk.

`FairQueue` is the holder's side: requests of several streams wait in one
queue per stream and are served round-robin, so a stream with a wide window
cannot starve a narrow one.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Window:
    def __init__(
        self,
        holders: Sequence[Sequence[str]],
        *,
        done: Iterable[int] = (),
        window: int = 16,
        per_holder: int = 8,
    ) -> None:
        self.holders = [list(h) for h in holders]  # per shard index: holder ids, in preference order
        self.window = max(1, window)
        self.per_holder = max(1, per_holder)
        self.done: set[int] = set(done)
        self.inflight: dict[int, str] = {}
        self.load: dict[str, int] = {}
        self.tried: dict[int, set[str]] = {}
        self.dead: set[str] = set()
        self.retries = 0
        self._todo: deque[int] = deque(i for i in range(len(self.holders)) if i not in self.done)

    @property
    def total(self) -> int:
        return len(self.holders)

    @property
    def finished(self) -> bool:
        return len(self.done) == self.total

    def _candidates(self, i: int) -> list[str]:
        tried = self.tried.get(i, set())
        return [h for h in self.holders[i] if h not in self.dead and h not in tried]

    def stuck(self) -> list[int]:
        """Shards no holder is left to ask for (and none in flight)."""
        return [i for i in self._todo if not self._candidates(i)]

    def next(self) -> list[tuple[int, str]]:
        """Requests to issue now: (shard index, holder)."""
        out: list[tuple[int, str]] = []
        skipped: list[int] = []  # stuck, or every holder of it busy: keep its place
        while self._todo and len(self.inflight) < self.window and len(skipped) <= self.window * 4:
            i = self._todo.popleft()
            if i in self.done or i in self.inflight:
                continue
            cands = [h for h in self._candidates(i) if self.load.get(h, 0) < self.per_holder]
            if not cands:
                skipped.append(i)
                continue
            rank = {h: n for n, h in enumerate(self.holders[i])}
            holder = min(cands, key=lambda h: (self.load.get(h, 0), rank[h] if i % 2 == 0 else -rank[h]))
            self.inflight[i] = holder
            self.load[holder] = self.load.get(holder, 0) + 1
            out.append((i, holder))
        self._todo.extendleft(reversed(skipped))
        return out

    def _release(self, i: int) -> str | None:
        holder = self.inflight.pop(i, None)
        if holder is not None:
            self.load[holder] -= 1
        return holder

    def ok(self, i: int) -> None:
        self._release(i)
        self.done.add(i)

    def bad(self, i: int, holder: str) -> None:
        """The holder sent wrong bytes (or refused): ask someone else for this shard."""
        self._release(i)
        self.tried.setdefault(i, set()).add(holder)
        self.retries += 1
        self._todo.appendleft(i)

    def unreachable(self, i: int, holder: str) -> None:
        """The holder is gone: drop it for every shard."""
        self.dead.add(holder)
        self.bad(i, holder)


class FairQueue(Generic[T]):
    """Round-robin over streams; FIFO within a stream."""

    def __init__(self) -> None:
        self._queues: OrderedDict[Hashable, deque[T]] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def push(self, stream: Hashable, item: T) -> None:
        self._queues.setdefault(stream, deque()).append(item)

    def pop(self) -> T | None:
        if not self._queues:
            return None
        stream, queue = next(iter(self._queues.items()))
        item = queue.popleft()
        del self._queues[stream]
        if queue:
            self._queues[stream] = queue  # to the back of the line
        return item

    def remove(self, stream: Hashable, item: T) -> bool:
        queue = self._queues.get(stream)
        if queue is None or item not in queue:
            return False
        queue.remove(item)
        if not queue:
            del self._queues[stream]
        return True
