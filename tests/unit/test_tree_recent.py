"""The broadcasts a parent keeps for a child placed under it later: bounded in count and age."""

from __future__ import annotations

import pytest

from borgusb.tree.recent import RecentBroadcasts


def test_keeps_the_newest_up_to_its_capacity() -> None:
    r = RecentBroadcasts(capacity=3, window_ms=10_000)
    for i in range(5):
        r.add(f"b{i}", {"n": i}, hops=i, now_ms=i)
    assert r.ids(10) == ["b2", "b3", "b4"] and len(r) == 3
    assert r.get(["b4", "b0", "b3"], 10) == [("b4", {"n": 4}, 4), ("b3", {"n": 3}, 3)]


def test_forgets_what_is_older_than_its_window() -> None:
    r = RecentBroadcasts(capacity=8, window_ms=1_000)
    r.add("old", {}, 0, now_ms=0)
    r.add("new", {}, 0, now_ms=600)
    assert r.ids(999) == ["old", "new"]
    assert r.ids(1_000) == ["new"] and r.get(["old"], 1_000) == []
    assert r.ids(1_600) == [] and len(r) == 0


def test_a_repeated_id_is_kept_once_as_the_newest() -> None:
    r = RecentBroadcasts(capacity=2, window_ms=1_000)
    r.add("a", {}, 0, 0)
    r.add("b", {}, 0, 1)
    r.add("a", {"again": 1}, 1, 2)
    r.add("c", {}, 0, 3)
    assert r.ids(3) == ["a", "c"]


@pytest.mark.parametrize(("capacity", "window_ms"), [(0, 1), (1, 0)])
def test_needs_room_and_a_window(capacity: int, window_ms: int) -> None:
    with pytest.raises(ValueError):
        RecentBroadcasts(capacity, window_ms)
