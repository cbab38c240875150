"""Which shard files a holder checked lately, unchanged since: their read check is not repeated.

A popular shard is served again and again within seconds (every viewer of a video, every reader
of a published file): its read check (mapping the file and a CRC-32 of every byte) was the largest
part of a serving holder's CPU in bench_dstream's rounds, for bytes checked a moment before. A shard whose check
passed within `FRESH_S` is served without another, as long as its file is the very file that was
checked: same device, inode, size, mtime and ctime (the store never writes a shard in place: a
new copy is another file renamed over it, hence another inode). What that leaves open is rot on
the medium inside those seconds, showing only if the page cache dropped the checked pages and
read them again: the reader's SHA-256 against the owner-signed manifest still refuses such bytes
(and avoids the holder for that read), the next check after `FRESH_S` drops the copy, and the
background scrub re-hashes every shard anyway. The key is as good as the filesystem's inode
numbers and times: the images and hosted mode keep cells' data on tmpfs (``/run``, RAM), where
both are exact; on FAT (inode numbers made up by the driver, 2 s mtimes) another file that
someone else puts in a shard's place could go unchecked until `FRESH_S` is up (the reader's
SHA-256 still refuses it).

Shared by the worker threads that open shards (a lock), bounded (`MAX_ENTRIES`, oldest first out).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict

FRESH_S = 30.0  # a check this recent stands, for a file unchanged since
MAX_ENTRIES = 16_384  # shards remembered (about 7 MiB at most: some 450 bytes each)

StatKey = tuple[int, int, int, int, int]


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FreshChecks:
    """Shard hash -> (the checked file's stat key, when its check passed)."""

    def __init__(self, fresh_s: float = FRESH_S, max_entries: int = MAX_ENTRIES) -> None:
        self.fresh_s = fresh_s
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._passed: OrderedDict[str, tuple[StatKey, float]] = OrderedDict()

    def fresh(self, h: str, st: os.stat_result) -> bool:
        """Whether h's file, as it is now (`st`), passed its check within `fresh_s`."""
        with self._lock:
            seen = self._passed.get(h)
        return seen is not None and seen[0] == stat_key(st) and time.monotonic() - seen[1] < self.fresh_s

    def passed(self, h: str, st: os.stat_result) -> None:
        """h's file (as `st` describes it) has just passed its check."""
        with self._lock:
            self._passed[h] = (stat_key(st), time.monotonic())
            self._passed.move_to_end(h)
            while len(self._passed) > self.max_entries:
                self._passed.popitem(last=False)

    def forget(self, h: str) -> None:
        with self._lock:
            self._passed.pop(h, None)
