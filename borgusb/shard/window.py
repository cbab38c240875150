"""The DStream window and the holder's fair queue, without I/O.

`Window` decides which shard to ask which holder for next, so that every holder
works at once on different shards and each holder's pipe stays full: at most
`per_holder` requests on one holder (its own bounded window), at most `window` in
all, each new request to the least loaded holder that has the shard. Near the end
a holder takes no more than its fair share of what is left (so the last shards do
not queue up behind one holder while the others stand idle), except shards no other
holder can give: held back, they would only leave that holder's pipe empty. Shards
complete out of order; `done` is what is on disk.

* A holder that refuses a shard (not held, its copy dropped as corrupt) is not
  asked for that shard again (`bad`).
* A holder that serves bytes that are not the shard, or a reply that does not
  verify, is *avoided*: asked for nothing more in this read (`bad(..., avoid=True)`).
* A holder that cannot be reached is dropped for every shard (`unreachable`).
* A *slow* holder's shards move: a shard in flight for longer than `late_after_ms`
  (a few times the usual time a shard takes, measured, and at least `late_ms`) is
  asked again of a holder that has room and nothing fresh to do (`hedged`), at most
  `MAX_ASKED` holders at once; the first checked copy wins. A holder that goes
  silent therefore delays nothing past that point, and a dead one fails fast.

A shard that no holder is left to ask for is `stuck`.

`FairQueue` is the holder's side: requests of several streams wait in one
queue per stream and are served round-robin, so a stream with a wide window
cannot starve a narrow one.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_WINDOW = 32  # requests in flight in all (each holds a shard buffer until it is written)
MAX_ASKED = 2  # holders asked for one shard at once (a late shard's second chance)


class Window:
    def __init__(
        self,
        holders: Sequence[Sequence[str]],
        *,
        done: Iterable[int] = (),
        window: int | None = None,
        per_holder: int = 16,
        late_ms: int = 250,
    ) -> None:
        self.holders = [list(h) for h in holders]  # per shard index: holder ids, in preference order
        self.per_holder = max(1, per_holder)
        distinct = len({h for hs in self.holders for h in hs})
        self.window = max(1, min(MAX_WINDOW, window or self.per_holder * max(1, distinct)))
        self.late_ms = late_ms
        self.done: set[int] = set(done)
        self.inflight: dict[int, dict[str, int]] = {}  # shard -> {holder: when asked (ms)}, oldest first
        self.load: dict[str, int] = {}
        self.requests = 0
        self.tried: dict[int, set[str]] = {}
        self.dead: set[str] = set()
        self.avoided: set[str] = set()
        self.retries = 0
        self.hedged = 0
        self.service_ms: float | None = None  # moving average: asked -> checked, per shard
        self._todo: deque[int] = deque(i for i in range(len(self.holders)) if i not in self.done)
        self._from: int | None = None  # prefer(): shards before it wait until those from it are done

    @property
    def total(self) -> int:
        return len(self.holders)

    @property
    def finished(self) -> bool:
        return len(self.done) == self.total

    @property
    def late_after_ms(self) -> float:
        return max(self.late_ms, 4 * (self.service_ms or 0))

    def _candidates(self, i: int) -> list[str]:
        tried = self.tried.get(i, set())
        return [h for h in self.holders[i] if h not in self.dead and h not in self.avoided and h not in tried]

    def _free(self, cands: list[str], cap: int, exclude: Iterable[str] = ()) -> list[str]:
        """Those of a shard's candidates with fewer than `cap` requests on them."""
        return [h for h in cands if self.load.get(h, 0) < cap and h not in exclude]

    def _share(self) -> int:
        """Requests one holder may have for fresh shards: its window, or near the end its fair
        share of the shards not done yet (`next` applies it only to shards another holder has)."""
        live = {h for hs in self.holders for h in hs} - self.dead - self.avoided
        left = self.total - len(self.done)
        return max(1, min(self.per_holder, -(-left // max(1, len(live)))))

    def prefer(self, first: int) -> None:
        """Ask for shards from `first` on, and for the ones before it only once those are all in (a
        media player seeked there: what it plays next is fetched first, and nothing else meanwhile)."""
        self._todo = deque(sorted(self._todo, key=lambda i: (i < first, i)))
        self._from = first if first > 0 else None

    def _holding(self) -> int | None:
        """The shard before which nothing is asked for yet (`prefer`), or None."""
        if self._from is not None and all(j in self.done for j in range(self._from, self.total)):
            self._from = None
        return self._from

    def stuck(self) -> list[int]:
        """Shards no holder is left to ask for (and none in flight)."""
        return [i for i in self._todo if i not in self.done and i not in self.inflight and not self._candidates(i)]

    def _issue(self, i: int, holder: str, now_ms: int) -> None:
        self.inflight.setdefault(i, {})[holder] = now_ms
        self.load[holder] = self.load.get(holder, 0) + 1
        self.requests += 1

    def next(self, now_ms: int = 0) -> list[tuple[int, str]]:
        """Requests to issue now: (shard index, holder)."""
        out: list[tuple[int, str]] = []
        skipped: list[int] = []  # stuck, or every holder of it busy: keep its place
        share = self._share()
        hold = self._holding()
        while self._todo and self.requests < self.window and len(skipped) <= self.window * 4:
            i = self._todo.popleft()
            if i in self.done or i in self.inflight:
                continue
            if hold is not None and i < hold:
                skipped.append(i)
                continue
            able = self._candidates(i)  # a shard only one holder can give waits for no share
            cands = self._free(able, self.per_holder if len(able) == 1 else share)
            if not cands:
                skipped.append(i)
                continue
            rank = {h: n for n, h in enumerate(self.holders[i])}
            holder = min(cands, key=lambda h: (self.load.get(h, 0), rank[h] if i % 2 == 0 else -rank[h]))
            self._issue(i, holder, now_ms)
            out.append((i, holder))
        self._todo.extendleft(reversed(skipped))
        late = now_ms - self.late_after_ms
        for i, asked in list(self.inflight.items()):  # oldest first; holders with room have nothing fresh
            if self.requests >= self.window:
                break
            if i in self.done or len(asked) >= MAX_ASKED or min(asked.values()) > late:
                continue
            cands = self._free(self._candidates(i), self.per_holder, exclude=asked)
            if cands:
                holder = min(cands, key=lambda h: self.load.get(h, 0))
                self._issue(i, holder, now_ms)
                self.hedged += 1
                out.append((i, holder))
        return out

    def _release(self, i: int, holder: str | None) -> int | None:
        """End holder's request for shard i (every request for it if holder is None); when it was asked."""
        asked = self.inflight.get(i)
        if not asked:
            return None
        ends = list(asked) if holder is None else [holder] if holder in asked else []
        when = None
        for h in ends:
            when = asked.pop(h)
            self.load[h] -= 1
            self.requests -= 1
        if not asked:
            del self.inflight[i]
        return when

    def ok(self, i: int, holder: str | None = None, now_ms: int | None = None) -> None:
        asked = self._release(i, holder)
        if asked is not None and now_ms is not None and i not in self.done:
            sample = now_ms - asked
            self.service_ms = sample if self.service_ms is None else 0.8 * self.service_ms + 0.2 * sample
        self.done.add(i)

    def bad(self, i: int, holder: str, *, avoid: bool = False) -> None:
        """The holder refused the shard (ask someone else for it), or with `avoid` served bytes
        that are not the shard (ask it for nothing more)."""
        self._release(i, holder)
        self.tried.setdefault(i, set()).add(holder)
        if avoid:
            self.avoided.add(holder)
        if i not in self.done:
            self.retries += 1
            if i not in self.inflight:
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
