"""Three-way merge of two folder versions made concurrently from the same parent.

Per name, with ``base`` the common parent's entry and ``a``, ``b`` the two sides' (None: absent):

* the same on both sides, or changed on one side only: that side's entry;
* removed on one side and changed on the other: the change (nothing is lost to a removal);
* removed on both: the later tombstone;
* a sub-folder changed on both sides: the sub-folders are merged in turn (the name is in
  `MergeResult.folders`; the caller merges them and puts the merged version there, since that
  needs their manifests, which the core does not fetch);
* anything else is a true conflict: the side that ranks higher keeps the name and the other's
  entry is kept as well, renamed ``"name (conflict from <its label>)"``.

Sides are ordered by their rank (the version's time and id) before anything else, so both
machines merging the same pair get the same result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .entry import MAX_NAME_BYTES, Entry
from .errors import BadName
from .ops import Entries


@dataclass(frozen=True, slots=True)
class Side:
    entries: Entries
    label: str  # who made it and when, for a conflict's name ("laptop 2026-12-02 22:40")
    rank: tuple[int, str]  # (ts, version id): the higher keeps a contested name


@dataclass(frozen=True, slots=True)
class MergeResult:
    entries: dict[str, Entry]
    folders: tuple[str, ...]  # sub-folders changed on both sides: merge them, then replace these entries
    conflicts: tuple[str, ...]  # names given to the losing side of a true conflict


def conflict_name(name: str, label: str, taken: Mapping[str, object]) -> str:
    """A free name for the losing entry of a conflict, within the name length limit."""
    for n in range(1, 10_000):
        suffix = f" (conflict from {label}{'' if n == 1 else f' {n}'})"
        room = MAX_NAME_BYTES - len(suffix.encode())
        head = name.encode()[: max(room, 1)].decode("utf-8", "ignore")
        candidate = head + suffix
        if candidate not in taken and len(candidate.encode()) <= MAX_NAME_BYTES:
            return candidate
    raise BadName("no free name for a conflict")  # pragma: no cover - 10 000 conflicts on one name


def _later_gone(x: Entry, y: Entry) -> Entry:
    return x if x.mtime >= y.mtime else y


def merge(base: Entries, one: Side, two: Side) -> MergeResult:
    lo, hi = sorted((one, two), key=lambda s: s.rank)
    out: dict[str, Entry] = {}
    folders: list[str] = []
    losers: list[tuple[str, Entry]] = []
    for name in sorted(set(base) | set(lo.entries) | set(hi.entries)):
        o, a, b = base.get(name), lo.entries.get(name), hi.entries.get(name)
        if a == b or b == o:
            chosen = a
        elif a == o:
            chosen = b
        elif a is None or b is None:  # added on one side, removed outright on the other (not done by ops)
            chosen = a if a is not None else b
        elif not a.live and not b.live:
            chosen = _later_gone(a, b)
        elif not a.live or not b.live:
            chosen = a if a.live else b
        elif a.kind == "folder" and b.kind == "folder":
            chosen = b
            folders.append(name)
        else:
            chosen = b
            losers.append((name, a))
        if chosen is not None:
            out[name] = chosen
    renamed: list[str] = []
    for name, entry in losers:
        new = conflict_name(name, lo.label, out)
        out[new] = entry
        renamed.append(new)
    return MergeResult(out, tuple(folders), tuple(renamed))
