"""HolderCell: a cell that keeps records for other people on the holders that the placement lottery
picks among its tree's members (the ledger's account chains, mail inboxes, file-manager root pointers).

What such a cell shares, written once: where its records live, and the member view it picks among.

* **Records.** Without ``--data``: with the machine's node key they are kept across restarts, under
  ``data_root`` (default ``/dev/shm``), since a holder that forgot them could, say, vote twice; with a
  key made for this process only (a test cluster) in a temporary directory removed at a clean stop,
  because nobody can sign as that key again.
* **Member view.** The tree root's member table (`Cell.read_members`), read every `view_every_s`
  and on demand (`refresh_view`); `use_members` is where a cell reacts to a new table.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from ...dna import CellDNA
from .cell import Cell


class HolderCell(Cell):
    view_every_s: ClassVar[float] = 1.0

    def __init__(self, dna: CellDNA, ip: str, *, data_root: str = "", **kw: Any) -> None:
        self.ephemeral_key = kw.get("key") is None
        self._temp_dir = kw.get("data_dir") is None and self.ephemeral_key
        if kw.get("data_dir") is None:
            root = data_root or ("/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir())
            os.makedirs(root, exist_ok=True)
            if self._temp_dir:
                kw["data_dir"] = Path(tempfile.mkdtemp(prefix=f"borgusb-{dna.name}-{ip}-", dir=root))
            else:
                kw["data_dir"] = Path(root) / f"borgusb-{dna.name}"
        super().__init__(dna, ip, **kw)
        assert self.data_dir is not None
        self.records_dir = Path(self.data_dir)
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self.members: dict[str, str] = {self.key.public_key_hex: self.me.ip}  # node key -> ip, the root's table

    async def on_start(self) -> None:
        self._spawn(self._view_loop())

    async def on_stop(self) -> None:
        if self._temp_dir:
            shutil.rmtree(self.records_dir, ignore_errors=True)

    async def _view_loop(self) -> None:
        while True:
            await self.refresh_view()
            await asyncio.sleep(self.view_every_s)

    async def refresh_view(self) -> bool:
        """Read the tree root's member table; True when it could be read."""
        members = await self.read_members()
        if members:
            self.use_members(members)
        return members is not None

    def use_members(self, members: dict[str, str]) -> None:
        """Override to follow a new member table (the holder sets change with it)."""
        self.members = members
