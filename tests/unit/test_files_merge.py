"""Merge of concurrent folder versions: worked cases, and properties over random edit histories
(no change lost, both machines get the same result, an unchanged side changes nothing)."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from borgusb.files import ops
from borgusb.files.entry import Entry, check_name, tombstone
from borgusb.files.merge import Side, merge

NAMES = ["a", "b", "c", "d"]


def f(n: int) -> Entry:
    return Entry("file", hashlib.sha256(b"%d" % n).hexdigest(), n, "text/plain", n, "")


def d(n: int) -> Entry:
    return Entry("folder", hashlib.sha256(b"dir%d" % n).hexdigest(), 0, "", n, "")


def sides(a: dict[str, Entry], b: dict[str, Entry]) -> tuple[Side, Side]:
    return Side(a, "laptop 1", (1, "aa")), Side(b, "desk 2", (2, "bb"))


def test_non_conflicting_edits_merge() -> None:
    base = {"a": f(1), "b": f(2)}
    one = ops.put(base, "c", f(3))
    two = ops.remove(base, "b", 9)
    r = merge(base, *sides(one, two))
    assert ops.live(r.entries) == {"a": f(1), "c": f(3)} and not r.conflicts and not r.folders


def test_true_conflict_keeps_both() -> None:
    base = {"a": f(1)}
    r = merge(base, *sides(ops.put(base, "a", f(2)), ops.put(base, "a", f(3))))
    assert r.entries["a"] == f(3)  # the higher rank keeps the name
    assert r.conflicts == ("a (conflict from laptop 1)",)
    assert r.entries["a (conflict from laptop 1)"] == f(2)


def test_edit_beats_remove_and_rename_keeps_both() -> None:
    base = {"a": f(1)}
    r = merge(base, *sides(ops.put(base, "a", f(2)), ops.rename(base, "a", "z", 5)))
    assert ops.live(r.entries) == {"a": f(2), "z": f(1)}


def test_subfolders_changed_on_both_sides_are_merged_in_turn() -> None:
    base = {"docs": d(1)}
    r = merge(base, *sides({"docs": d(2)}, {"docs": d(3)}))
    assert r.folders == ("docs",) and not r.conflicts
    r2 = merge({}, *sides({"docs": d(2)}, {"docs": f(3)}))  # a folder against a file: a true conflict
    assert r2.conflicts and not r2.folders


def test_conflict_names_stay_valid_and_distinct() -> None:
    long = "x" * 255
    base = {long: f(1), long[:200] + " (conflict from laptop 1)": f(0)}
    r = merge(base, *sides(ops.put(base, long, f(2)), ops.put(base, long, f(3))))
    for name in r.entries:
        check_name(name)
    assert len(ops.live(r.entries)) == 3


EDIT = st.tuples(st.sampled_from(["put", "rm", "mv", "mkdir"]), st.sampled_from(NAMES), st.sampled_from(NAMES))


def apply(entries: dict[str, Entry], edits: list[tuple[str, str, str]], seed: int) -> dict[str, Entry]:
    for i, (op, x, y) in enumerate(edits):
        now = seed * 1000 + i
        try:
            if op == "put":
                entries = ops.put(entries, x, f(now))
            elif op == "mkdir":
                entries = ops.put(entries, x, d(now))
            elif op == "rm":
                entries = ops.remove(entries, x, now)
            else:
                entries = ops.rename(entries, x, y, now)
        except ValueError:
            continue
    return entries


BASES = st.dictionaries(st.sampled_from(NAMES), st.one_of(st.integers(0, 3).map(f), st.integers(0, 3).map(d)))


@settings(max_examples=400, deadline=None)
@given(BASES, st.lists(EDIT, max_size=6), st.lists(EDIT, max_size=6))
def test_merge_properties(
    base: dict[str, Entry], edits_a: list[tuple[str, str, str]], edits_b: list[tuple[str, str, str]]
) -> None:
    a = apply(dict(base), edits_a, 1)
    b = apply(dict(base), edits_b, 2)
    one, two = sides(a, b)
    r = merge(base, one, two)
    assert r == merge(base, two, one)  # both machines agree
    assert merge(base, one, Side(base, "x", (3, "cc"))).entries == a  # nothing done on one side
    values = list(r.entries.values())
    for side in (a, b):
        for name, e in side.items():
            if base.get(name) == e:
                continue
            if e.live:  # a change made on either side is somewhere in the result
                assert e in values or name in r.folders
            elif name in r.entries:  # a removal holds unless the other side changed that name
                other = b if side is a else a
                assert not r.entries[name].live or other.get(name) != base.get(name)
    for name in r.entries:
        check_name(name)
    for name in set(a) & set(b):
        if a[name] == b[name]:
            assert r.entries[name] == a[name]


def test_removed_on_both_sides_keeps_the_later_tombstone() -> None:
    base = {"a": f(1)}
    r = merge(base, *sides(ops.remove(base, "a", 5), ops.remove(base, "a", 7)))
    assert r.entries == {"a": tombstone(7)}
