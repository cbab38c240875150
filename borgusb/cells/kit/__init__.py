"""The cell kit: everything a cell type is built from.

A cell package imports from here only::

    from borgusb.cells.kit import Cell, CellClient, RequestError, Settings, receptor, on_broadcast, setting

See the README's "Adding a cell" for a walkthrough.
"""

from __future__ import annotations

from ..spec import CellSpec
from .cell import (
    ANNOUNCE_MS,
    FRAME_PATH,
    MAX_FRAME,
    Cell,
    Registry,
    release_startup_memory,
)
from .client import CellClient
from .errors import RequestError
from .handlers import frame, on_broadcast, receptor, route
from .settings import Settings, SettingsError, setting

__all__ = [
    "ANNOUNCE_MS",
    "FRAME_PATH",
    "MAX_FRAME",
    "Cell",
    "CellClient",
    "CellSpec",
    "Registry",
    "RequestError",
    "Settings",
    "SettingsError",
    "frame",
    "on_broadcast",
    "receptor",
    "release_startup_memory",
    "route",
    "setting",
]
