"""Failure detection and repair: heartbeats, silence and refused connections, children
confirmed and reported, a root child's takeover, and the messages that keep parents and
children in step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import positions as P
from .messages import Member, f_int, f_member, f_slots, f_str, f_strs
from .rootwork import RootWork
from .state import MAX_LOST_DOWN


class Healing(RootWork):
    """Who is alive, judged by silence or by a refused connection, and the repairs that follow."""

    __slots__ = ()

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
            if self.caught_from != self.parent.node_id:
                hb["catchup"] = True  # a new parent: what did it deliver lately? (recent.py)
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
        elif self.parent is not None and nid == self.parent.node_id and P.is_root_child(self.pos or 0, self.k):
            # only a root child acts on its parent's refusal (a takeover); a deeper member's parent
            # is replaced by the root, on its own parent's report
            if nid == self.promoted:
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
                    nudged = self.nudged
                    if 2 * (now - heard) >= 3 * self.cfg.heartbeat_ms and (nudged or {}).get(q, heard - 1) < heard:
                        # a beat and a half late: one unasked ack, so a dead child's refused
                        # connection confirms it at once (`_on_refused`); a live one just reads it
                        if nudged is None:
                            nudged = self.nudged = {}
                        nudged[q] = now
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

    def _keep_lost(self, peer: Member, lost: Sequence[dict[str, Any]]) -> None:
        """Keep the flood's messages a failed send to child `peer` lost (at most `MAX_LOST_DOWN` each)."""
        down = [m for m in lost if isinstance(m, dict) and m.get("t") == "tree.bcast" and m.get("up") is False]
        q = next((q for q, m in self.children.items() if m.node_id == peer.node_id), None)
        if not down or q is None:
            return
        if self.lost_down is None:
            self.lost_down = {}
        kept = self.lost_down.setdefault(q, [])
        kept.extend(down)
        self._count("bcast_down_kept", len(down))
        del kept[:-MAX_LOST_DOWN]

    def _on_hb(self, sender: Member, msg: dict[str, Any]) -> None:
        tid = f_str(msg, "tree")
        q = f_int(msg, "pos", 2)
        m = self.children.get(q)
        if self.status not in ("online", "root") or tid != self.tree_id or m is None or m.node_id != sender.node_id:
            self._count("rejected_position")
            self._send(sender, {"t": "tree.reject", "tree": tid, "pos": q})
            return
        self.last_seen[q] = self._now
        if self.lost_down is not None and q in self.lost_down:  # it answers again: what a failed send lost
            for lost in self.lost_down.pop(q):
                self._count("bcast_down_resent")
                self._send(sender, lost)
        reported = msg.get("ver")
        if isinstance(reported, int) and not isinstance(reported, bool) and 0 <= reported < 1 << 62:
            self.sub_ver = max(self.sub_ver, reported)
            if self.status == "root" and reported > self.ver:
                self.ver = ((reported >> 32) + 1) << 32  # a new epoch above anything in the tree
                self._count("ver_raised")
        if msg.get("need_replica") is True and self.status == "root" and self.repl_holders is not None:
            self.repl_holders.discard(sender.node_id)
        ack = self._hb_ack_msg()
        if msg.get("catchup") is True:
            ack["recent"] = self.recent.ids(self._now) if self.recent is not None else []
        self._send(sender, ack)

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
        if "recent" in msg:
            self._catch_up(sender, f_strs(msg, "recent", self.cfg.catchup_capacity))

    def _catch_up(self, parent: Member, recent: list[str]) -> None:
        """Our new parent named what it delivered lately: ask for the ones we have not seen."""
        self.caught_from = parent.node_id
        missing = [bid for bid in recent if bid not in self.seen]
        if missing:
            self._count("catchup_asked", len(missing))
            self._send(parent, {"t": "tree.catchup", "tree": self.tree_id, "pos": self.pos, "ids": missing})

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
