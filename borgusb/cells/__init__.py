"""Cell types: each is a package under ``borgusb/cells/`` whose ``__init__`` declares a ``SPEC``.

The registry finds them by walking this package (and the ``borgusb.cells``
entry-point group, for cells shipped elsewhere) and imports only the SPECs,
which are cheap: a process loads the runtime code of its own cell and
nothing else. The DNA table (`borgusb.dna`) stays the one source of names,
ports and fan-out; a SPEC names its row.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from importlib.metadata import entry_points

from ..dna import CELLS, CellDNA, get, register
from .spec import CellSpec

ENTRY_POINT_GROUP = "borgusb.cells"
_NOT_CELLS = {"kit"}


@lru_cache(maxsize=1)
def specs() -> dict[str, CellSpec]:
    """Every cell type this installation implements, by DNA name, in DNA-table order."""
    found: dict[str, CellSpec] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg and info.name not in _NOT_CELLS:
            spec = getattr(importlib.import_module(f"{__name__}.{info.name}"), "SPEC", None)
            if isinstance(spec, CellSpec):
                found[spec.name] = spec
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        spec = ep.load()
        if not isinstance(spec, CellSpec):
            raise TypeError(f"entry point {ep.name} ({ep.value}) is not a CellSpec")
        if spec.name in found:
            raise ValueError(f"cell type {spec.name} is declared twice ({ep.value})")
        if not isinstance(spec.dna, str):
            register(spec.dna)
        found[spec.name] = spec
    order = list(CELLS)
    return dict(sorted(found.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def implemented() -> list[str]:
    """The names of the cell types a node runs (the image and hosted mode start each)."""
    return list(specs())


def spec(name: str) -> CellSpec:
    """The SPEC of a cell type; a clear error for unknown or not-yet-implemented ones."""
    found = specs()
    if name in found:
        return found[name]
    if name in CELLS:
        raise ValueError(f"the {name} cell is not available in this version yet (available: {', '.join(found)})")
    raise ValueError(f"unknown cell type {name!r}; known: {', '.join([*CELLS, *(n for n in found if n not in CELLS)])}")


def dna_of(name: str) -> CellDNA:
    """A cell type's DNA row, including the rows that cells shipped elsewhere bring with their SPECs."""
    specs()
    return get(name)


__all__ = ["ENTRY_POINT_GROUP", "CellSpec", "dna_of", "implemented", "spec", "specs"]
