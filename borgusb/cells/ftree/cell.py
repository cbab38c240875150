"""ftreeFileMgrCell: the holder of root pointers, and the door through which a client finds one.

* ``ft.root.store`` (a holder): keep a pointer if this cell is among the owner's R holders in its
  view of the tree (`files.root.holders`) and `RootStore` takes it; refusals carry the core's
  reason word (``malformed``, ``bad_signature``, ``stale``, ``rate_limited``, ``full``) or
  ``not_placed``, and are counted.
* ``ft.root.put`` (any cell): deliver a pointer to the owner's holders; the reply says how many
  kept it against the quorum (a majority) and, when too few did, the pointer the holders keep
  instead (the client then merges).
* ``ft.root.held`` / ``ft.root.get``: one holder's pointer / the newest among the holders.

Nothing here can open a person's data: pointers name ciphertext, and a pointer counts only
under its owner's signature, so a cell that lies can hide a pointer but not forge one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections import Counter
from typing import Any

from ... import envelope
from ...dna import CellDNA
from ...files.errors import FilesError
from ...files.root import RootPointer, RootStore, check_root, holders, newest, quorum
from ...ledger.accounts import is_account
from ..kit import RequestError, receptor
from ..kit.holdercell import HolderCell
from .client import FtreeClient
from .settings import FtreeSettings

log = logging.getLogger(__name__)

VIEW_EVERY_S = 2.0
_STATUS = {"stale": 409, "rate_limited": 429, "full": 507, "not_placed": 421}


class FtreeCell(HolderCell):
    view_every_s = VIEW_EVERY_S
    settings: FtreeSettings

    def __init__(self, dna: CellDNA, ip: str, **kw: Any) -> None:
        settings = kw.get("settings")
        if not isinstance(settings, FtreeSettings):
            settings = kw["settings"] = FtreeSettings.from_sources()
        super().__init__(dna, ip, data_root=settings.data_root, **kw)
        self.roots_dir = self.records_dir / "roots"
        self.roots_dir.mkdir(parents=True, exist_ok=True)
        self.roots = RootStore(settings.max_owners, settings.burst, settings.refill_ms)
        for path in sorted(self.roots_dir.glob("*.root"))[: settings.max_owners]:
            try:
                self.roots.offer(0, path.read_bytes())
            except (OSError, FilesError) as exc:
                self.counters["ft_root_unreadable"] += 1
                log.warning("ftreeFileMgrCell: %s not loaded: %s", path.name, exc)

    def _holders(self, owner: str) -> list[str]:
        return holders(owner, self.members, self.settings.r)

    # ------------------------------------------------------------ receptors

    def _pointer(self, payload: Any) -> RootPointer:
        doc = payload.get("pointer") if isinstance(payload, dict) else None
        try:
            return check_root(doc)
        except FilesError as exc:
            self.counters[f"ft_refused_{exc.reason}"] += 1
            raise RequestError(exc.reason, str(exc)) from None

    def _keep(self, ptr: RootPointer) -> RootPointer:
        if self.key.public_key_hex not in self._holders(ptr.owner):
            self.counters["ft_refused_not_placed"] += 1
            raise RequestError("not_placed", "this cell does not hold that owner's pointer", 421)
        try:
            kept = self.roots.offer(int(self.clock.now_ms()), ptr.encode())
        except FilesError as exc:
            self.counters[f"ft_refused_{exc.reason}"] += 1
            raise RequestError(exc.reason, str(exc), _STATUS.get(exc.reason, 400)) from None
        path = self.roots_dir / f"{hashlib.sha256(kept.owner.encode()).hexdigest()[:32]}.root"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(kept.encode())
        os.replace(tmp, path)
        return kept

    @receptor("ft.root.store")
    async def _r_store(self, env: envelope.Envelope) -> Any:
        return {"pointer": self._keep(self._pointer(env.payload)).to_dict()}

    @receptor("ft.root.held")
    async def _r_held(self, env: envelope.Envelope) -> Any:
        owner = env.payload.get("owner") if isinstance(env.payload, dict) else None
        if not is_account(owner):
            raise RequestError("malformed", "owner is a public key")
        ptr = self.roots.get(owner)
        return {"pointer": ptr.to_dict() if ptr else None}

    async def _ask(self, holder: str, store: RootPointer | None, owner: str) -> RootPointer | None:
        """One holder's pointer after offering it `store` (None: only ask)."""
        if holder == self.key.public_key_hex:
            return self._keep(store) if store is not None else self.roots.get(owner)
        client = FtreeClient(self.peers, self.members[holder], pubkey=holder)
        call = client.store_root(store) if store is not None else client.held_root(owner)
        return await asyncio.wait_for(call, self.settings.ask_timeout_ms / 1000)

    async def _gather(self, chosen: list[str], store: RootPointer | None, owner: str) -> list[Any]:
        return list(await asyncio.gather(*(self._ask(h, store, owner) for h in chosen), return_exceptions=True))

    @receptor("ft.root.put")
    async def _r_put(self, env: envelope.Envelope) -> Any:
        ptr = self._pointer(env.payload)
        chosen = self._holders(ptr.owner)
        answers = await self._gather(chosen, ptr, ptr.owner)
        refused = Counter(getattr(a, "reason", type(a).__name__) for a in answers if not isinstance(a, RootPointer))
        kept = sum(1 for a in answers if isinstance(a, RootPointer) and a.id == ptr.id)
        best: RootPointer | None = None
        if kept < quorum(len(chosen)):  # another write got there first: tell the client which, to merge
            held = [a for a in await self._gather(chosen, None, ptr.owner) if isinstance(a, RootPointer)]
            best = newest(a for a in held if a.owner == ptr.owner and a.id != ptr.id)
        self.counters["ft_root_puts"] += 1
        return {
            "holders": len(chosen),
            "quorum": quorum(len(chosen)),
            "kept": kept,
            "refused": dict(refused),
            "newest": best.to_dict() if best is not None else None,
        }

    @receptor("ft.root.get")
    async def _r_get(self, env: envelope.Envelope) -> Any:
        owner = env.payload.get("owner") if isinstance(env.payload, dict) else None
        if not is_account(owner):
            raise RequestError("malformed", "owner is a public key")
        answers = await self._gather(self._holders(owner), None, owner)
        answered = sum(1 for a in answers if not isinstance(a, BaseException))
        best = newest(a for a in answers if isinstance(a, RootPointer) and a.owner == owner)
        return {"pointer": best.to_dict() if best else None, "answered": answered}

    def status(self) -> dict[str, Any]:
        doc = super().status()
        doc["files"] = {
            "members": len(self.members),
            "r": self.settings.r,
            "roots": len(self.roots),
            "refused": dict(self.roots.refused),
        }
        return doc
