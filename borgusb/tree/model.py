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
  A member placed under a new parent (it moved, rejoined or took the root's
  place) may have missed a flood that passed while it moved: its first
  heartbeat there sets ``catchup``, the parent's ack names the broadcasts it
  delivered in the last ``catchup_window_ms`` and the member asks for those it
  has not seen (``tree.catchup``); the parent sends them down (recent.py).

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
    tree.hb        {tree, pos, need_replica?, catchup?}   child -> parent
    tree.hb_ack    {tree, pos, size, ver, root, recent?}  parent -> child (recent: ids, when asked)
    tree.catchup   {tree, pos, ids}                       child -> new parent: send these down
    tree.reject    {tree, pos}                            parent -> impostor
    tree.bcast     {tree, id, payload, hops, up}
    tree.whoroot   {tree, size, root}                     root -> contact
    tree.whoroot_reply {tree|null, size, root|null}
    tree.merge     {tree, size, root}                     bigger root -> smaller
    tree.contact   {tree, contact}                        member -> its root: "another tree is there"
    tree.resign    {tree, to}                             flooded down a resigning tree
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import positions as P
from .merging import Merging
from .messages import Action, Deliver, Malformed, Member, Send, StatusChanged
from .outbox import BroadcastOutbox
from .state import TreeConfig, counter_key

__all__ = ["TreeConfig", "TreeNode", "Member", "Send", "Deliver", "StatusChanged", "Action"]


class TreeNode(Merging):
    """One member's view of the PeerTree.  Every public method returns actions."""

    __slots__ = ()

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

    def on_unreachable(
        self, now_ms: int, peer: Member, refused: bool = False, lost: Sequence[dict[str, Any]] = ()
    ) -> list[Action]:
        """The transport could not reach ``peer``. A timeout proves nothing (a lossy link, a busy or
        frozen peer): failures stay confirmed by silence. A refused connection does: nothing listens
        at the address the member gave, so it cannot hold its place there (`_on_refused`). `lost`:
        the messages the failed send took with it; the flood's, to a child, go again at that child's
        next heartbeat (`Healing._keep_lost`), so a lossy link does not cost a subtree a broadcast."""
        self._begin(now_ms)
        self._count("unreachable")
        self._keep_lost(peer, lost)
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

    # ------------------------------------------------------------------ routing

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
        self._count(counter_key("recv.", msg["t"]))
        try:
            handler(self, sender, msg)
        except Malformed:
            self._count("rejected_malformed")


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
    "tree.catchup": TreeNode._on_catchup,
    "tree.reject": TreeNode._on_reject,
    "tree.bcast": TreeNode._on_bcast,
    "tree.whoroot": TreeNode._on_whoroot,
    "tree.whoroot_reply": TreeNode._on_whoroot_reply,
    "tree.merge": TreeNode._on_merge,
    "tree.contact": TreeNode._on_contact,
    "tree.resign": TreeNode._on_resign,
}
