"""An agent's working memory: the original's dynamic buffer, bounded and ranked.

About twenty items, each ranked 1 to 1000. When a new item does not fit, the lowest-ranked item
goes first (the oldest of equal ranks), so what the agent ranked high survives a long session and
the prompt the model reads stays the same size however long the agent thinks.
"""

from __future__ import annotations

from dataclasses import dataclass

CAPACITY = 20
MAX_ITEM_CHARS = 400
DEFAULT_RANK = 500


@dataclass(slots=True)
class Item:
    id: int
    text: str
    rank: int


class WorkingMemory:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.items: list[Item] = []
        self._next = 1

    def add(self, text: str, rank: int = DEFAULT_RANK) -> Item | None:
        """Keep text (cut to `MAX_ITEM_CHARS`); the item dropped to make room, if any."""
        item = Item(self._next, text[:MAX_ITEM_CHARS], min(max(rank, 1), 1000))
        self._next += 1
        self.items.append(item)
        if len(self.items) <= self.capacity:
            return None
        lowest = min(self.items, key=lambda i: (i.rank, i.id))
        self.items.remove(lowest)
        return lowest

    def rank(self, item_id: int, rank: int) -> bool:
        for item in self.items:
            if item.id == item_id:
                item.rank = min(max(rank, 1), 1000)
                return True
        return False

    def prune(self, below: int) -> int:
        """Drop every item ranked below `below`; how many went."""
        kept = [i for i in self.items if i.rank >= below]
        dropped = len(self.items) - len(kept)
        self.items = kept
        return dropped

    def render(self) -> str:
        """The items as the model reads them, highest rank first."""
        ordered = sorted(self.items, key=lambda i: (-i.rank, -i.id))
        return "\n".join(f"[{i.id}] (rank {i.rank}) {i.text}" for i in ordered) or "(empty)"

    def to_list(self) -> list[dict[str, object]]:
        return [{"id": i.id, "text": i.text, "rank": i.rank} for i in self.items]
