"""A member finding its place: founding a tree, joining through contacts, the
root's side of a join (admission per address, the queue), an assignment taken.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from . import positions as P
from .admission import JoinAdmission
from .messages import Malformed, Member, f_int, f_member, f_slots, f_str
from .state import TreeState


class Joining(TreeState):
    """Finding a place: found, join, forward, admit, take an assignment."""

    __slots__ = ()

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
            if (self.queued is not None and joiner.node_id in self.queued) or joiner.node_id == self.me.node_id:
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
            if self.queued is None:
                self.queued = set()
            self.queued.add(joiner.node_id)
            self.queue.append(joiner)
            if self.addr_counts is not None and self.addr_counts_ver == self.ver:
                self.addr_counts[joiner.ip] += 1
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
        if self.admission is None:
            self.admission = JoinAdmission(self.cfg.join_burst, self.cfg.join_every_ms)
        if self.admission.allow(address, self._now):
            return True
        self._count("refused:join_rate")
        return False

    def _members_at(self, ip: str) -> int:
        """Members of the table (and queued) at one address. Counted once per table version (every
        change of the table bumps it) and kept up by each join queued: a storm of n joins cost
        O(n) each, O(n^2) in all, when this counted the table per join (30,000 joins: 28 s)."""
        if self.addr_counts is None or self.addr_counts_ver != self.ver:
            counts = Counter(m.ip for m in (self.table or {}).values())
            counts.update(m.ip for m in self.queue if m.node_id not in self.where)
            self.addr_counts, self.addr_counts_ver = counts, self.ver
        return self.addr_counts[ip]

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
