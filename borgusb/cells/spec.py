"""CellSpec: the one declaration of a cell type, cheap to import.

Each cell package's ``__init__.py`` holds a ``SPEC`` and nothing heavy: the
runtime class, the client and the conduit pages are named by import path
(``"module:attr"``, the entry-point format) and loaded only by the process
that needs them, because imports are the slow part of starting a cell.
Built-in cells are the packages under ``borgusb/cells/``; a cell shipped in
another distribution declares its SPEC under the ``borgusb.cells`` entry-point
group and brings its own DNA row (checked against the table's ports).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..dna import CellDNA
from ..dna import get as dna_get

if TYPE_CHECKING:
    from .kit.cell import Cell
    from .kit.settings import Settings


def load(path: str) -> Any:
    """``"package.module:attr"`` -> the object (imported on demand)."""
    module, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class CellSpec:
    """What the node, the conduit and the image need to know of a cell type."""

    dna: str | CellDNA  # a name in the DNA table, or (out-of-tree cells) the row itself
    runtime: str  # "module:Class", a subclass of borgusb.cells.kit.Cell
    settings: str | None = None  # "module:Class", a subclass of Settings
    client: str | None = None  # "module:Class", the typed client other cells and the conduit use
    web: str | None = None  # "module:setup", called with the conduit's app to add its pages
    network_clock: bool = True  # False only for the cell that is the network clock

    @property
    def name(self) -> str:
        return self.dna if isinstance(self.dna, str) else self.dna.name

    def dna_row(self) -> CellDNA:
        return dna_get(self.dna) if isinstance(self.dna, str) else self.dna

    def runtime_class(self) -> type[Cell]:
        return load(self.runtime)

    def settings_class(self) -> type[Settings]:
        from .kit.settings import Settings

        return load(self.settings) if self.settings else Settings
