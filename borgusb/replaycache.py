"""The replay cache: every (signer, nonce) an envelope verifier accepted, for as long as a replay
of it could still pass the freshness check (see `ReplayCache`)."""

from __future__ import annotations

import heapq
from collections import OrderedDict
from heapq import heappush

from .envelopeerrors import Replay, ReplayCacheFull

DEFAULT_WINDOW_MS = 30_000  # an envelope's freshness window: its ts within this of the local network clock
DEFAULT_REPLAY_CAPACITY = 200_000


class _Bucket:
    """One signer's accepted nonces still inside the window, and its own floor."""

    __slots__ = ("seen", "heap", "floor", "max_ts")

    def __init__(self, floor: int) -> None:
        self.seen: set[str] = set()
        self.heap: list[tuple[int, str]] = []
        self.floor = floor
        self.max_ts = floor

    def drop_oldest(self) -> None:
        ts, nonce = heapq.heappop(self.heap)
        self.seen.discard(nonce)
        self.floor = max(self.floor, ts)


class ReplayCache:
    """Remembers accepted (signer, nonce) pairs for as long as they could be replayed.

    An entry is needed only while its timestamp is inside the freshness
    window; after that `Stale` rejects a replay anyway. Everything is kept
    *per signer*, so whatever one key sends can only ever refuse that key's
    own messages:

    * each signer has a bucket of nonces (at most `per_signer`) and its own
      floor; when the bucket is full its oldest entry is dropped and only that
      signer's floor rises to its timestamp (a key that floods, future-dated
      or not, pushes only its own floor);
    * at most `max_signers` buckets and `capacity` nonces in all: past either
      bound the least recently active signer's whole bucket is evicted, and
      its highest timestamp is kept as that signer's floor in a map of at most
      `max_floors` entries (a floor below now - window is dropped: `Stale`
      covers it); when the bucket comes back it starts from that floor;
    * when buckets and floors are all held by signers active inside the
      window (a flood from more than max_signers + max_floors keys), a
      signer the cache does not know is refused with `ReplayCacheFull`
      (typed, counted, retryable) rather than anything being forgotten; every
      signer the cache knows keeps working. When a signer's own bucket cannot
      be given room from others, it drops its own oldest entry instead.

    So a replay is never accepted (every accepted message is in a bucket, at
    or below its signer's floor, or older than the window), memory is bounded
    by capacity + max_signers + max_floors small entries, and no signer's
    traffic raises any other signer's floor.
    """

    def __init__(
        self,
        capacity: int = DEFAULT_REPLAY_CAPACITY,
        *,
        per_signer: int | None = None,
        max_signers: int | None = None,
        max_floors: int | None = None,
    ) -> None:
        self.capacity = max(1, capacity)
        self.per_signer = per_signer or max(1, min(self.capacity, max(64, self.capacity // 50)))
        self.max_signers = max_signers or max(16, self.capacity // 8)
        self.max_floors = max_floors or max(16, self.capacity // 4)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently active first
        self._floors: dict[str, int] = {}  # evicted signers still inside the window
        self._floor_heap: list[tuple[int, str]] = []  # (floor, signer), stale items skipped
        self._entries = 0
        self._expired_before = -(2**63)

    def __len__(self) -> int:
        return self._entries

    def entries(self) -> int:
        return self._entries

    def signers(self) -> int:
        return len(self._buckets)

    def floors(self) -> int:
        return len(self._floors)

    def garbage(self) -> int:
        """Stale items in the floor heap (kept within 2 * max_floors + 16)."""
        return len(self._floor_heap) - len(self._floors)

    def expire(self, older_than_ms: int) -> None:
        """Forget what `Stale` now refuses anyway: least recently active buckets, floors."""
        self._expired_before = max(self._expired_before, older_than_ms)
        buckets = self._buckets
        while buckets:
            signer, bucket = next(iter(buckets.items()))
            if bucket.max_ts >= older_than_ms:
                break
            del buckets[signer]
            self._entries -= len(bucket.seen)
        heap, floors = self._floor_heap, self._floors
        while heap and heap[0][0] < older_than_ms:
            floor, signer = heapq.heappop(heap)
            if floors.get(signer) == floor:
                del floors[signer]

    def admit(self, signer: str, nonce: str, ts: int, now_ms: int, window_ms: int = DEFAULT_WINDOW_MS) -> None:
        """Remember (signer, nonce) or raise Replay / ReplayCacheFull; first `expire` what the window
        has left behind, when it has moved since (once a millisecond under load, not every message)."""
        live_from = now_ms - window_ms
        if live_from > self._expired_before:
            self.expire(live_from)
        bucket = self._buckets.get(signer)
        if bucket is not None:
            seen, heap = bucket.seen, bucket.heap
            if ts <= bucket.floor or nonce in seen:
                raise Replay("this message was already received")
            while heap and heap[0][0] < live_from:
                seen.discard(heapq.heappop(heap)[1])
                self._entries -= 1
            self._buckets.move_to_end(signer)
        else:
            floor = self._floors.get(signer, -(2**63))
            if ts <= floor:
                raise Replay("this message was already received")
            known = self._floors.pop(signer, None)  # carried into the bucket; frees its slot
            while len(self._buckets) >= self.max_signers:
                if not self._evict_lru(signer, live_from):
                    if known is not None:
                        self._floors[signer] = known  # its heap item is still there
                    raise ReplayCacheFull("too many signers active in the window; retry (replay cache full)")
            bucket = self._buckets[signer] = _Bucket(floor)
            seen = bucket.seen
        while len(seen) >= self.per_signer:
            bucket.drop_oldest()
            self._entries -= 1
            if ts <= bucket.floor:
                raise Replay("not newer than this signer's oldest forgotten message")
        while self._entries >= self.capacity:
            if not self._evict_lru(signer, live_from):
                if not seen:
                    del self._buckets[signer]
                    self._floors_put(signer, bucket.floor, live_from)
                    raise ReplayCacheFull("the replay cache is full; retry")
                bucket.drop_oldest()  # no room from others: this signer pays with its own oldest
                self._entries -= 1
                if ts <= bucket.floor:
                    raise Replay("not newer than this signer's oldest forgotten message")
        seen.add(nonce)
        heappush(bucket.heap, (ts, nonce))
        if ts > bucket.max_ts:
            bucket.max_ts = ts
        self._entries += 1

    def _evict_lru(self, keep: str, live_from: int) -> bool:
        """Evict the least recently active bucket (not `keep`) into a floor; False if impossible."""
        signer = next((s for s in self._buckets if s != keep), None)
        if signer is None:
            return False
        bucket = self._buckets[signer]
        floor = max(bucket.floor, bucket.max_ts)
        if floor >= live_from and not self._floors_room(live_from):
            return False
        del self._buckets[signer]
        self._entries -= len(bucket.seen)
        self._floors_put(signer, floor, live_from)
        return True

    def _floors_room(self, live_from: int) -> bool:
        heap, floors = self._floor_heap, self._floors
        while len(floors) >= self.max_floors and heap and heap[0][0] < live_from:
            floor, signer = heapq.heappop(heap)
            if floors.get(signer) == floor:
                del floors[signer]
        return len(floors) < self.max_floors

    def _floors_put(self, signer: str, floor: int, live_from: int) -> None:
        if floor < live_from:
            return  # Stale refuses anything at or below it already
        self._floors[signer] = floor
        heapq.heappush(self._floor_heap, (floor, signer))
        if len(self._floor_heap) > 2 * len(self._floors) + 16:
            self._floor_heap = [(f, s) for s, f in self._floors.items()]
            heapq.heapify(self._floor_heap)
