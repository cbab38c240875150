"""Other trees: roots and members probe contacts, the smaller of two trees resigns and
its members rejoin the larger.
"""

from __future__ import annotations

from typing import Any

from .broadcasting import Broadcasting
from .messages import Member, f_int, f_member, f_str
from .state import MEMBER_PROBE_FACTOR


class Merging(Broadcasting):
    """Finding other trees and folding the smaller into the larger."""

    __slots__ = ()

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
