"""The root's work: assigning queued joiners in batches, moving the last node into a
hole, answering failure reports, shipping the table's replica to its children, and the
root's side of a takeover (promotion).
"""

from __future__ import annotations

from typing import Any

from . import positions as P
from .joining import Joining
from .messages import Malformed, Member, f_int, f_slots, f_str, slots


class RootWork(Joining):
    """What the root does for the tree (and a takeover coordinator for hole 1)."""

    __slots__ = ()

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
        queue, self.queue, self.queued = self.queue, [], None
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
            full = self.repl_holders is None or m.node_id not in self.repl_holders
            if full and full_ops is None:
                full_ops = slots(dict(t))
            ops = full_ops if full else delta_ops
            if ops is not None:
                self._send(
                    m,
                    {
                        "t": "tree.replica",
                        "tree": self.tree_id,
                        "ver": self.ver,
                        "size": len(t),
                        "seq": self.repl_seq,
                        "full": full,
                        "ops": ops,
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
