"""The PeerTree protocol as a pure, sans-I/O state machine (``TreeNode``).

The driver (asyncio runtime or ``sim.py``) feeds events -- ``start``,
``on_message``, ``on_tick``, ``on_unreachable``, ``broadcast`` -- each with the
current time in ms, and carries out the returned actions (``Send``,
``Deliver``, ``StatusChanged``).  No sockets, clocks or global randomness, so
the simulator runs the very code the real node runs.

Design (what we chose and why)
------------------------------
* **Root = sequencer.**  The root holds the authoritative table
  position -> Member.  Joins reaching it are queued and, once per
  ``join_batch_ms`` (on a tick), assigned a consecutive block N+1..N+j.  Each
  joiner gets one ``tree.assign``; each affected parent gets ONE
  ``tree.children`` for the whole block; the root's k children get one
  ``tree.replica`` delta per batch.  Cost per join: join (+1 forward when the
  contact is not the root) + assign + ~1/k children + k/batch replica:
  O(1), independent of N, and the root does O(1) work per join.  New members
  are admitted per address (``join_burst``, then one per ``join_every_ms``;
  ``admission.py``): the address a join came from, at the root or the member
  that forwards it, which takes only a join signed by its joiner; at most
  ``members_per_address`` at once (a member that only re-sends its join keeps
  its place without a heartbeat): keys are free, addresses are not.  Others
  are counted (``refused:join_rate``, ``refused:join_forged``,
  ``refused:join_cap``) and dropped; the joiner tries its next candidate.
* **Repair = last node fills the hole.**  A parent confirms a child dead after
  ``confirm_misses`` consecutive missing heartbeats (one slow heartbeat does
  nothing), then sends ``tree.fail`` to the root.  Sooner when there is proof:
  a child a beat and a half late gets one unasked ``tree.hb_ack`` (a nudge),
  and a connection its address refuses (nothing listens there: the process is
  gone) confirms it at once; a timeout proves nothing and waits out the
  silence, so loss, a partition or a frozen node are judged as before.  The root moves node N into
  the hole: ``tree.assign`` to the mover, ``tree.children`` to the hole's
  parent and to N's old parent, ``tree.parent`` to the hole's children.
* **Root death, no election.**  The root's children hold a replica of the
  table.  A root child at position c takes over after the root has been silent
  for ``c`` confirm periods (always longer than the root's own child timeout),
  or, once the root's address refused its heartbeat, after ``2 (c - 2)`` beats,
  so the lowest *surviving* child acts first; it
  runs the same move procedure for hole 1 and hands the table to node N with
  ``tree.promote``; N becomes root.  The coordinator also tells the other root
  children (``tree.parent``), which resets their timers.  If N is dead too the
  coordinator simply repeats with the next last node (at once when N refuses).
* **Self-stabilisation instead of perfect messaging.**  Lost or stale control
  messages are healed locally: a parent answers a heartbeat from anyone who is
  not its child at that slot with ``tree.reject``; a rejected node asks the
  root to re-send its assignment (``tree.join`` is idempotent: a member already
  in the table gets its own slot back and its parent is refreshed); a parent
  reports slots that should exist (from the size it learned) but stay vacant;
  a parent drops children beyond the current size; a node whose parent stays
  silent for k+3 confirm periods (longer than any takeover plus repair)
  rejoins from scratch.  A node whose own ticks stopped for longer than a
  heartbeat (frozen, suspended) takes that pause off every peer's silence
  before judging anyone, and heartbeats at once, so a replaced node learns it
  from its parent's reject instead of reading its own pause as a failure.
* **Alone / split / merge.**  A joiner tries up to ``max_join_attempts``
  candidates (known root, old parent, contacts); if none assigns it a slot it
  becomes root of a fresh tree (random id from the injected rng).  Roots probe
  ``probe_fanout`` random contacts every ``probe_contacts_ms`` with
  ``tree.whoroot``.  If a contact is in another tree (different tree id, or
  same id under a different root after a split-brain takeover), the tree with
  the smaller key (size, tree id, root id) resigns: ``tree.resign`` floods its
  tree and every member rejoins the winner's root, which hands out fresh slots,
  so no position is ever held twice.
* **Broadcast** goes to the root in one message (``tree.bcast`` with
  ``up: true``), the root floods down; every node forwards to its children.
  Receivers dedupe by id in a bounded LRU and count duplicates.  The sender is
  a member too, so the flood brings its own broadcast back to it; until then
  the broadcast waits in its outbox (outbox.py) and is sent up again under the
  same id every ``bcast_retry_ms``: one sent to a root that had just died, or
  held while the sender had no root, goes out once the tree has healed.

Messages (all JSON dicts; member records are ``{"pubkey", "ip", "port"}``;
``ver`` orders the root's table versions, epoch in the high 32 bits):

    tree.join      {joiner, hops}                        joiner -> contact/root (hops 0), member -> root (1)
    tree.assign    {tree, k, pos, size, ver, root, parent, children:[[pos,m]]}
    tree.children  {tree, size, ver, root, set:[[pos, m|null]]}   root -> parent
    tree.parent    {tree, pos, parent, size, ver, root}   root -> child
    tree.promote   {tree, k, size, ver, table:[[pos,m]]}  coordinator -> new root
    tree.replica   {tree, ver, size, seq, full, ops:[[pos, m|null]]}  root -> root kids
                   (a root child that misses a seq drops its copy and sets
                   ``need_replica: true`` in its next tree.hb to get a full one)
    tree.fail      {tree, pos, node: pubkey|null}         parent -> root
    tree.hb        {tree, pos, need_replica?}             child -> parent
    tree.hb_ack    {tree, pos, size, ver, root}           parent -> child
    tree.reject    {tree, pos}                            parent -> impostor
    tree.bcast     {tree, id, payload, hops, up}
    tree.whoroot   {tree, size, root}                     root -> contact
    tree.whoroot_reply {tree|null, size, root|null}
    tree.merge     {tree, size, root}                     bigger root -> smaller
    tree.contact   {tree, contact}                        member -> its root: "another tree is there"
    tree.resign    {tree, to}                             flooded down a resigning tree
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import positions as P
from .admission import JoinAdmission
from .messages import (
    Action,
    Deliver,
    Malformed,
    Member,
    Send,
    StatusChanged,
    f_dict,
    f_int,
    f_member,
    f_slots,
    f_str,
    slots,
)
from .outbox import BroadcastOutbox

__all__ = ["TreeConfig", "TreeNode", "Member", "Send", "Deliver", "StatusChanged", "Action"]

_EPOCH = 1 << 32
MEMBER_PROBE_FACTOR = 4  # members probe a contact 4x less often than the root


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

    @property
    def confirm_ms(self) -> int:
        """Silence after which a peer counts as failed (confirm_misses missed beats)."""
        return (self.confirm_misses + 1) * self.heartbeat_ms


class TreeNode:
    """One member's view of the PeerTree.  Every public method returns actions."""

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
        "parent_refused_at",
        "promoted",
        "next_hb",
        "table",
        "where",
        "queue",
        "queued",
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
        self.confirmed_at_ms: int | None = None  # when this node last confirmed a new failure (monitoring)
        self.candidates: list[Member] = []
        self.attempts = 0
        self.join_deadline = 0
        self.next_probe = 0
        self._acts: list[Action] = []
        self._now = 0
        self.last_tick: int | None = None
        self.admission = JoinAdmission(config.join_burst, config.join_every_ms)
        self._source: str | None = None  # where the message being handled came from (on_message)
        self._proof: dict[str, Any] | None = None  # its signed envelope, passed on with a forwarded join
        self._clear_tree()

    # ------------------------------------------------------------------ public API

    def start(self, now_ms: int, contacts: list[Member]) -> list[Action]:
        """Begin: join via ``contacts``, or found a one-node tree if there are none."""
        self._begin(now_ms)
        self.add_contacts(contacts)
        if self.contacts:
            self._rejoin([])
        else:
            self._found_tree()
        return self._end()

    def on_message(
        self,
        now_ms: int,
        sender: Member,
        msg: dict[str, Any],
        source: str | None = None,
        proof: dict[str, Any] | None = None,
    ) -> list[Action]:
        """A message from an (authenticated) ``sender``; malformed input is counted, never raised.

        ``source`` is the address the transport saw it come from (``sender``'s address is only
        what it claims); None where there is none to see (tests without sockets). ``proof`` is
        the verified envelope the message came in: a member passing a join on to the root sends
        the joiner's own signed join with it, which the root's transport checks (the cell kit)."""
        self._begin(now_ms)
        self._dispatch(sender, msg, source, proof)
        return self._end()

    def on_tick(self, now_ms: int) -> list[Action]:
        """Timer tick: heartbeats, failure detection, join batches, probes, retries."""
        self._begin(now_ms)
        if self.last_tick is not None and now_ms - self.last_tick > self.cfg.heartbeat_ms:
            self._discount_pause(now_ms - self.last_tick)
        self.last_tick = now_ms
        st = self.status
        if st == "joining":
            if now_ms >= self.join_deadline:
                self._try_next_candidate()
        if st in ("root", "online") and self.outbox:
            self._retry_broadcasts()
        if st == "root":
            if self.queue and now_ms - self.last_batch >= self.cfg.join_batch_ms:
                self._assign_batch()
            self._check_children()
            if now_ms >= self.next_probe:
                self._probe()
            self._flush_replica()
        elif st == "online":
            self._online_tick()
            if now_ms >= self.next_probe:
                self._member_probe()
        return self._end()

    def on_unreachable(self, now_ms: int, peer: Member, refused: bool = False) -> list[Action]:
        """The transport could not reach ``peer``. A timeout proves nothing (a lossy link, a busy or
        frozen peer): failures stay confirmed by silence. A refused connection does: nothing listens
        at the address the member gave, so it cannot hold its place there (`_on_refused`)."""
        self._begin(now_ms)
        self._count("unreachable")
        if self.status == "joining" and self.attempts and self.candidates[self.attempts - 1].node_id == peer.node_id:
            self._try_next_candidate()
        elif refused:
            self._on_refused(peer)
        return self._end()

    def broadcast(self, now_ms: int, payload: dict[str, Any]) -> list[Action]:
        """Send ``payload`` to every member (this one included) exactly once."""
        self._begin(now_ms)
        self.bcast_seq += 1
        bid = f"{self.me.node_id[:16]}-{self.bcast_seq}-{self.rng.getrandbits(32):08x}"
        if self.outbox is None:
            self.outbox = BroadcastOutbox(self.cfg.bcast_retry_ms, self.cfg.bcast_give_up_ms)
        self._count("bcast_dropped", self.outbox.add(bid, payload, now_ms))
        self._send_up(bid, payload)
        return self._end()

    def add_contacts(self, contacts: list[Member]) -> None:
        """Remember peers to join through and to probe for other trees."""
        for c in contacts:
            if c.node_id != self.me.node_id:
                self.contacts.pop(c.node_id, None)
                self.contacts[c.node_id] = c
        while len(self.contacts) > self.MAX_CONTACTS:  # bounded: forget the oldest
            del self.contacts[next(iter(self.contacts))]

    def view(self) -> dict[str, Any]:
        """Read-only monitoring snapshot (JSON-able)."""
        return {
            "node_id": self.me.node_id,
            "status": self.status,
            "tree_id": self.tree_id,
            "k": self.k,
            "position": self.pos,
            "size": self.size,
            "ver": self.ver,
            "depth": P.depth(self.pos, self.k) if self.pos else None,
            "parent": self.parent.node_id if self.parent else None,
            "children": {str(q): m.node_id for q, m in sorted(self.children.items())},
            "root": self.root.node_id if self.root else None,
            "confirmed_at_ms": self.confirmed_at_ms,
            "counters": dict(self.counters),
        }

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
        self._count("sent." + msg["t"])
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
        self.nudged: dict[int, int] = {}  # slot -> when a late child was last sent an unasked ack
        self.parent_refused_at: int | None = None  # when the parent's address last refused us
        self.promoted: str | None = None  # the node our last takeover handed the root to
        self.next_hb = 0
        self.table: dict[int, Member] | None = None
        self.replica_log: list[Any] | None = None
        self.where: dict[str, int] = {}
        self.queue: list[Member] = []
        self.queued: set[str] = set()
        self.last_batch = -(1 << 62)
        self.repl_ops: dict[int, Member | None] = {}
        self.repl_holders: set[str] = set()
        self.repl_seq = 0  # root: deltas shipped so far; root child: deltas applied
        self.sub_ver = 0  # the highest version our subtree's heartbeats reported
        self.need_sync = False
        self.sync_until = 0

    def _dispatch(
        self, sender: Member, msg: Any, source: str | None = None, proof: dict[str, Any] | None = None
    ) -> None:
        self._source, self._proof = source, proof
        if not isinstance(msg, dict) or not isinstance(msg.get("t"), str):
            self._count("rejected_malformed")
            return
        handler = _HANDLERS.get(msg["t"])
        if handler is None:
            self._count("rejected_unknown_type")
            return
        self._count("recv." + msg["t"])
        try:
            handler(self, sender, msg)
        except Malformed:
            self._count("rejected_malformed")

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

    # ------------------------------------------------------------------ joining

    def _found_tree(self) -> None:
        """Alone: become root of a fresh one-node tree and keep probing contacts."""
        self._clear_tree()
        self.tree_id = f"{self.rng.getrandbits(128):032x}"
        self.pos, self.size, self.root = 1, 1, self.me
        self.table, self.where = {1: self.me}, {self.me.node_id: 1}
        self.next_probe = self._now + self.cfg.probe_contacts_ms
        self._count("trees_founded")
        self._set_status("root")

    def _rejoin(self, first: list[Member]) -> None:
        """Drop our slot and look for a tree: ``first`` candidates, then contacts."""
        # Remember the tree we are leaving: its members are the best contacts to find it again.
        self.add_contacts([m for m in (self.root, self.parent, *self.children.values()) if m is not None])
        seen: set[str] = {self.me.node_id}
        cands: list[Member] = []
        extra = list(self.contacts.values())
        self.rng.shuffle(extra)
        for m in [*first, *extra]:
            if m.node_id not in seen:
                seen.add(m.node_id)
                cands.append(m)
        self._clear_tree()
        self.candidates, self.attempts = cands, 0
        self._set_status("joining")
        self._try_next_candidate()

    def _try_next_candidate(self) -> None:
        if self.attempts >= min(len(self.candidates), self.cfg.max_join_attempts):
            self._found_tree()
            return
        c = self.candidates[self.attempts]
        self.attempts += 1
        self.join_deadline = self._now + self.cfg.probe_contacts_ms
        self._send(c, {"t": "tree.join", "joiner": self.me.to_dict(), "hops": 0})

    def _on_join(self, sender: Member, msg: dict[str, Any]) -> None:
        joiner = f_member(msg, "joiner")
        hops = f_int(msg, "hops", 0, 64)
        if self.status == "root":
            if joiner.node_id in self.queued or joiner.node_id == self.me.node_id:
                return
            new = joiner.node_id not in self.where  # a resync is free
            if hops > 0 and sender.node_id in self.where and sender.node_id != joiner.node_id:
                admitted = not new or self._admit(joiner.ip)  # the member that forwarded it charged its source
            else:  # sent straight by its sender (anyone but a placed member counts as that)
                admitted = self._from_joiner(sender, joiner) and (not new or self._admit(self._source or joiner.ip))
            if not admitted:
                return
            if new and self._members_at(joiner.ip) >= self.cfg.members_per_address:
                self._count("refused:join_cap")
                return
            self.queued.add(joiner.node_id)
            self.queue.append(joiner)
        elif self.status == "online" and self.root is not None and hops == 0 and self.root.node_id != sender.node_id:
            # only a joiner's own join is passed on: a forwarded one reaching a member (its sender's
            # root is stale) is dropped, or any key could forward joins for made-up members
            if self._from_joiner(sender, joiner) and self._admit(self._source or joiner.ip):
                self._count("joins_forwarded")
                forward: dict[str, Any] = {"t": "tree.join", "joiner": joiner.to_dict(), "hops": 1}
                if self._proof is not None:  # the joiner's own signed join: no key is placed that did not ask
                    forward["signed"] = self._proof
                self._send(self.root, forward)
        else:
            self._count("joins_dropped")

    def _from_joiner(self, sender: Member, joiner: Member) -> bool:
        """A join sent straight to us must be signed by the key it asks to place."""
        if joiner.node_id == sender.node_id:
            return True
        self._count("refused:join_forged")
        return False

    def _admit(self, address: str) -> bool:
        """Spend one of ``address``'s admissions (``admission.py``), counted when none is left."""
        if self.admission.allow(address, self._now):
            return True
        self._count("refused:join_rate")
        return False

    def _members_at(self, ip: str) -> int:
        """Members of the table (and queued) at one address: O(n), paid only by admitted joins."""
        placed = sum(m.ip == ip for m in (self.table or {}).values())
        return placed + sum(m.ip == ip and m.node_id not in self.where for m in self.queue)

    def _on_assign(self, sender: Member, msg: dict[str, Any]) -> None:
        tid = f_str(msg, "tree")
        k = f_int(msg, "k", 1, 1 << 16)
        pos = f_int(msg, "pos", 2)
        size = f_int(msg, "size", 1)
        ver = f_int(msg, "ver")
        root = f_member(msg, "root")
        par = f_member(msg, "parent")
        kids = f_slots(msg, "children")
        if pos > size or P.parent(pos, k) is None:
            raise Malformed("assign: bad position")
        ok = self.status == "joining" or (
            self.status == "online" and tid == self.tree_id and (ver >= self.ver or self.need_sync)
        )
        if not ok:
            self._count("ignored_stale_assign")
            return
        if tid != self.tree_id or pos != self.pos:
            self.children = {}
        self.tree_id, self.k, self.pos = tid, k, pos
        self.ver, self.size, self.root, self.parent = ver, size, root, par
        allowed = P.child_range(pos, k)
        self.children = {q: m for q, m in kids.items() if m is not None and q in allowed and q <= size}
        self.last_seen = {par.node_id: self._now, **{q: self._now for q in self.children}}
        self.vacant_since, self.reported = {}, {}
        if not P.is_root_child(pos, k):
            self.table, self.replica_log = None, None
        self.need_sync = False
        self.next_hb = self._now
        self._set_status("online")

    # ------------------------------------------------------------------ root: joins & moves

    def _assign_msg(self, q: int) -> dict[str, Any]:
        t = self.table
        assert t is not None
        n = len(t)
        return {
            "t": "tree.assign",
            "tree": self.tree_id,
            "k": self.k,
            "pos": q,
            "size": n,
            "ver": self.ver,
            "root": t[1].to_dict(),
            "parent": t[(q - 2) // self.k + 1].to_dict(),
            "children": slots({c: t[c] for c in P.children(q, self.k, n)}),
        }

    def _children_msg(self, d: dict[int, Member | None]) -> dict[str, Any]:
        assert self.table is not None
        return {
            "t": "tree.children",
            "tree": self.tree_id,
            "size": len(self.table),
            "ver": self.ver,
            "root": self.table[1].to_dict(),
            "set": slots(d),
        }

    def _assign_batch(self) -> None:
        """Give every queued joiner the next slot; one message per joiner and per parent."""
        t = self.table
        assert t is not None
        self.last_batch = self._now
        queue, self.queue, self.queued = self.queue, [], set()
        self.ver += 1
        k = self.k
        touched: dict[int, dict[int, Member | None]] = {}
        assigned: list[int] = []
        for j in queue:
            q = self.where.get(j.node_id)
            if q is None:
                q = len(t) + 1
                t[q] = j
                self.where[j.node_id] = q
                self.repl_ops[q] = j
                self._count("joins_assigned")
            else:
                self._count("joins_resynced")
            assigned.append(q)
            touched.setdefault((q - 2) // k + 1, {})[q] = j
        self.size = len(t)
        for q in assigned:
            self._send(t[q], self._assign_msg(q))
        for pp, d in touched.items():
            self._send(t[pp], self._children_msg(d))

    def _plan_remove(self, p: int) -> Member:
        """Empty slot ``p`` by moving the last node into it; tell everyone affected.

        Used by the root (p >= 2) and by a takeover coordinator (p == 1).
        Returns the member now at ``p`` (or the old occupant if p was last)."""
        t = self.table
        assert t is not None
        k = self.k
        n = len(t)
        leaving = t[p]
        if self.where.get(leaving.node_id) == p:
            self.where.pop(leaving.node_id)
        self.ver += 1
        self.repl_ops[n] = None
        if p == n:
            del t[n]
            self.size = n - 1
            if n > 1:
                self._send(t[(n - 2) // k + 1], self._children_msg({n: None}))
            return leaving
        mover = t.pop(n)
        t[p] = mover
        self.where[mover.node_id] = p
        self.repl_ops[p] = mover
        n -= 1
        self.size = n
        touched: dict[int, dict[int, Member | None]] = {}
        pp = P.parent(p, k)
        if pp is not None:
            touched.setdefault(pp, {})[p] = mover
        po = (n + 1 - 2) // k + 1
        if po != p:
            touched.setdefault(po, {})[n + 1] = None
        if p == 1:
            self._send(
                mover,
                {
                    "t": "tree.promote",
                    "tree": self.tree_id,
                    "k": k,
                    "size": n,
                    "ver": self.ver,
                    "table": slots(dict(t)),
                },
            )
        else:
            self._send(mover, self._assign_msg(p))
        for c in P.children(p, k, n):
            self._send(
                t[c],
                {
                    "t": "tree.parent",
                    "tree": self.tree_id,
                    "pos": c,
                    "parent": mover.to_dict(),
                    "size": n,
                    "ver": self.ver,
                    "root": t[1].to_dict(),
                },
            )
        for q, d in touched.items():
            self._send(t[q], self._children_msg(d))
        return mover

    def _root_handle_fail(self, q: int, node_id: str | None, reporter: Member) -> None:
        t = self.table
        assert t is not None
        n = len(t)
        if q < 2:
            return
        if q > n:
            self._send(reporter, self._children_msg({q: None}))
            return
        m = t[q]
        if node_id is not None and m.node_id == node_id:
            self._count("repairs")
            self._plan_remove(q)
            # If it is merely cut off one way, this tells it to resync instead of lingering.
            self._send(m, {"t": "tree.reject", "tree": self.tree_id, "pos": q})
            return
        # The reporter's picture of slot q is stale: re-send the truth to both ends.
        self._count("resyncs")
        holder = t[(q - 2) // self.k + 1]
        self._send(holder, self._children_msg({q: m}))
        self._send(m, self._assign_msg(q))
        rq = self.where.get(reporter.node_id)
        if reporter.node_id != holder.node_id and rq is not None and rq != 1:
            self._send(reporter, self._assign_msg(rq))

    def _on_fail(self, sender: Member, msg: dict[str, Any]) -> None:
        if not self._same_tree(msg):
            return
        q = f_int(msg, "pos", 1)
        node = msg.get("node")
        if node is not None and not isinstance(node, str):
            raise Malformed("fail.node")
        if self.status == "root":
            self._root_handle_fail(q, node, sender)

    def _flush_replica(self) -> None:
        """Ship this event's table changes to the root's children (full copy to newcomers)."""
        t = self.table
        if t is None or self.status != "root":
            return
        holders: set[str] = set()
        full_ops: list[list[Any]] | None = None
        delta_ops = slots(self.repl_ops) if self.repl_ops else None
        if delta_ops is not None:
            self.repl_seq += 1
        for c in P.children(1, self.k, len(t)):
            m = t[c]
            holders.add(m.node_id)
            if m.node_id not in self.repl_holders:
                if full_ops is None:
                    full_ops = slots(dict(t))
                self._send(
                    m,
                    {
                        "t": "tree.replica",
                        "tree": self.tree_id,
                        "ver": self.ver,
                        "size": len(t),
                        "seq": self.repl_seq,
                        "full": True,
                        "ops": full_ops,
                    },
                )
            elif delta_ops is not None:
                self._send(
                    m,
                    {
                        "t": "tree.replica",
                        "tree": self.tree_id,
                        "ver": self.ver,
                        "size": len(t),
                        "seq": self.repl_seq,
                        "full": False,
                        "ops": delta_ops,
                    },
                )
        self.repl_holders = holders
        self.repl_ops = {}

    def _on_replica(self, sender: Member, msg: dict[str, Any]) -> None:
        if not self._same_tree(msg):
            return
        full = msg.get("full")
        ops = msg.get("ops")
        seq = f_int(msg, "seq")
        if not isinstance(full, bool) or not isinstance(ops, list):
            raise Malformed("replica")
        if (
            self.parent is None
            or sender.node_id != self.parent.node_id
            or self.pos is None
            or not P.is_root_child(self.pos, self.k)
        ):
            self._count("ignored_replica")
            return
        # Kept raw and parsed only when needed (takeover, or every 64 deltas): a root
        # child should not pay member parsing for every join in a storm.
        if full:
            self.table, self.replica_log = {}, [ops]
        elif self.replica_log is not None and seq == self.repl_seq + 1:
            self.replica_log.append(ops)
            if len(self.replica_log) > 64:
                self._materialize_replica()
        else:  # missed a delta: our copy is useless; the next heartbeat asks for a full one
            self._count("replica_gap")
            self.table, self.replica_log = None, None
        self.repl_seq = seq

    def _materialize_replica(self) -> dict[int, Member] | None:
        """Apply the raw replica log to ``table``; None (and counted) if it is malformed."""
        if self.replica_log is None or self.table is None:
            return None
        log, self.replica_log = self.replica_log, []
        try:
            for ops in log:
                for q, m in f_slots({"ops": ops}, "ops").items():
                    if m is None:
                        self.table.pop(q, None)
                    else:
                        self.table[q] = m
        except Malformed:
            self._count("rejected_malformed")
            self.table, self.replica_log = None, None
            return None
        return self.table

    def _on_promote(self, sender: Member, msg: dict[str, Any]) -> None:
        tid = f_str(msg, "tree")
        k = f_int(msg, "k", 1, 1 << 16)
        ver = f_int(msg, "ver")
        table = {q: m for q, m in f_slots(msg, "table").items() if m is not None}
        n = len(table)
        if n < 1 or set(table) != set(range(1, n + 1)) or table[1].node_id != self.me.node_id:
            raise Malformed("promote.table")
        if tid != self.tree_id or self.status != "online":
            self._count("ignored_foreign_tree")
            return
        self._become_root(table, k, ver)

    def _become_root(self, table: dict[int, Member], k: int, ver: int) -> None:
        tid, contacts_probe = self.tree_id, self._now + self.cfg.probe_contacts_ms
        self._clear_tree()
        self.tree_id, self.k, self.pos, self.root = tid, k, 1, self.me
        self.table = dict(table)
        self.where = {m.node_id: q for q, m in table.items()}
        self.size, self.ver = len(table), ver
        self.children = {c: table[c] for c in P.children(1, k, len(table))}
        self.last_seen = {q: self._now for q in self.children}
        self.next_probe = contacts_probe
        self._count("became_root")
        self._set_status("root")

    # ------------------------------------------------------------------ heartbeats & repair

    def _online_tick(self) -> None:
        now, cfg = self._now, self.cfg
        assert self.parent is not None and self.pos is not None
        if now >= self.next_hb:
            self.next_hb = now + cfg.heartbeat_ms
            # our subtree's highest version travels up: a root that hears of a version above its
            # own (members that lived through a takeover on the other side of a split) jumps past
            # it, or those members would ignore every later fact as older than what they know
            hb: dict[str, Any] = {
                "t": "tree.hb",
                "tree": self.tree_id,
                "pos": self.pos,
                "ver": max(self.ver, self.sub_ver),
            }
            if self.replica_log is None and P.is_root_child(self.pos, self.k):
                hb["need_replica"] = True
            self._send(self.parent, hb)
        silence = now - self.last_seen.get(self.parent.node_id, now)
        if P.is_root_child(self.pos, self.k) and self.replica_log is not None:
            # refused since last heard from: position 2 acts now, position c two beats later for
            # each lower rank (its own refused heartbeat and takeover reach c well within that; two
            # coordinators would run the same plan from the same replica); else the root's silence
            refused = self.parent_refused_at
            heard = self.last_seen.get(self.parent.node_id, -(1 << 62))
            rank_wait = (self.pos - 2) * 2 * cfg.heartbeat_ms
            proven = refused is not None and refused >= heard and now - refused >= rank_wait
            if proven or silence >= cfg.confirm_ms * self.pos:  # > the root's own child timeout
                self._takeover()
                return
        elif silence >= (self.k + 3) * cfg.confirm_ms:  # longer than any takeover + repair
            self._count("orphaned")
            self._rejoin([m for m in (self.root, self.parent) if m is not None])
            return
        if self.need_sync and now >= self.sync_until:
            self._count("resync_failed")
            self._rejoin([m for m in (self.root, self.parent) if m is not None])
            return
        self._check_children()

    def _on_refused(self, peer: Member) -> None:
        """``peer``'s address refused a connection: a child is confirmed failed now (not after
        ``confirm_misses`` beats), a member the root was moving is replaced by the next last node,
        and a root child's takeover need not wait out the root's silence."""
        now, nid = self._now, peer.node_id
        if self.status not in ("root", "online"):
            return
        self._count("refused_peers")
        slot = next((q for q, m in self.children.items() if m.node_id == nid), None)
        if slot is not None:
            self.last_seen[slot] = min(self.last_seen.get(slot, now), now - self.cfg.confirm_ms)
            self._check_children()
        elif self.status == "root" and (q := self.where.get(nid)) is not None and q >= 2:
            self._root_handle_fail(q, nid, self.me)
        elif self.parent is not None and nid == self.parent.node_id:
            if nid == self.promoted and P.is_root_child(self.pos or 0, self.k):
                self._takeover()  # the node we handed the root to is dead too: hand it to the next last
            elif self.parent_refused_at is None or self.parent_refused_at < self.last_seen.get(nid, now):
                self.parent_refused_at = now  # the first refusal since last heard: _online_tick's takeover

    def _discount_pause(self, gap: int) -> None:
        """This node did not run for ``gap`` ms (stopped, suspended, starved of CPU): that silence
        is its own, so it is taken off every peer's before anyone is judged. Without this, a
        frozen root child resumed after its replacement read its parent as silent and took the
        root's place with its stale replica. A heartbeat goes out at once: a parent that replaced
        this node refuses it (``tree.reject``) and it resyncs through the root instead."""
        self._count("paused")
        self.last_seen = {key: min(self._now, seen + gap) for key, seen in self.last_seen.items()}
        self.vacant_since = {q: min(self._now, since + gap) for q, since in self.vacant_since.items()}
        self.next_hb = self._now

    def _check_children(self) -> None:
        """Confirm dead or missing children and report them to the root."""
        now, confirm = self._now, self.cfg.confirm_ms
        assert self.pos is not None
        for q in P.children(self.pos, self.k, self.size):
            m = self.children.get(q)
            if m is None:
                since = self.vacant_since.setdefault(q, now)
                if now - since < confirm:
                    continue
            else:
                self.vacant_since.pop(q, None)
                heard = self.last_seen.get(q, now)
                if now - heard < confirm:
                    if 2 * (now - heard) >= 3 * self.cfg.heartbeat_ms and self.nudged.get(q, heard - 1) < heard:
                        # a beat and a half late: one unasked ack, so a dead child's refused
                        # connection confirms it at once (`_on_refused`); a live one just reads it
                        self.nudged[q] = now
                        self._count("nudges")
                        self._send(m, self._hb_ack_msg())
                    continue
            if now - self.reported.get(q, -(1 << 62)) < confirm:
                continue
            if q not in self.reported:  # a new failure, not a repeated report of one still unrepaired
                self.confirmed_at_ms = now
            self.reported[q] = now
            self._count("failures_reported")
            node = m.node_id if m is not None else None
            if self.status == "root":
                self._root_handle_fail(q, node, self.me)
            elif self.root is not None:
                self._send(self.root, {"t": "tree.fail", "tree": self.tree_id, "pos": q, "node": node})

    def _takeover(self) -> None:
        """Root silent and we are the lowest live root child: hand hole 1 to the last node."""
        t = self._materialize_replica()
        n = len(t) if t is not None else 0
        if t is None or set(t) != set(range(1, n + 1)) or n < 2:
            self._count("takeover_bad_replica")
            self._rejoin([m for m in (self.root,) if m is not None])
            return
        self._count("takeovers")
        self.confirmed_at_ms = self._now
        self.where = {m.node_id: q for q, m in t.items()}
        self.ver = ((self.ver >> 32) + 1) << 32
        self.repl_ops = {}
        mover = self._plan_remove(1)
        self.promoted = mover.node_id
        if self.status == "online":  # we did not promote ourselves
            self.parent = self.root = mover
            self.last_seen[mover.node_id] = self._now

    def _on_hb(self, sender: Member, msg: dict[str, Any]) -> None:
        tid = f_str(msg, "tree")
        q = f_int(msg, "pos", 2)
        m = self.children.get(q)
        if self.status not in ("online", "root") or tid != self.tree_id or m is None or m.node_id != sender.node_id:
            self._count("rejected_position")
            self._send(sender, {"t": "tree.reject", "tree": tid, "pos": q})
            return
        self.last_seen[q] = self._now
        reported = msg.get("ver")
        if isinstance(reported, int) and not isinstance(reported, bool) and 0 <= reported < 1 << 62:
            self.sub_ver = max(self.sub_ver, reported)
            if self.status == "root" and reported > self.ver:
                self.ver = ((reported >> 32) + 1) << 32  # a new epoch above anything in the tree
                self._count("ver_raised")
        if msg.get("need_replica") is True and self.status == "root":
            self.repl_holders.discard(sender.node_id)
        self._send(sender, self._hb_ack_msg())

    def _hb_ack_msg(self) -> dict[str, Any]:
        assert self.root is not None
        return {
            "t": "tree.hb_ack",
            "tree": self.tree_id,
            "pos": self.pos,
            "size": self.size,
            "ver": self.ver,
            "root": self.root.to_dict(),
        }

    def _on_hb_ack(self, sender: Member, msg: dict[str, Any]) -> None:
        if not self._same_tree(msg):
            return
        size, ver, root = f_int(msg, "size", 1), f_int(msg, "ver"), f_member(msg, "root")
        if self.parent is None or sender.node_id != self.parent.node_id:
            self._count("rejected_position")
            return
        self.last_seen[sender.node_id] = self._now
        self.need_sync = False
        self._learn(size, ver, root)

    def _on_reject(self, sender: Member, msg: dict[str, Any]) -> None:
        f_str(msg, "tree")
        if self.status != "online" or self.parent is None or sender.node_id != self.parent.node_id:
            self._count("ignored_reject")
            return
        self._count("rejected_by_parent")
        if not self.need_sync and self.root is not None:
            self.need_sync = True
            self.sync_until = self._now + self.cfg.probe_contacts_ms
            self._send(self.root, {"t": "tree.join", "joiner": self.me.to_dict(), "hops": 0})

    def _on_children(self, sender: Member, msg: dict[str, Any]) -> None:
        if not self._same_tree(msg):
            return
        size, ver, root = f_int(msg, "size", 1), f_int(msg, "ver"), f_member(msg, "root")
        changes = f_slots(msg, "set")
        if self.pos is None:
            return
        allowed = P.child_range(self.pos, self.k)
        for q, m in changes.items():
            if q not in allowed:
                continue
            self.vacant_since.pop(q, None)
            self.reported.pop(q, None)
            if m is None:
                self.children.pop(q, None)
            else:
                self.children[q] = m
                self.last_seen[q] = self._now
        self._learn(size, ver, root)

    def _on_parent(self, sender: Member, msg: dict[str, Any]) -> None:
        if not self._same_tree(msg):
            return
        q = f_int(msg, "pos", 2)
        par, root = f_member(msg, "parent"), f_member(msg, "root")
        size, ver = f_int(msg, "size", 1), f_int(msg, "ver")
        if self.status != "online" or q != self.pos:
            self._count("ignored_stale_parent")
            return
        self.parent = par
        self.last_seen[par.node_id] = self._now
        self._learn(size, ver, root)

    # ------------------------------------------------------------------ broadcast

    def _send_up(self, bid: str, payload: dict[str, Any]) -> None:
        """Our own broadcast to the root (or flooded, when we are it); held while we have none."""
        if self.status == "root":
            self._flood(bid, payload)
        elif self.status == "online" and self.root is not None:
            self._send(
                self.root,
                {"t": "tree.bcast", "tree": self.tree_id, "id": bid, "payload": payload, "hops": 0, "up": True},
            )
        else:
            self._count("bcast_held")

    def _retry_broadcasts(self) -> None:
        assert self.outbox is not None
        due = self.outbox.due(self._now)
        self._count("bcast_dropped", due.given_up)
        for bid, payload in due.resend:
            self._count("bcast_retried")
            self._send_up(bid, payload)

    def _mark_seen(self, bid: str) -> bool:
        """Record ``bid``; False (and a duplicate count) if already seen."""
        if bid in self.seen:
            self._count("duplicates")
            return False
        self.seen[bid] = None
        if len(self.seen) > self.cfg.dedupe_capacity:
            self.seen.popitem(last=False)
        return True

    def _flood(self, bid: str, payload: dict[str, Any], hops: int = 0) -> None:
        if self.outbox is not None:
            self.outbox.done(bid)
        if not self._mark_seen(bid):
            return
        self._count("delivered")
        if hops > self.counters.get("bcast_max_hops", 0):
            self.counters["bcast_max_hops"] = hops
        self._acts.append(Deliver(payload))
        for m in self.children.values():
            self._send(
                m,
                {"t": "tree.bcast", "tree": self.tree_id, "id": bid, "payload": payload, "hops": hops + 1, "up": False},
            )

    def _on_bcast(self, sender: Member, msg: dict[str, Any]) -> None:
        if not self._same_tree(msg):
            return
        bid = f_str(msg, "id")
        payload = f_dict(msg, "payload")
        hops = f_int(msg, "hops", 0, 1 << 20)
        up = msg.get("up")
        if not isinstance(up, bool):
            raise Malformed("bcast.up")
        if up:
            if self.status == "root":
                self._flood(bid, payload)
            elif self.root is not None and self.root.node_id != sender.node_id:
                self._send(self.root, msg)  # our root moved on; pass it along
            return
        if self.parent is None or sender.node_id != self.parent.node_id:
            self._count("rejected_position")
            return
        self._flood(bid, payload, hops)

    # ------------------------------------------------------------------ probing, merge, resign

    def _probe(self) -> None:
        self.next_probe = self._now + self.cfg.probe_contacts_ms
        pool = [c for c in self.contacts.values() if c.node_id not in self.where]
        if not pool:
            return
        for c in self.rng.sample(pool, min(self.cfg.probe_fanout, len(pool))):
            self._send(c, {"t": "tree.whoroot", "tree": self.tree_id, "size": self.size, "root": self.me.to_dict()})

    def _member_probe(self) -> None:
        """Members look around too, more slowly than the root, and report other trees to it.

        Only the root may merge, but a contact that leads to another tree can
        sit on any member (say, the node that founded a tree and later moved
        down it); without this, two trees whose roots know no foreign contact
        would never meet.
        """
        self.next_probe = self._now + self.cfg.probe_contacts_ms * MEMBER_PROBE_FACTOR
        root_id = self.root.node_id if self.root else ""
        pool = [c for c in self.contacts.values() if c.node_id not in (self.me.node_id, root_id)]
        if pool:
            c = self.rng.choice(pool)
            self._send(
                c,
                {
                    "t": "tree.whoroot",
                    "tree": self.tree_id,
                    "size": self.size,
                    "root": self.root.to_dict() if self.root else self.me.to_dict(),
                },
            )

    def _on_contact(self, sender: Member, msg: dict[str, Any]) -> None:
        """A member found another tree: the root asks that tree's root and merges by the usual rule."""
        if not self._same_tree(msg) or self.status != "root":
            return
        other = f_member(msg, "contact")
        if other.node_id == self.me.node_id:
            return
        self.add_contacts([other])
        self._count("foreign_reported")
        self._send(other, {"t": "tree.whoroot", "tree": self.tree_id, "size": self.size, "root": self.me.to_dict()})

    def _on_whoroot(self, sender: Member, msg: dict[str, Any]) -> None:
        in_tree = self.status in ("online", "root") and self.root is not None
        self._send(
            sender,
            {
                "t": "tree.whoroot_reply",
                "tree": self.tree_id if in_tree else None,
                "size": self.size if in_tree else 0,
                "root": self.root.to_dict() if in_tree and self.root else None,
            },
        )

    def _key(self) -> tuple[int, str, str]:
        return (self.size, self.tree_id or "", self.me.node_id)

    def _on_whoroot_reply(self, sender: Member, msg: dict[str, Any]) -> None:
        tid = msg.get("tree")
        if tid is None:
            return
        tid = f_str(msg, "tree")
        size, root = f_int(msg, "size", 1), f_member(msg, "root")
        if self.status == "online" and tid != self.tree_id and self.root is not None:
            self._send(self.root, {"t": "tree.contact", "tree": self.tree_id, "contact": root.to_dict()})
            return
        if self.status != "root" or (tid == self.tree_id and root.node_id == self.me.node_id):
            return
        if (size, tid, root.node_id) > self._key():
            self._resign(root)
        else:
            self._count("merge_requested")
            self._send(root, {"t": "tree.merge", "tree": self.tree_id, "size": self.size, "root": self.me.to_dict()})

    def _on_merge(self, sender: Member, msg: dict[str, Any]) -> None:
        tid = f_str(msg, "tree")
        size, root = f_int(msg, "size", 1), f_member(msg, "root")
        if self.status != "root" or root.node_id == self.me.node_id:
            return
        if (size, tid, root.node_id) > self._key():
            self._resign(root)

    def _resign(self, to: Member) -> None:
        """Our tree is the smaller one: tell our subtree, then join the winner."""
        self._count("resigned")
        for m in self.children.values():
            self._send(m, {"t": "tree.resign", "tree": self.tree_id, "to": to.to_dict()})
        self._rejoin([to])

    def _on_resign(self, sender: Member, msg: dict[str, Any]) -> None:
        if not self._same_tree(msg):
            return
        to = f_member(msg, "to")
        if self.parent is None or sender.node_id != self.parent.node_id:
            self._count("rejected_position")
            return
        self._resign(to)


_Handler = Callable[[TreeNode, Member, dict[str, Any]], None]
_HANDLERS: dict[str, _Handler] = {
    "tree.join": TreeNode._on_join,
    "tree.assign": TreeNode._on_assign,
    "tree.children": TreeNode._on_children,
    "tree.parent": TreeNode._on_parent,
    "tree.promote": TreeNode._on_promote,
    "tree.replica": TreeNode._on_replica,
    "tree.fail": TreeNode._on_fail,
    "tree.hb": TreeNode._on_hb,
    "tree.hb_ack": TreeNode._on_hb_ack,
    "tree.reject": TreeNode._on_reject,
    "tree.bcast": TreeNode._on_bcast,
    "tree.whoroot": TreeNode._on_whoroot,
    "tree.whoroot_reply": TreeNode._on_whoroot_reply,
    "tree.merge": TreeNode._on_merge,
    "tree.contact": TreeNode._on_contact,
    "tree.resign": TreeNode._on_resign,
}
