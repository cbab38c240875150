"""The PeerTree driver: feeds `TreeNode` its events and carries out the actions it returns.

The tree rules live in `borgusb.tree.model` (no I/O). This mixin owns the
I/O around them: resolving contacts, the tick loop, one ordered sender per
peer (bounded queue), and broadcasts: each carries its origin's own signed
envelope, verified by every receiver, and is dispatched by its kind ``"k"``
to the cell's ``@on_broadcast(kind)`` handler exactly once per id.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections import OrderedDict
from typing import Any, ClassVar

from ... import envelope
from ...net.peer import PeerError, PeerRejected, PeerUnreachable
from ...tree.model import Deliver, Member, Send, StatusChanged
from .errors import RequestError
from .parts import CellParts
from .treebatch import BATCH, BATCH_BYTES, take_batch

log = logging.getLogger("borgusb.cell")

SEND_QUEUE_MAX = 1024  # messages waiting for one peer; beyond it the oldest tree traffic is dropped and counted
DELIVERED_MAX = 1000  # broadcast ids remembered for deduplication
OWN_BROADCASTS_MAX = 1000
# a broadcast's origin envelope is addressed to every cell of the type: one this node signs ("bcast",
# to its netPort's everyone) or a requester's "tree.broadcast" (to the receptor port's everyone)
BROADCAST_ORIGINS = ("bcast", "tree.broadcast")


class TreeDriver(CellParts):
    """Mixin of `Cell`: everything between the sans-I/O `TreeNode` and the network."""

    # Broadcast kinds a node sends only as its own ("bcast", signed by itself), never relayed for a
    # requester: the tree.broadcast receptor refuses a requester's envelope of such a kind and a
    # receiver drops one (counted). This closes the public door only; whose word a handler takes is
    # still its own rule, by the origin's key. The service registry's tables use it; other kinds stay
    # open to any requester.
    MEMBER_KINDS: ClassVar[frozenset[str]] = frozenset()

    def _init_tree_driver(self) -> None:
        self._resolved: set[str] = set()
        self._queues: dict[Member, asyncio.Queue[dict[str, Any]]] = {}
        self.delivered: OrderedDict[str, list[int]] = OrderedDict()  # id -> [count, first ms]
        self._own_broadcasts: dict[str, envelope.Envelope] = {}

    async def _resolve_contacts(self) -> list[Member]:
        async def one(contact: str) -> Member | None:
            host, _, port_text = contact.partition(":")
            try:
                port = int(port_text) if port_text else self.dna.net_port
                pin = await self.peers.hello(host, port)
            except (PeerError, ValueError) as exc:
                log.info("contact %s: %s", contact, exc)
                return None
            if pin.pubkey == self.me.node_id:
                return None
            self.contact_pins[contact] = (host, port, pin)
            return Member(pin.pubkey, host, port)

        pending = [c for c in self.contacts if c not in self._resolved]
        found = await asyncio.gather(*(one(c) for c in pending))
        for contact, member in zip(pending, found):
            if member is not None:
                self._resolved.add(contact)
        return [m for m in found if m is not None]

    async def _contact_loop(self) -> None:
        """Keep looking for contacts that did not answer yet (a lone root must find others)."""
        while True:
            await asyncio.sleep(max(1.0, self.tree.cfg.probe_contacts_ms / 1000))
            if len(self._resolved) < len(self.contacts):
                members = await self._resolve_contacts()
                if members:
                    self.tree.add_contacts(members)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_ms / 1000)
            try:
                self._execute(self.tree.on_tick(self.clock.now_ms()))
            except Exception:  # a bug must not stop the heartbeat; it is counted and logged
                self.counters["tick_errors"] += 1
                log.exception("tick failed")

    def _execute(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._enqueue(action.to, action.msg)
            elif isinstance(action, Deliver):
                self._deliver(action.msg)
            elif isinstance(action, StatusChanged):
                self.counters[f"status_{action.status}"] += 1
                log.info("%s status %s", self.dna.name, action.status)

    def _enqueue(self, to: Member, msg: dict[str, Any]) -> None:
        """Per-peer FIFO so messages to one peer keep their order; bounded."""
        queue = self._queues.get(to)
        if queue is None:
            queue = self._queues[to] = asyncio.Queue()
            self._spawn(self._sender(to, queue))
        if queue.qsize() >= SEND_QUEUE_MAX:
            queue.get_nowait()
            self.counters["send_queue_dropped"] += 1
        queue.put_nowait(msg)

    async def _sender(self, to: Member, queue: asyncio.Queue[dict[str, Any]]) -> None:
        carry: dict[str, Any] | None = None  # a join that ended the last batch: it goes next, alone
        try:
            while True:
                if carry is None:
                    try:
                        carry = await asyncio.wait_for(queue.get(), timeout=30)
                    except TimeoutError:
                        return
                batch, carry = take_batch(carry, queue)
                self.counters["sent"] += len(batch)
                try:
                    await self._post(to, batch)
                except PeerUnreachable as exc:
                    self.counters["unreachable"] += 1
                    lost, carry = list(batch), None
                    while not queue.empty():
                        lost.append(queue.get_nowait())
                    now = self.clock.now_ms()
                    self._execute(self.tree.on_unreachable(now, to, refused=exc.refused, lost=lost))
                except PeerRejected as exc:
                    self.counters[f"refused_by_peer:{exc.reason[:40]}"] += 1
        finally:
            if self._queues.get(to) is queue:
                del self._queues[to]

    async def _post(self, to: Member, batch: list[dict[str, Any]]) -> None:
        """One message as itself; several in one ``tree.batch`` envelope (treebatch.py), or one by
        one if that envelope would be too large (broadcasts with big payloads)."""
        if len(batch) > 1:
            try:
                addr = await self.peers.address(to.ip, to.port, to.node_id)
                data = self.peers.sign(BATCH, {"t": BATCH, "msgs": batch}, addr)
            except (envelope.EnvelopeError, ValueError):
                data = b""  # too deep or too large for one envelope
            if 0 < len(data) <= BATCH_BYTES:
                self.counters["batches_sent"] += 1
                status, body, _ = await self.peers.exchange(to.ip, to.port, "/net", data, to.node_id)
                if status >= 400:
                    raise PeerRejected.from_reply(status, body)
                return
        for msg in batch:
            await self.peers.post(to.ip, to.port, "/net", msg["t"], msg, expect_pubkey=to.node_id)

    def _deliver(self, wire: dict[str, Any]) -> None:
        """A broadcast arrived: check its origin's signature, count it, hand it over once.

        Forwarders re-sign each hop, but only the origin's own envelope inside
        (``wire["env"]``) says who said what: a forwarder cannot alter it.
        """
        bid = wire.get("id") if isinstance(wire, dict) else None
        inner = wire.get("env") if isinstance(wire, dict) else None
        if not isinstance(bid, str) or not isinstance(inner, dict):
            self.counters["broadcast_malformed"] += 1
            return
        entry = self.delivered.setdefault(bid, [0, self.clock.now_ms()])
        entry[0] += 1
        if entry[0] > 1:
            self.counters["broadcast_duplicates"] += 1
            return
        while len(self.delivered) > DELIVERED_MAX:
            self.delivered.popitem(last=False)
        origin = self._own_broadcasts.pop(bid, None)
        if origin is None:
            try:
                origin = self.verifier.verify(inner, broadcast_types=BROADCAST_ORIGINS)
            except envelope.EnvelopeError as exc:
                self.counters[f"broadcast_rejected:{exc.reason}"] += 1
                return
        self.counters["broadcasts_delivered"] += 1
        self._dispatch_broadcast(origin)

    def _dispatch_broadcast(self, origin: envelope.Envelope) -> None:
        data = origin.payload
        kind = data.get("k") if isinstance(data, dict) else None
        name = self.handlers.broadcasts.get(kind) if isinstance(kind, str) else None
        if name is None:
            self.counters["broadcast_unhandled"] += 1
            return
        if kind in self.MEMBER_KINDS and origin.type != "bcast":
            self.counters["broadcast_refused:members_only"] += 1
            return
        try:
            result = getattr(self, name)(origin.signer, data)
            if inspect.isawaitable(result):
                self._spawn(self._guarded(result, "broadcast"))
        except Exception:
            self.counters["broadcast_handler_errors"] += 1
            log.exception("broadcast handler %s failed", kind)

    async def _guarded(self, awaitable: Any, what: str) -> None:
        try:
            await awaitable
        except Exception:
            self.counters[f"{what}_handler_errors"] += 1
            log.exception("%s handler failed", what)

    def broadcast(
        self, kind: str | None, data: dict[str, Any] | None = None, origin: envelope.Envelope | None = None
    ) -> str:
        """Send ``{"k": kind, **data}`` to every member of this cell's tree exactly once; returns its id.

        The origin's signed envelope travels inside the broadcast: this node's
        own (signed here) or, for a relayed request, the requester's (whose
        payload must then already name its kind).
        """
        bid = os.urandom(12).hex()
        if origin is None:
            if kind is None:
                raise ValueError("a broadcast this node signs names its kind")
            payload = {**(data or {}), "k": kind}
            inner = envelope.sign(
                self.key,
                "bcast",
                payload,
                self.clock,
                ip=self.me.ip,
                port=self.dna.net_port,
                to=envelope.everyone(self.dna.net_port),
            )
            origin = envelope.Envelope(
                nonce=inner["nonce"],
                payload=payload,
                sender=envelope.Sender(self.me.ip, self.dna.net_port, self.me.node_id),
                sig=inner["sig"],
                to=inner["to"],
                ts=inner["ts"],
                type="bcast",
                v=envelope.VERSION,
            )
        elif isinstance(origin.payload, dict) and _is_member_kind(self.MEMBER_KINDS, origin.payload.get("k")):
            raise RequestError("members_only", "this kind of broadcast comes from the tree's own nodes only", 403)
        self._own_broadcasts[bid] = origin
        while len(self._own_broadcasts) > OWN_BROADCASTS_MAX:
            self._own_broadcasts.pop(next(iter(self._own_broadcasts)))
        self._execute(self.tree.broadcast(self.clock.now_ms(), {"id": bid, "env": origin.to_dict()}))
        return bid


def _is_member_kind(kinds: frozenset[str], kind: object) -> bool:
    return isinstance(kind, str) and kind in kinds
