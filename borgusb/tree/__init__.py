"""PeerTree: the sans-I/O broadcast-tree protocol (``model``), its arithmetic
(``positions``) and an in-memory simulator (``sim``)."""

from .messages import Action, Deliver, Member, Send, StatusChanged
from .model import TreeConfig, TreeNode

__all__ = ["Action", "Deliver", "Member", "Send", "StatusChanged", "TreeConfig", "TreeNode"]
