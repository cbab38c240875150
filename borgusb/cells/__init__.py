"""Cell types. Each cell type that has behaviour registers its class here."""

from __future__ import annotations

from ..dna import CELLS, get
from .base import Cell
from .crono import CronoCell
from .servicemgr import ServiceMgrCell
from .shard import ShardCell

# Cell types whose behaviour exists so far; the rest of the DNA table is
# reserved for the cells their own issues build.
CELL_CLASSES: dict[str, type[Cell]] = {
    "peerTreeNet": Cell,
    "serviceMgrCell": ServiceMgrCell,
    "shardTreeCell": ShardCell,
}
CELL_CLASSES["cronoTreeCell"] = CronoCell  # network time (issue #9)


def cell_class(name: str) -> type[Cell]:
    get(name)  # unknown names get the list of known ones
    try:
        return CELL_CLASSES[name]
    except KeyError:
        available = ", ".join(CELL_CLASSES)
        raise ValueError(f"the {name} cell is not available in this version yet (available: {available})") from None


__all__ = ["CELLS", "CELL_CLASSES", "Cell", "ServiceMgrCell", "ShardCell", "cell_class"]
