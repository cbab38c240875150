"""Broadcasts: a member's own go up to the root (kept in its outbox until the flood brings
them back), the root floods them down, every node delivers each id once; a member placed
under a new parent catches up on what that parent delivered lately (recent.py).
"""

from __future__ import annotations

from typing import Any

from . import positions as P
from .healing import Healing
from .messages import Deliver, Malformed, Member, f_dict, f_int, f_str, f_strs
from .recent import RecentBroadcasts


class Broadcasting(Healing):
    """Up to the root, flooded down, delivered once per id."""

    __slots__ = ()

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
        if self.pos is not None and P.child_range(self.pos, self.k).start <= self.size:
            # a parent keeps it for a child placed under it in the meantime (recent.py); leaves,
            # most of a tree, keep nothing
            if self.recent is None:
                self.recent = RecentBroadcasts(self.cfg.catchup_capacity, self.cfg.catchup_window_ms)
            self.recent.add(bid, payload, hops, self._now)
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

    def _on_catchup(self, sender: Member, msg: dict[str, Any]) -> None:
        """A child under us since lately asks for broadcasts it missed: sent down as the flood
        would have, once per member at a slot within the window (each id at most once per ask):
        a child asking again and again cannot make us send what we keep over and over."""
        if not self._same_tree(msg):
            return
        q = f_int(msg, "pos", 2)
        ids = f_strs(msg, "ids", self.cfg.catchup_capacity)
        m = self.children.get(q)
        if m is None or m.node_id != sender.node_id:
            self._count("rejected_position")
            return
        served = self.catchup_served
        if served is None:
            served = self.catchup_served = {}
        who, when = served.get(q, ("", -(1 << 62)))
        if who == sender.node_id and self._now - when < self.cfg.catchup_window_ms:
            self._count("refused:catchup_again")
            return
        served[q] = (sender.node_id, self._now)
        for stale in [s for s in served if s not in self.children]:
            del served[stale]
        found = self.recent.get(list(dict.fromkeys(ids)), self._now) if self.recent is not None else []
        self._count("catchup_sent", len(found))
        for bid, payload, hops in found:
            self._send(
                m,
                {"t": "tree.bcast", "tree": self.tree_id, "id": bid, "payload": payload, "hops": hops + 1, "up": False},
            )
