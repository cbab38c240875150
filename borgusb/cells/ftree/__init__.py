"""ftreeFileMgrCell: keeps people's root pointers (the protocol core is `borgusb.files`).

A cell never sees a key that opens anything: folder manifests and file bytes are ciphertext
stored through the shard cell by the client (CLI, the conduit's Files page: web.py), where the
wallet is unlocked."""

from __future__ import annotations

from ..spec import CellSpec

SPEC = CellSpec(
    dna="ftreeFileMgrCell",
    runtime="borgusb.cells.ftree.cell:FtreeCell",
    settings="borgusb.cells.ftree.settings:FtreeSettings",
    client="borgusb.cells.ftree.client:FtreeClient",
    web="borgusb.cells.ftree.web:setup",
)
