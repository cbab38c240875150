"""Edits of one folder's entries, as pure functions from entries to new entries.

Each returns a new mapping and leaves its input alone; the caller signs the result as the next
version (`manifest.make_folder`). A removal leaves a tombstone so that a merge with a concurrent version
does not bring the name back; a move between folders is a removal from one and a put into the
other, two new versions.
"""

from __future__ import annotations

from collections.abc import Mapping

from .entry import Entry, check_name, tombstone
from .errors import Exists, NotFound

Entries = Mapping[str, Entry]


def live(entries: Entries) -> dict[str, Entry]:
    """What a listing shows: every entry but the tombstones."""
    return {n: e for n, e in entries.items() if e.live}


def get(entries: Entries, name: str) -> Entry:
    e = entries.get(name)
    if e is None or not e.live:
        raise NotFound(f"no {name[:60]!r} here")
    return e


def put(entries: Entries, name: str, entry: Entry, *, replace: bool = True) -> dict[str, Entry]:
    """`name` now says `entry`. A file may replace a file (a new upload of it) when `replace`;
    nothing replaces a folder, and a folder replaces nothing."""
    check_name(name)
    old = entries.get(name)
    if old is not None and old.live and (not replace or old.kind == "folder" or entry.kind == "folder"):
        raise Exists(f"{name[:60]!r} exists")
    return {**entries, name: entry}


def remove(entries: Entries, name: str, now_ms: int) -> dict[str, Entry]:
    get(entries, name)
    return {**entries, name: tombstone(now_ms)}


def rename(entries: Entries, old: str, new: str, now_ms: int) -> dict[str, Entry]:
    """The entry at `old` moves to `new` in the same folder (a tombstone stays at `old`)."""
    entry = get(entries, old)
    if old == new:
        return dict(entries)
    return put(remove(entries, old, now_ms), new, entry, replace=False)


def move(src: Entries, name: str, dst: Entries, new: str, now_ms: int) -> tuple[dict[str, Entry], dict[str, Entry]]:
    """The entry `name` of `src` moves to `new` in another folder `dst`: (new src, new dst)."""
    entry = get(src, name)
    return remove(src, name, now_ms), put(dst, new, entry, replace=False)


def restore(current: Entries, old: Entries, now_ms: int) -> dict[str, Entry]:
    """The entries of an earlier version, as the content of a new one: what the earlier version
    did not have becomes a tombstone, so a concurrent version merged later does not revive it."""
    result = dict(old)
    for name, e in current.items():
        if e.live and name not in old:
            result[name] = tombstone(now_ms)
    return result
