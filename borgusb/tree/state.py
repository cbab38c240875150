"""The state every part of a PeerTree member shares, and the plumbing between them.

A member (`model.TreeNode`) is built up in layers, each a module of one concern, each
using only the ones below it: this state and its plumbing (actions out, counters, tree-wide
facts learnt), joining (`joining.py`), the root's work (`rootwork.py`), failure detection and
repair (`healing.py`), broadcasts (`broadcasting.py`), then other trees (`merging.py`).
The protocol itself is described in `model.py`.
"""

from __future__ import annotations

import random
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

from .admission import JoinAdmission
from .messages import Action, Member, Send, StatusChanged, f_str
from .outbox import BroadcastOutbox
from .recent import RecentBroadcasts

MEMBER_PROBE_FACTOR = 4  # members probe a contact 4x less often than the root
MAX_LOST_DOWN = 64  # flood messages kept per child whose send failed (the oldest go first)


_KEYS: dict[tuple[str, str], str] = {}
MAX_KEYS = 256  # message types are few; a peer's made-up ones are counted without being kept here


def counter_key(prefix: str, kind: str) -> str:
    """``prefix + kind``, one shared string per pair: a million simulated nodes count the same few
    message types, and each would otherwise keep its own copy of every key."""
    key = _KEYS.get((prefix, kind))
    if key is None:
        key = prefix + kind
        if len(_KEYS) < MAX_KEYS:
            _KEYS[(prefix, kind)] = key
    return key


@dataclass(frozen=True)
class TreeConfig:
    """Tunables of one cell's tree; ``k`` is the fan-out (maxChildren)."""

    k: int
    heartbeat_ms: int = 1000
    confirm_misses: int = 3
    join_batch_ms: int = 250
    probe_contacts_ms: int = 3500
    max_join_attempts: int = 4
    probe_fanout: int = 2
    dedupe_capacity: int = 4096
    join_burst: int = 16  # new members the root admits at once from one address (admission.py)
    join_every_ms: int = 1000  # then one per this long from that address
    members_per_address: int = 64  # members at one address at once (a member's own join keeps it placed)
    bcast_retry_ms: int = 2000  # an own broadcast not back from the root's flood by then is sent up again
    bcast_give_up_ms: int = 20_000  # ... until then (inside the 30 s freshness of the kit's signed origin)
    catchup_capacity: int = 64  # broadcasts a parent keeps for a child placed under it since (recent.py)
    catchup_window_ms: int = 15_000  # ... for this long (inside the same 30 s freshness)

    @property
    def confirm_ms(self) -> int:
        """Silence after which a peer counts as failed (confirm_misses missed beats)."""
        return (self.confirm_misses + 1) * self.heartbeat_ms


class TreeState:
    """The fields of one member's view and the plumbing every layer uses."""

    __slots__ = (
        "me",
        "cfg",
        "rng",
        "status",
        "contacts",
        "tree_id",
        "k",
        "pos",
        "size",
        "ver",
        "parent",
        "children",
        "root",
        "last_seen",
        "vacant_since",
        "reported",
        "nudged",
        "lost_down",
        "parent_refused_at",
        "promoted",
        "next_hb",
        "table",
        "where",
        "queue",
        "queued",
        "addr_counts",
        "addr_counts_ver",
        "last_batch",
        "repl_ops",
        "repl_holders",
        "candidates",
        "attempts",
        "join_deadline",
        "need_sync",
        "sync_until",
        "next_probe",
        "replica_log",
        "repl_seq",
        "sub_ver",
        "seen",
        "bcast_seq",
        "outbox",
        "recent",
        "caught_from",
        "catchup_served",
        "confirmed_at_ms",
        "counters",
        "_acts",
        "_now",
        "last_tick",
        "admission",
        "_source",
        "_proof",
    )

    MAX_CONTACTS = 256

    def __init__(self, me: Member, config: TreeConfig, rng: random.Random) -> None:
        if config.k < 1:
            raise ValueError("k must be >= 1")
        self.me = me
        self.cfg = config
        self.rng = rng
        self.status = "startup"
        self.contacts: dict[str, Member] = {}
        self.counters: dict[str, int] = {}
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.bcast_seq = 0
        self.outbox: BroadcastOutbox | None = None  # made at the first broadcast: a simulated million stay small
        self.recent: RecentBroadcasts | None = None  # kept by parents only, made at the first (recent.py)
        self.catchup_served: dict[int, tuple[str, int]] | None = None  # child slot -> whom, when last caught up
        self.confirmed_at_ms: int | None = None  # when this node last confirmed a new failure (monitoring)
        self.candidates: list[Member] = []
        self.attempts = 0
        self.join_deadline = 0
        self.next_probe = 0
        self._acts: list[Action] = []
        self._now = 0
        self.last_tick: int | None = None
        self.admission: JoinAdmission | None = None  # made at the first join taken: most members never take one
        self._source: str | None = None  # where the message being handled came from (on_message)
        self._proof: dict[str, Any] | None = None  # its signed envelope, passed on with a forwarded join
        self._clear_tree()

    # ------------------------------------------------------------------ plumbing

    def _begin(self, now: int) -> None:
        self._now = now
        self._acts = []

    def _end(self) -> list[Action]:
        acts, self._acts = self._acts, []
        return acts

    def _count(self, key: str, n: int = 1) -> None:
        if n:
            self.counters[key] = self.counters.get(key, 0) + n

    def _send(self, to: Member, msg: dict[str, Any]) -> None:
        if to.node_id == self.me.node_id:
            self._dispatch(self.me, msg)  # our own role (e.g. root is its own parent-of-record)
            return
        self._count(counter_key("sent.", msg["t"]))
        self._acts.append(Send(to, msg))

    def _set_status(self, st: str) -> None:
        if st != self.status:
            self.status = st
            self._acts.append(StatusChanged(st))

    def _clear_tree(self) -> None:
        self.tree_id: str | None = None
        self.k = self.cfg.k
        self.pos: int | None = None
        self.size = 0
        self.ver = 0
        self.parent: Member | None = None
        self.children: dict[int, Member] = {}
        self.root: Member | None = None
        # parent liveness keyed by node id, children's by slot: one member listed at two
        # slots (a stale table) must not keep both alive.
        self.last_seen: dict[str | int, int] = {}
        self.vacant_since: dict[int, int] = {}
        self.reported: dict[int, int] = {}
        self.nudged: dict[int, int] | None = None  # slot -> when a late child was nudged (made at the first)
        # slot -> the flood's messages a failed send to that child lost, sent again at its next heartbeat
        self.lost_down: dict[int, list[dict[str, Any]]] | None = None
        self.parent_refused_at: int | None = None  # when the parent's address last refused us
        self.promoted: str | None = None  # the node our last takeover handed the root to
        self.caught_from: str | None = None  # the parent whose recent broadcasts we have asked for
        self.next_hb = 0
        self.table: dict[int, Member] | None = None
        self.replica_log: list[Any] | None = None
        self.where: dict[str, int] = {}
        self.queue: list[Member] = []
        self.queued: set[str] | None = None  # the root's queue's ids (None: made at the first join queued)
        self.addr_counts: Counter[str] | None = None  # members per address at the root (joining._members_at)
        self.addr_counts_ver = -1  # ... as of this table version
        self.last_batch = -(1 << 62)
        self.repl_ops: dict[int, Member | None] = {}
        self.repl_holders: set[str] | None = None  # root children sent the full table (root only)
        self.repl_seq = 0  # root: deltas shipped so far; root child: deltas applied
        self.sub_ver = 0  # the highest version our subtree's heartbeats reported
        self.need_sync = False
        self.sync_until = 0

    def add_contacts(self, contacts: list[Member]) -> None:
        """Remember peers to join through and to probe for other trees."""
        for c in contacts:
            if c.node_id != self.me.node_id:
                self.contacts.pop(c.node_id, None)
                self.contacts[c.node_id] = c
        while len(self.contacts) > self.MAX_CONTACTS:  # bounded: forget the oldest
            del self.contacts[next(iter(self.contacts))]

    def _dispatch(
        self, sender: Member, msg: Any, source: str | None = None, proof: dict[str, Any] | None = None
    ) -> None:
        """Route one message to its handler: `model.TreeNode` knows them all."""
        raise NotImplementedError

    def _same_tree(self, msg: dict[str, Any]) -> bool:
        tid = f_str(msg, "tree")
        if self.tree_id is None or tid != self.tree_id:
            self._count("ignored_foreign_tree")
            return False
        return True

    def _learn(self, size: int, ver: int, root: Member | None) -> None:
        """Adopt newer tree-wide facts (size, root) and drop children beyond the size."""
        if ver < self.ver or self.status == "root":
            return
        self.ver, self.size = ver, size
        if root is not None:
            if self.root is not None and root.node_id != self.root.node_id:
                # reports sent to the old root (perhaps dead) are due again, to this one
                self.reported = dict.fromkeys(self.reported, -(1 << 62))
            self.root = root
        for q in [q for q in self.children if q > size]:
            del self.children[q]
