"""The shard cell's side of the ``storage`` price (docs/ledger.md, "Paying for storage").

Each holder sells the keeping of its own copies: it meters the MiB-hours of each owner's shards it
holds (`shard.billing.StorageMeter`, every `ShardSettings.bill_ms`) and charges them to that owner's
prepaid book here (`peerpays.prepaid.Prepaid`, ``credit.json``), which takes the owner's free share
first (`billing.free_share`: this holder's expected part of the owner's 1 GiB free quota, or the
``storage_free`` setting). A new put's shard (``shard.hold`` with ``"new": true``, or this node's own
placement of a ``shard.put``) is taken only while the owner's bytes here stay within the free share,
or the owner has credit here; otherwise it is refused ``payment_required`` (402) and the placement
moves on to the next ticket. A repair is never refused, and nothing held is dropped for a debt: the
meter keeps charging it, so the next put waits for a payment. ``shard.credit`` takes a payment's
certificate (checked by this node's peerPaysCell), ``shard.usage`` says what is held and left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from ... import envelope
from ...ledger.credit import DAY_MS
from ...ledger.rules import amount, mib_hours
from ...shard import model, placement
from ...shard.billing import StorageMeter, free_per_day, free_share
from ..kit import RequestError, receptor
from ..peerpays.client import PayClient
from ..peerpays.prepaid import Prepaid
from .base import ShardBase

log = logging.getLogger("borgusb.shard.selling")

RULE = "storage"
SLACK = 2  # a repair's copy may rank this far beyond R (earn.py's PLACEMENT_SLACK): the next ticket
HELD_EVERY_S = 5.0  # how old the per-owner totals a new put is checked against may be
SAVE_EVERY_S = 60.0  # charges written at most this often (a payment at once)
FREE_POOL_PART = 2  # at most this part of the store is held free for all owners together (keys are free to make)


class StorageSeller(ShardBase):
    """The metered charge for held copies, the gate on new puts, and the receptors to pay ahead."""

    storage: Prepaid
    bill_ms: int
    storage_free: int
    default_r: int
    _meter: StorageMeter
    _held: tuple[float, dict[str, int]]

    def _init_seller(self, bill_ms: int, storage_free: int) -> None:
        self.bill_ms, self.storage_free = bill_ms, storage_free
        self._meter, self._held = StorageMeter(), (-1e9, {})
        free = self.free_bytes()
        self.storage = Prepaid(
            RULE,
            "shard",
            Path(self.data_dir) / "credit.json" if self.data_dir is not None else None,
            self.key.public_key_hex,
            free_per_day(free),
            free_per_day(self.store.quota_bytes),  # the pool: all this node could hold, a day
            lambda cert: PayClient(self.peers, self.ip).verify(cert),
            self.counters,
            save_every_s=SAVE_EVERY_S,
            describe=lambda key: {"held": self._held_now().get(key, 0), "free_bytes": self.free_bytes()},
        )

    def free_bytes(self) -> int:
        """One owner's free share at this holder (the setting, else from R and the shard nodes seen)."""
        return self.storage_free or free_share(self.default_r, len(self.live()))

    def _stored(self, owner: str, n: int) -> None:
        """Count a shard just stored in the cached totals (until they are read again)."""
        held = self._held_now()
        held[owner] = held.get(owner, 0) + n

    def _held_now(self) -> dict[str, int]:
        at, held = self._held
        if time.monotonic() - at > HELD_EVERY_S:
            held = self.store.held_by_owner()
            self._held = (time.monotonic(), held)
        return held

    def placed_here(self, h: str) -> bool:
        """Whether this node is among the lottery's winners for shard h (any R, and the repair slack)."""
        return self.key.public_key_hex in placement.rank(h, self.live())[: model.MAX_R + SLACK]

    def _gate(self, env: envelope.Envelope, rec: dict[str, Any], obj: str | None, new: bool) -> None:
        """The storage gate of one hold: a put's (`new`, or the owner's own) always, a repair's only when
        this node is not a placement winner of the shard (no one may push an owner's copies, and their
        charges, onto holders the lottery did not pick)."""
        if new or env.signer == rec["o"] or not self.placed_here(rec["h"]):
            self._may_store(rec["o"], rec["n"], rec["h"], obj)

    def _may_store(self, owner: str, n: int, h: str = "", obj: str | None = None) -> None:
        """Refuse a new put's shard of `owner` (n bytes) that its free share and its credit here do not
        cover: the credit must pay a day of everything beyond the share. A shard held already, or one the
        store will refuse as another owner's, is left to the store."""
        if owner == self.key.public_key_hex or (h and self.store.has(h)):
            return
        if obj is not None and self.store.owner_of(obj) not in (None, owner):
            return  # the store refuses it as other_owner, which stops a put's placement
        totals, share = self._held_now(), self.free_bytes()
        held = totals.get(owner, 0)
        beyond = held + n - share
        if beyond > 0 and self.storage.book.balance(owner) >= amount(RULE, mib_hours(beyond, DAY_MS)):
            return
        if beyond <= 0:
            free_held = sum(min(v, share) for k, v in totals.items() if k != self.key.public_key_hex)
            if free_held + n <= self.store.quota_bytes // FREE_POOL_PART:
                return
            self.counters["shard_refused:payment_required"] += 1
            raise RequestError(
                "payment_required",
                f"this holder keeps at most 1/{FREE_POOL_PART} of its store free for everyone together, and that "
                f"is used: pay it ahead (borgusb pay credit --for storage --node {self.ip})",
                402,
            )
        self.counters["shard_refused:payment_required"] += 1
        raise RequestError(
            "payment_required",
            f"this holder keeps {self.free_bytes()} bytes of each owner free and holds {held} of yours; "
            f"the credit must pay a day of what lies beyond: pay it ahead "
            f"(borgusb pay credit --for storage --node {self.ip})",
            402,
        )

    def bill(self) -> dict[str, int]:
        """Charge each owner the MiB-hours held since the last bill; the units charged per owner."""
        now = self.clock.now_ms()
        self.storage.book.free = free_per_day(self.free_bytes())
        held = self.store.held_by_owner()
        self._held = (time.monotonic(), held)
        # a clock that jumped ahead is charged at most two rounds (the loop off: as asked)
        due = self._meter.tick(now, held, max_step_ms=2 * self.bill_ms if self.bill_ms else None)
        return {owner: self.storage.charge(owner, mib_hours, now) for owner, mib_hours in due.items()}

    async def _bill_loop(self) -> None:
        while True:
            await asyncio.sleep(self.bill_ms / 1000)
            try:
                self.bill()
            except Exception:  # the loop must outlive one bad round; the reason is logged
                log.exception("shard: billing round failed")

    @receptor("shard.credit")
    async def _r_credit(self, env: envelope.Envelope) -> Any:
        """A payment for storage here: its certificate, checked by this node's ledger."""
        cert = env.payload.get("cert") if isinstance(env.payload, dict) else None
        return await self.storage.pay_in(cert, self.clock.now_ms())

    @receptor("shard.usage")
    async def _r_usage(self, env: envelope.Envelope) -> Any:
        """The signer's bytes held here, free share, credit, and how to pay: ``payee`` and ``ref``."""
        return self.storage.usage(env.signer, self.clock.now_ms())
