"""Cell types. Each cell type that has behaviour registers its class here.

The registry names classes by import path and loads only the one a process
runs, so a node process pays for its own cell's code and nothing else.
"""

from __future__ import annotations

import importlib

from ..dna import CELLS, get
from .base import Cell

# Cell types whose behaviour exists so far; the rest of the DNA table is
# reserved for the cells their own issues build.
CELL_CLASSES: dict[str, str] = {
    "peerTreeNet": "borgusb.cells.base:Cell",
    "serviceMgrCell": "borgusb.cells.servicemgr:ServiceMgrCell",
    "shardTreeCell": "borgusb.cells.shard:ShardCell",
    "cronoTreeCell": "borgusb.cells.crono:CronoCell",  # network time (issue #9)
}


def cell_class(name: str) -> type[Cell]:
    get(name)  # unknown names get the list of known ones
    try:
        path = CELL_CLASSES[name]
    except KeyError:
        available = ", ".join(CELL_CLASSES)
        raise ValueError(f"the {name} cell is not available in this version yet (available: {available})") from None
    module, _, cls = path.partition(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["CELLS", "CELL_CLASSES", "Cell", "cell_class"]
