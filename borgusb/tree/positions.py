"""Position arithmetic of the PeerTree: a complete k-ary tree numbered 1..N.

Positions are filled breadth-first, left to right, so the tree of N members is
always the first N slots of an infinite k-ary heap.  Everything structural
(parent, children, depth, the last slot that fills a hole) follows from
``(position, k, N)`` alone; that is why the protocol only ever ships positions
and never a shape.  Pure functions, no state.
"""

from __future__ import annotations

__all__ = [
    "parent",
    "children",
    "child_range",
    "depth",
    "level_start",
    "path_to_root",
    "tree_depth",
    "is_root_child",
]


def _check(p: int, k: int) -> None:
    if p < 1:
        raise ValueError(f"position must be >= 1, got {p}")
    if k < 1:
        raise ValueError(f"fan-out k must be >= 1, got {k}")


def parent(p: int, k: int) -> int | None:
    """Parent position of ``p`` (None for the root at 1)."""
    _check(p, k)
    if p == 1:
        return None
    return (p - 2) // k + 1


def child_range(p: int, k: int) -> range:
    """All child slots of ``p`` in an unbounded tree: k*(p-1)+2 .. k*(p-1)+k+1."""
    _check(p, k)
    first = k * (p - 1) + 2
    return range(first, first + k)


def children(p: int, k: int, n: int) -> list[int]:
    """Child positions of ``p`` that exist in a tree of ``n`` members."""
    r = child_range(p, k)
    return list(range(r.start, min(r.stop, n + 1)))


def level_start(d: int, k: int) -> int:
    """First position at depth ``d`` (1 + k + ... + k^(d-1))."""
    if d < 0:
        raise ValueError("depth must be >= 0")
    if k == 1:
        return d + 1
    return (k**d - 1) // (k - 1) + 1


def depth(p: int, k: int) -> int:
    """Number of edges between ``p`` and the root (root: 0)."""
    _check(p, k)
    if k == 1:
        return p - 1
    d, start, width = 0, 1, 1
    while p >= start + width:
        start += width
        width *= k
        d += 1
    return d


def tree_depth(n: int, k: int) -> int:
    """Depth of a tree of ``n`` members (= max broadcast hops from the root)."""
    return depth(n, k) if n >= 1 else 0


def path_to_root(p: int, k: int) -> list[int]:
    """Positions from ``p`` up to and including the root."""
    out = [p]
    while p != 1:
        p = (p - 2) // k + 1
        out.append(p)
    return out


def is_root_child(p: int, k: int) -> bool:
    """True for 2..k+1: the members that hold the root's table replica."""
    return 2 <= p <= k + 1
