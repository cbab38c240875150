"""btraderOrganCell: a replica of the order book (`borgusb.exchange.book`), on the network.

* ``bt.place`` / ``bt.cancel``: an owner-signed order or cancel. Only the owner's own
  signature counts (the envelope may come from any node or conduit), the event must be
  dated within the book's owner window of this replica's network time, each owner is
  rate-limited (a token bucket per owner key), and the book is bounded per owner and
  in all. An accepted event is broadcast (``bt.events``, this node's own signed
  broadcast); every replica checks the owner's signature again before it takes it.
* Anti-entropy: every ``sync_ms`` a replica asks one random other replica of its tree
  for the ids of its events inside the settle window (``bt.digest``, answered with only
  ``same`` when the two id sets hash alike) and fetches what it lacks (``bt.fetch``, at
  most `FETCH_BATCH` ids a request, `FETCH_ROUNDS` requests a round), so a replica that
  missed a broadcast catches up within a few rounds.
* ``bt.book``, ``bt.fills``, ``bt.swaps``: what the conduit shows (a fill's swap state says
  whether it is final, and so ready to settle).
* Swap notes: the two parties of a fill tell each other where their locks are (the Shell
  lock's id, the Doge HTLC's outpoint and locktime) through a broadcast of their own signed
  envelope (``bt.note``, taken only from the fill's buyer or seller), read with ``bt.notes``.
  The swap itself runs where the keys are (`settle.Settlement`).

Refusals carry the book's reason words (``bad_signature``, ``stale``, ``future_dated``,
``bad_price``, ``too_small``, ``too_large``, ``book_full``, ``rate_limited``, ``not_owner``)
and are counted (``bt_refused:<reason>``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections import OrderedDict
from typing import Any

from ...dna import CellDNA
from ...envelope import Envelope
from ...exchange.book import MAX_PENDING, Book, Event, Fill
from ...exchange.errors import NotOwner, RateLimited
from ...exchange.order import Cancel, check_cancel, check_order
from ...ledger.accounts import is_account
from ...ledger.errors import LedgerError
from ...net.peer import PeerError
from ..kit import Cell, RequestError, on_broadcast, receptor
from ..kit.guard import TokenBuckets
from .client import BtraderClient
from .settings import BtraderSettings

log = logging.getLogger("borgusb.btrader")

FETCH_BATCH = 64
FETCH_ROUNDS = 4
SYNC_TIMEOUT_S = 3.0
OWNER_BURST = 20
MAX_OWNERS_TRACKED = 10_000
MAX_LISTED_FILLS = 500
MAX_LISTED_ORDERS = 200
NOTE_FIELDS = ("fill", "lock", "doge")
MAX_NOTE_BYTES = 1024
MAX_NOTED_FILLS = 1000

_STATUS = {"bad_signature": 403, "not_owner": 403, "rate_limited": 429, "book_full": 507, "stale": 409}


def event_from(doc: Any) -> Event:
    """An order or a cancel from its decoded wire form (a cancel names the ``order`` it withdraws)."""
    return check_cancel(doc) if isinstance(doc, dict) and "order" in doc else check_order(doc)


def ids_hash(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def _fill_doc(fill: Fill, final: bool) -> dict[str, Any]:
    return {**fill.to_dict(), "final": final}


class BtraderCell(Cell):
    """One replica of the exchange's order book (settings: `BtraderSettings`)."""

    settings: BtraderSettings

    def __init__(self, dna: CellDNA, ip: str, **kw: Any) -> None:
        if not isinstance(kw.get("settings"), BtraderSettings):
            kw["settings"] = BtraderSettings.from_sources()
        super().__init__(dna, ip, **kw)
        self.book = Book()
        self.owner_rate = TokenBuckets(self.settings.owner_rate_x10 / 10, OWNER_BURST, MAX_OWNERS_TRACKED)
        self.others: list[tuple[str, str]] = []  # (pubkey, ip) of the other replicas, from the root's table
        self.notes: OrderedDict[str, dict[str, dict[str, Any]]] = OrderedDict()  # fill -> party -> note

    async def on_start(self) -> None:
        self._spawn(self._sync_loop())

    # ------------------------------------------------------------ taking events

    def _refuse(self, exc: LedgerError) -> RequestError:
        self.counters[f"bt_refused:{exc.reason}"] += 1
        return RequestError(exc.reason, str(exc), _STATUS.get(exc.reason, 400))

    def take(self, ev: Event, *, relayed: bool) -> bool:
        """Add a checked event to the book (raises `LedgerError`); True if it was new here."""
        if isinstance(ev, Cancel):
            target = self.book.pending.get(ev.order)
            if target is not None and target.owner != ev.owner:
                raise NotOwner("only the order's owner cancels it")
        new = self.book.add(ev, self.clock.now_ms(), relayed=relayed)
        if new:
            self.counters["bt_taken_relayed" if relayed else "bt_taken"] += 1
        return new

    async def _from_owner(self, env: Envelope, field: str) -> dict[str, Any]:
        doc = env.payload.get(field) if isinstance(env.payload, dict) else None
        try:
            ev: Event = check_order(doc) if field == "order" else check_cancel(doc)
            if ev.id not in self.book.pending and not self.owner_rate.allow(ev.owner, time.monotonic()):
                raise RateLimited("this owner placed or cancelled too many orders just now")
            new = self.take(ev, relayed=False)
        except LedgerError as exc:
            raise self._refuse(exc) from None
        if new:
            self.broadcast("bt.events", {"events": [ev.to_dict()]})
        return {"id": ev.id, "new": new}

    @receptor("bt.place")
    async def _r_place(self, env: Envelope) -> Any:
        return await self._from_owner(env, "order")

    @receptor("bt.cancel")
    async def _r_cancel(self, env: Envelope) -> Any:
        return await self._from_owner(env, "cancel")

    def _relayed(self, docs: Any, source: str) -> int:
        """Events from another replica (a broadcast or a fetch): each checked again; the new ones counted."""
        taken = 0
        for doc in docs[:FETCH_BATCH] if isinstance(docs, list) else []:
            try:
                taken += self.take(event_from(doc), relayed=True)
            except LedgerError as exc:
                self.counters[f"bt_{source}_refused:{exc.reason}"] += 1
        return taken

    @on_broadcast("bt.events")
    def _b_events(self, origin: str, data: dict[str, Any]) -> None:
        self._relayed(data.get("events"), "broadcast")

    # ------------------------------------------------------------ swap notes

    @on_broadcast("bt.note")
    def _b_note(self, origin: str, data: dict[str, Any]) -> None:
        """A party's note about a fill's swap (its Shell lock id, its Doge lock's outpoint): taken only
        from the fill's buyer or seller, as the origin envelope's signer proves (`BtraderClient.note`)."""
        fill_id = data.get("fill")
        fill = next((f for f, _ in self.book.fills() if f.id == fill_id), None)
        if fill is None or origin not in (fill.buyer, fill.seller):
            self.counters["bt_note_refused:not_a_party"] += 1
            return
        note = {k: v for k, v in data.items() if k in NOTE_FIELDS}
        if len(json.dumps(note)) > MAX_NOTE_BYTES:
            self.counters["bt_note_refused:too_large"] += 1
            return
        self.notes.setdefault(fill.id, {})[origin] = note
        self.notes.move_to_end(fill.id)
        while len(self.notes) > MAX_NOTED_FILLS:
            self.notes.popitem(last=False)

    @receptor("bt.notes")
    async def _r_notes(self, env: Envelope) -> Any:
        fill_id = env.payload.get("fill") if isinstance(env.payload, dict) else None
        if not isinstance(fill_id, str):
            raise RequestError("malformed", "bt.notes names the fill")
        return {"notes": self.notes.get(fill_id, {})}

    # ------------------------------------------------------------ anti-entropy

    @receptor("bt.digest")
    async def _r_digest(self, env: Envelope) -> Any:
        ids = self.book.digest()
        given = env.payload.get("hash") if isinstance(env.payload, dict) else None
        if given == ids_hash(ids):
            return {"same": True, "horizon": self.book.horizon}
        return {"ids": ids, "horizon": self.book.horizon}

    @receptor("bt.fetch")
    async def _r_fetch(self, env: Envelope) -> Any:
        ids = env.payload.get("ids") if isinstance(env.payload, dict) else None
        if not isinstance(ids, list) or len(ids) > FETCH_BATCH:
            raise RequestError("malformed", f"bt.fetch carries {{ids: [at most {FETCH_BATCH} ids]}}")
        found = (self.book.pending.get(i) if isinstance(i, str) else None for i in ids)
        return {"events": [ev.to_dict() for ev in found if ev is not None]}

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sync_ms / 1000)
            self.book.advance(self.clock.now_ms())
            try:
                await self.sync_once()
            except (PeerError, RequestError, TimeoutError):
                self.counters["bt_sync_failed"] += 1

    async def _refresh_others(self) -> None:
        doc = await asyncio.wait_for(self._r_members(None), SYNC_TIMEOUT_S)  # type: ignore[arg-type]
        found = doc.get("members") if isinstance(doc, dict) else None
        self.others = [
            (m["pubkey"], m["ip"])
            for m in (found if isinstance(found, list) else [])
            if isinstance(m, dict)
            and is_account(m.get("pubkey"))
            and isinstance(m.get("ip"), str)
            and m["pubkey"] != self.key.public_key_hex
        ]

    async def sync_once(self) -> int:
        """One anti-entropy round with one random other replica; the number of events it brought."""
        await self._refresh_others()
        if not self.others:
            return 0
        pubkey, ip = random.choice(self.others)
        other = BtraderClient(self.peers, ip, pubkey=pubkey)
        reply = await asyncio.wait_for(other.digest(), SYNC_TIMEOUT_S)
        ids = reply.get("ids")
        if reply.get("same") or not isinstance(ids, list):
            return 0
        missing = [i for i in ids[:MAX_PENDING] if isinstance(i, str) and i not in self.book.pending]
        taken = 0
        for start in range(0, min(len(missing), FETCH_BATCH * FETCH_ROUNDS), FETCH_BATCH):
            got = await asyncio.wait_for(other.fetch(missing[start : start + FETCH_BATCH]), SYNC_TIMEOUT_S)
            taken += self._relayed(got.get("events"), "sync")
        self.counters["bt_synced"] += taken
        return taken

    # ------------------------------------------------------------ what the pages show

    @receptor("bt.book")
    async def _r_book(self, env: Envelope) -> Any:
        now = self.clock.now_ms()
        rows = [{**o.to_dict(), "id": o.id, "left": left} for o, left in self.book.resting(now)]
        return {  # the best MAX_LISTED_ORDERS of each side: a reply fits one envelope
            "bids": [r for r in rows if r["side"] == "buy"][:MAX_LISTED_ORDERS],
            "asks": [r for r in rows if r["side"] == "sell"][:MAX_LISTED_ORDERS],
            "pending": len(self.book.pending),
            "horizon": self.book.horizon,
            "now": now,
        }

    def _fills_of(self, owner: str) -> list[dict[str, Any]]:
        rows = [_fill_doc(f, final) for f, final in self.book.fills() if not owner or owner in (f.buyer, f.seller)]
        return rows[-MAX_LISTED_FILLS:]

    @staticmethod
    def _owner(payload: Any) -> str:
        owner = payload.get("owner", "") if isinstance(payload, dict) else ""
        if owner and not is_account(owner):
            raise RequestError("malformed", "owner is a compressed public key in lowercase hex")
        return str(owner)

    @receptor("bt.fills")
    async def _r_fills(self, env: Envelope) -> Any:
        return {"fills": self._fills_of(self._owner(env.payload))}

    @receptor("bt.swaps")
    async def _r_swaps(self, env: Envelope) -> Any:
        owner = self._owner(env.payload)
        if not owner:
            raise RequestError("malformed", "bt.swaps names the owner")
        return {
            "swaps": [
                {
                    "fill": f["id"],
                    "role": "seller" if f["seller"] == owner else "buyer",
                    "amount": f["amount"],
                    "koinu": f["koinu"],
                    "state": "ready_to_settle" if f["final"] else "matching",
                }
                for f in self._fills_of(owner)
            ]
        }

    def status(self) -> dict[str, Any]:
        doc = super().status()
        doc["book"] = {
            "pending": len(self.book.pending),
            "digest": ids_hash(self.book.digest()),
            "horizon": self.book.horizon,
            "fills": len(self.book.fills()),
            "others": len(self.others),
        }
        return doc
