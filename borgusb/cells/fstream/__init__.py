"""fStreamCell: media and other objects served from shards over plain HTTP with byte ranges (`borgusb.fstream`)."""

from __future__ import annotations

from ..spec import CellSpec

SPEC = CellSpec(
    dna="fStreamCell",
    runtime="borgusb.cells.fstream.cell:FStreamCell",
    settings="borgusb.cells.fstream.settings:FStreamSettings",
    web="borgusb.cells.fstream.web:setup",
)
