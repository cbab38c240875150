"""HTTP byte ranges (RFC 9110 section 14) as pure functions: a Range header and a size give an answer,
and an answer and a shard layout give the bytes of each shard to send.

Every header is hostile and none raises: a header that is not one well-formed ``bytes=`` range set
is ignored (the whole object, 200, as the RFC allows), several ranges are answered with the first
(a browser's ``<video>`` only ever asks for one), and a well-formed range that starts past the end,
or a zero suffix, is unsatisfiable (416 with ``Content-Range: bytes */size``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HEADER = 256  # a Range header longer than this is ignored unread (a media player's is ~20 bytes)
_SPEC = re.compile(r"(\d{1,19})?-(\d{1,19})?")


@dataclass(frozen=True, slots=True)
class Whole:
    """Send the whole object (no Range, or one that is ignored): 200."""

    size: int


@dataclass(frozen=True, slots=True)
class Part:
    """Send bytes first..last inclusive: 206 with `content_range`."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.size}"


@dataclass(frozen=True, slots=True)
class Unsatisfiable:
    """No byte of the object is in the range: 416 with `content_range`."""

    size: int

    @property
    def content_range(self) -> str:
        return f"bytes */{self.size}"


Answer = Whole | Part | Unsatisfiable


def answer(header: str | None, size: int) -> Answer:
    """What to send for a Range header (or None) of an object of `size` bytes."""
    if header is None or len(header) > MAX_HEADER:
        return Whole(size)
    unit, eq, specs = header.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return Whole(size)
    parts = [p.strip() for p in specs.split(",")]
    if not parts or any(_SPEC.fullmatch(p) is None or p == "-" for p in parts):
        return Whole(size)
    first_text, _, last_text = parts[0].partition("-")
    if not first_text:  # a suffix: the last N bytes
        n = int(last_text)
        if n == 0 or size == 0:
            return Unsatisfiable(size)
        return Part(max(0, size - n), size - 1, size)
    first = int(first_text)
    if last_text and int(last_text) < first:
        return Whole(size)  # last before first: syntactically invalid, so ignored
    if first >= size:
        return Unsatisfiable(size)
    last = min(int(last_text), size - 1) if last_text else size - 1
    return Part(first, last, size)


def spans(first: int, last: int, size: int, ss: int) -> list[tuple[int, int, int]]:
    """The bytes first..last (inclusive) of an object in shards of `ss` bytes, as (shard index,
    offset in the shard, length), in order. Raises ValueError if the range is not inside the object."""
    if ss <= 0 or not 0 <= first <= last < size:
        raise ValueError(f"bytes {first}-{last} are not inside {size} bytes")
    out: list[tuple[int, int, int]] = []
    at = first
    while at <= last:
        i, off = divmod(at, ss)
        n = min(ss - off, last - at + 1)
        out.append((i, off, n))
        at += n
    return out
