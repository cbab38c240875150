"""Position arithmetic of the PeerTree (complete k-ary heap numbering)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from borgusb.tree import positions as P

ks = st.integers(min_value=1, max_value=50)
ps = st.integers(min_value=1, max_value=10**7)


def test_small_tree_k3() -> None:
    assert P.parent(1, 3) is None
    assert [P.parent(p, 3) for p in range(2, 14)] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert P.children(1, 3, 10) == [2, 3, 4]
    assert P.children(3, 3, 10) == [8, 9, 10]
    assert P.children(4, 3, 10) == []
    assert P.children(3, 3, 9) == [8, 9]


def test_depths() -> None:
    assert P.depth(1, 10) == 0
    assert P.depth(11, 10) == 1 and P.depth(12, 10) == 2
    assert P.tree_depth(10_000, 10) == 4
    assert P.tree_depth(1_000_000, 10) == 6
    assert P.depth(5, 1) == 4
    assert P.level_start(3, 10) == 112 and P.level_start(2, 1) == 3


def test_invalid() -> None:
    with pytest.raises(ValueError):
        P.parent(0, 3)
    with pytest.raises(ValueError):
        P.children(1, 0, 5)


@given(ps, ks)
def test_parent_child_inverse(p: int, k: int) -> None:
    for c in P.child_range(p, k):
        assert P.parent(c, k) == p
    if p > 1:
        parent = P.parent(p, k)
        assert parent is not None and p in P.child_range(parent, k)


@given(ps, ks)
def test_depth_matches_path(p: int, k: int) -> None:
    if k == 1:
        p = min(p, 5000)
    path = P.path_to_root(p, k)
    assert path[-1] == 1 and len(path) - 1 == P.depth(p, k)
    d = P.depth(p, k)
    assert P.level_start(d, k) <= p < P.level_start(d + 1, k)


@given(st.integers(min_value=1, max_value=3000), ks)
def test_children_partition_the_tree(n: int, k: int) -> None:
    """Every position 2..n is the child of exactly one position in 1..n."""
    seen: list[int] = []
    for p in range(1, n + 1):
        cs = P.children(p, k, n)
        assert all(c <= n for c in cs)
        seen.extend(cs)
    assert sorted(seen) == list(range(2, n + 1))


@given(st.integers(min_value=2, max_value=10**6), ks)
def test_last_position_is_a_leaf(n: int, k: int) -> None:
    """Why the last node can fill any hole: it never has children."""
    assert P.children(n, k, n) == []
    assert P.is_root_child(2, k) and not P.is_root_child(k + 2, k)
