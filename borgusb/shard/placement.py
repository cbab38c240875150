"""The placement lottery: which nodes hold a shard.

For a shard hash ``h`` and a candidate node ``c`` (its public key), the node's
*ticket* is the first ``sha256(h ":" c ":" nonce)`` (nonce = 0, 1, 2, ...)
whose top `DIFFICULTY_BITS` bits are zero; the R candidates with the lowest
tickets hold the shard (rendezvous hashing with a tiny proof of work).

* Random: tickets are SHA-256 outputs, so every node is equally likely.
* Not steerable by one node: the ranking is a function of (h, c) alone; the
  placer has no input of its own, and the *first* winning nonce counts, so a
  candidate cannot grind for a better ticket either. Anyone re-checks a
  claimed ticket in ~16 hashes (`check_ticket`).
* Non-blocking: difficulty 4 bits means 16 hashes per candidate on average
  (about 10 µs); nothing waits on anybody.
* Stable: when a node leaves, only the shards it held move (to the next
  ticket), which is what replication repair needs.

Limit (documented, not solved here): a node could grind many keys to win
many tickets (a Sybil attack); the proof of work only raises the cost of a
claimed ticket, it cannot stop key grinding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

DIFFICULTY_BITS = 4
_LIMIT = 1 << (256 - DIFFICULTY_BITS)


def ticket(h: str, node: str, bits: int = DIFFICULTY_BITS) -> tuple[int, int]:
    """(ticket value, nonce) of candidate `node` for shard `h`."""
    limit = 1 << (256 - bits)
    prefix = f"{h}:{node}:".encode()
    nonce = 0
    while True:
        v = int.from_bytes(hashlib.sha256(prefix + str(nonce).encode()).digest(), "big")
        if v < limit:
            return v, nonce
        nonce += 1


def check_ticket(h: str, node: str, nonce: int, bits: int = DIFFICULTY_BITS) -> int | None:
    """The ticket value if `nonce` is node's winning nonce for h, else None."""
    if not isinstance(nonce, int) or nonce < 0:
        return None
    v, first = ticket(h, node, bits)
    return v if first == nonce else None


def rank(h: str, candidates: Iterable[str], bits: int = DIFFICULTY_BITS) -> list[str]:
    """Candidates from most to least entitled to hold h."""
    return sorted(set(candidates), key=lambda c: ticket(h, c, bits)[0])


def choose(h: str, candidates: Iterable[str], r: int, exclude: Sequence[str] = ()) -> list[str]:
    """The r holders of h among candidates (minus `exclude`)."""
    skip = set(exclude)
    return [c for c in rank(h, candidates) if c not in skip][:r]
