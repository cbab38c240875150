"""Tree messages to one peer carried several to an envelope (``tree.batch``).

The driver sends a peer's messages in order, one request at a time, so a link carries at most
one request per round trip: ~4 a second through 250 ms of delay, less than a busy tree's
broadcasts alone (measured: the chaos delay scenario's broadcasts took 8 s and more, and the
outbox's retries only added to the queue). What waits in a peer's queue now goes in one
envelope, in order, up to `BATCH_MAX` messages and `BATCH_BYTES` signed bytes, so a link's
rate grows with its backlog instead of stalling behind it. Joins go alone: a forwarded join
is judged with its own envelope (joins.py). The receiving door charges the signer's rate one
token per message, as if they had come one by one.
"""

from __future__ import annotations

import asyncio
from typing import Any

BATCH = "tree.batch"
BATCH_MAX = 32  # messages in one envelope
BATCH_BYTES = 256 << 10  # a batch signed larger than this is sent as single messages instead
ALONE = frozenset({BATCH, "tree.join"})


class BadBatch(ValueError):
    """A ``tree.batch`` payload that breaks the rules (counted as malformed by the door)."""


def batch_items(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages of a verified ``tree.batch`` payload, each a tree message that may travel in one."""
    msgs = payload.get("msgs")
    if not isinstance(msgs, list) or not 1 <= len(msgs) <= BATCH_MAX:
        raise BadBatch(f"msgs must be a list of 1 to {BATCH_MAX} messages")
    for m in msgs:
        t = m.get("t") if isinstance(m, dict) else None
        if not isinstance(t, str) or not t.startswith("tree.") or t in ALONE:
            raise BadBatch("each message must be a tree message other than a join or a batch")
    return msgs


def take_batch(
    first: dict[str, Any], queue: asyncio.Queue[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """``first`` and what waits behind it that may share its envelope, in order; and the message
    that stopped the batch (a join: it goes next, alone), if any."""
    batch = [first]
    if first["t"] in ALONE:
        return batch, None
    while len(batch) < BATCH_MAX and not queue.empty():
        msg = queue.get_nowait()
        if msg["t"] in ALONE:
            return batch, msg
        batch.append(msg)
    return batch, None
