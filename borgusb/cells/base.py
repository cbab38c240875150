"""Cell: the runtime every cell type shares.

A cell is one process bound to its own IP on its DNA ports:

* **netPort** (TLS, pinned): node-to-node PeerTree messages, `POST /net`, and
  the signed `GET /hello` that lets peers pin this node's certificate;
* **recpPort** (TLS): the receptor, the cell's only public door. Signed
  requests only; each reply is an envelope signed by the node key;
* **monPort** (plain HTTP, read-only JSON): status, the node's view of the
  tree, message counters and rejections by reason.

The tree protocol itself is `borgusb.tree.model.TreeNode` (no I/O); this class
feeds it events (messages, ticks, unreachable peers) and carries out the
actions it returns. A subclass adds its behaviour by registering receptor
request types with `@receptor("type")` and overriding `on_broadcast`.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import envelope
from ..clock import Clock, SystemClock
from ..dna import CellDNA
from ..keys import SigningKey
from ..net.nat import ATTACH_EVERY_S, Placement, Relays, attach, detect, is_private
from ..net.peer import HELLO, PeerClient, PeerError, PeerRejected, PeerUnreachable, Pin
from ..net.tls import TLSIdentity, make_tls_identity
from ..tree.model import Deliver, Member, Send, StatusChanged, TreeConfig, TreeNode

log = logging.getLogger("borgusb.cell")

Handler = Callable[["Cell", envelope.Envelope], Awaitable[Any]]
_RECEPTOR_ROUTES = "_receptor_routes"
MAX_BODY = envelope.DEFAULT_MAX_BYTES


class RequestError(Exception):
    """A receptor request that cannot be served; the message goes to the caller."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def receptor(type: str) -> Callable[[Handler], Handler]:
    """Mark a Cell method as the handler of a receptor request type."""

    def mark(fn: Handler) -> Handler:
        setattr(fn, _RECEPTOR_ROUTES, type)
        return fn

    return mark


class TypePrefix:
    """A set of message types by prefix, for `Verifier.verify(expected_type=...)`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and item.startswith(self.prefix)


TREE_TYPES = TypePrefix("tree.")


def release_startup_memory() -> None:
    """Hand the heap that imports and start-up left free back to the system (~2 MB a cell;
    a node runs one process per cell, in RAM): a full collection, then glibc's malloc_trim.
    Elsewhere than glibc this does nothing."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


class Cell:
    """A PeerTree member with a receptor and a monitoring port."""

    def __init__(
        self,
        dna: CellDNA,
        ip: str,
        *,
        key: SigningKey | None = None,
        contacts: list[str] | None = None,
        clock: Clock | None = None,
        heartbeat_ms: int = 1000,
        confirm_misses: int = 3,
        tick_ms: int = 100,
        data_dir: Path | None = None,
    ) -> None:
        self.dna = dna
        self.ip = ip
        self.key = key or SigningKey.generate()
        self.clock = clock or SystemClock()
        self.verifier = envelope.Verifier(self.clock)
        self.contacts = [c for c in (contacts or []) if c]
        self._resolved: set[str] = set()
        self.data_dir = data_dir
        self.tick_ms = tick_ms
        self.me = Member(self.key.public_key_hex, ip, dna.net_port)
        self._tree_config = TreeConfig(k=dna.max_children, heartbeat_ms=heartbeat_ms, confirm_misses=confirm_misses)
        self.tree = TreeNode(self.me, self._tree_config, random.Random(os.urandom(16)))
        self.placement = Placement("direct", ip)
        self.relays = Relays()
        self.contact_pins: dict[str, tuple[str, int, Pin]] = {}
        self.counters: Counter[str] = Counter()
        self.delivered: OrderedDict[str, list[int]] = OrderedDict()  # id -> [count, first ms]
        self._own_broadcasts: dict[str, envelope.Envelope] = {}
        self.registry_ok: bool | None = None
        self.started_at = time.monotonic()
        self.peers = PeerClient(self.key, self.clock, self.verifier, ip=ip, port=dna.net_port, bind=ip)
        self.tls: TLSIdentity | None = None
        self._runners: list[web.AppRunner] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._queues: dict[Member, asyncio.Queue[dict[str, Any]]] = {}
        self._stopping = asyncio.Event()
        self.routes: dict[str, Handler] = {}
        for cls in reversed(type(self).__mro__):
            for attr in vars(cls).values():
                route = getattr(attr, _RECEPTOR_ROUTES, None)
                if route:
                    self.routes[route] = attr

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        # --- network clock (cronoTreeCell, issue #9): every cell but crono itself signs and checks
        # with network time from the crono cell on its own IP (borgusb/cells/crono.py).
        if self.dna.name != "cronoTreeCell" and type(self.clock) is SystemClock:
            from .crono import CronoClient

            self.clock = self.verifier.clock = self.peers.clock = CronoClient(self.ip, self.peers)
            await self.clock.first_sync()
            self._spawn(self.clock.run())
        # --- end network clock
        self.tls = make_tls_identity(f"borgusb-{self.dna.name}-{self.key.public_key_hex[:16]}")
        await self._serve(self._net_app(), self.dna.net_port, self.tls.server_context)
        await self._serve(self._receptor_app(), self.dna.recp_port, self.tls.server_context)
        await self._serve(self._monitor_app(), self.dna.mon_port, None)
        members = await self._resolve_contacts()
        await self._place()
        self._execute(self.tree.start(self.clock.now_ms(), members))
        self._spawn(self._tick_loop())
        self._spawn(self._contact_loop())
        self._spawn(self._announce_loop())
        release_startup_memory()
        log.info("%s node %s on %s ready", self.dna.name, self.key.fingerprint, self.ip)

    async def stop(self) -> None:
        self._stopping.set()
        if self.tls is not None:
            await self._tell_registry("svc.withdraw", timeout_s=0.5)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.peers.close()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    async def run_forever(self) -> None:
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def _serve(self, app: web.Application, port: int, ssl_context: Any) -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.ip, port, ssl_context=ssl_context, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise RuntimeError(f"cannot listen on {self.ip}:{port} ({exc.strerror})") from None
        self._runners.append(runner)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------ the tree driver

    async def _resolve_contacts(self) -> list[Member]:
        async def one(contact: str) -> Member | None:
            host, _, port = contact.partition(":")
            try:
                pin = await self.peers.hello(host, int(port) if port else self.dna.net_port)
            except (PeerError, ValueError) as exc:
                log.info("contact %s: %s", contact, exc)
                return None
            if pin.pubkey == self.me.node_id:
                return None
            self.contact_pins[contact] = (host, int(port) if port else self.dna.net_port, pin)
            return Member(pin.pubkey, host, int(port) if port else self.dna.net_port)

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

    # ------------------------------------------------------------ the service registry

    def announcement(self) -> dict[str, Any]:
        """What this cell tells the service registry about itself (extend for more load figures)."""
        return {
            "cell": self.dna.name,
            "ip": self.me.ip,
            "ports": list(self.dna.ports()),
            "status": self.tree.status,
            "load": {"load1_x100": int(os.getloadavg()[0] * 100), "sent": self.counters["sent"],
                     "accepted": self.verifier.counters["accepted"]},
        }

    async def _tell_registry(self, type: str, timeout_s: float = 2.0) -> bool:
        from ..dna import get as dna_of

        try:
            await asyncio.wait_for(
                self.peers.post(self.ip, dna_of("serviceMgrCell").recp_port, "/recp", type, self.announcement()),
                timeout_s,
            )
        except (PeerError, asyncio.TimeoutError):
            self.counters["registry_unreachable"] += 1
            self.registry_ok = False
            return False
        self.registry_ok = True
        return True

    async def _announce_loop(self) -> None:
        """Announce this cell to the serviceMgr on its own IP once a second."""
        from .servicemgr import ANNOUNCE_MS

        while True:
            await self._tell_registry("svc.announce")
            await asyncio.sleep(ANNOUNCE_MS / 1000)

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
        """Per-peer FIFO so messages to one peer keep their order."""
        queue = self._queues.get(to)
        if queue is None:
            queue = self._queues[to] = asyncio.Queue()
            self._spawn(self._sender(to, queue))
        queue.put_nowait(msg)

    async def _sender(self, to: Member, queue: asyncio.Queue[dict[str, Any]]) -> None:
        try:
            while True:
                try:
                    msg = await asyncio.wait_for(queue.get(), timeout=30)
                except asyncio.TimeoutError:
                    return
                self.counters["sent"] += 1
                try:
                    await self.peers.post(to.ip, to.port, "/net", msg["t"], msg, expect_pubkey=to.node_id)
                except PeerUnreachable:
                    self.counters["unreachable"] += 1
                    self._drain(queue)
                    self._execute(self.tree.on_unreachable(self.clock.now_ms(), to))
                except PeerRejected as exc:
                    self.counters[f"refused_by_peer:{exc.reason.split(':')[0][:40]}"] += 1
        finally:
            if self._queues.get(to) is queue:
                del self._queues[to]

    @staticmethod
    def _drain(queue: asyncio.Queue[Any]) -> None:
        while not queue.empty():
            queue.get_nowait()

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
        while len(self.delivered) > 1000:
            self.delivered.popitem(last=False)
        own = self._own_broadcasts.pop(bid, None)
        if own is not None:
            origin = own
        else:
            try:
                origin = self.verifier.verify(inner)
            except envelope.EnvelopeError as exc:
                self.counters[f"broadcast_rejected:{exc.reason}"] += 1
                return
        self.counters["broadcasts_delivered"] += 1
        try:
            self.on_broadcast({"id": bid, "from": origin.signer, "data": origin.payload, "type": origin.type})
        except Exception:
            self.counters["broadcast_handler_errors"] += 1
            log.exception("broadcast handler failed")

    def broadcast(self, data: Any, origin: envelope.Envelope | None = None) -> str:
        """Send data to every member of this cell's tree exactly once; returns its id.

        The origin's signed envelope travels inside the broadcast: this node's
        own (signed here) or, for a receptor request, the requester's.
        """
        bid = os.urandom(12).hex()
        if origin is None:
            inner = envelope.sign(self.key, "bcast", data, self.clock, ip=self.me.ip, port=self.dna.net_port)
            origin = envelope.Envelope("bcast", data, envelope.Sender(self.me.ip, self.dna.net_port, self.me.node_id),
                                       inner["ts"], inner["nonce"], inner["sig"])
        self._own_broadcasts[bid] = origin
        while len(self._own_broadcasts) > 1000:
            self._own_broadcasts.pop(next(iter(self._own_broadcasts)))
        self._execute(self.tree.broadcast(self.clock.now_ms(), {"id": bid, "env": origin.to_dict()}))
        return bid

    def on_broadcast(self, payload: dict[str, Any]) -> None:
        """Override: a broadcast reached this node (exactly once per id).

        ``payload`` is ``{"id", "from": the origin's verified public key,
        "data": what the origin signed, "type"}``.
        """

    # ------------------------------------------------------------ net port

    def _hello(self, observed: str | None) -> bytes:
        assert self.tls is not None
        info: dict[str, Any] = {
            "tls_sha256": self.tls.fingerprint,
            "cell": self.dna.name,
            "ports": list(self.dna.ports()),
            "status": self.tree.status,
            "observed": observed,  # the caller's address as we see it (NAT detection)
        }
        if self.placement.role == "gateway":
            info["gateway"] = self.placement.public_ip
            info["relays"] = self.relays.keys()
        return envelope.encode(envelope.sign(self.key, HELLO, info, self.clock, ip=self.me.ip, port=self.dna.net_port))

    def _net_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY + 1024)
        app.router.add_get("/hello", self._handle_hello)
        app.router.add_post("/net", self._handle_net)
        app.router.add_post("/reach", self._handle_reach)
        app.router.add_post("/attach", self._handle_attach)
        app.router.add_post("/relay/{node}/{tail:.*}", self._handle_relay)
        return app

    async def _handle_hello(self, request: web.Request) -> web.Response:
        return web.Response(body=self._hello(request.remote), content_type="application/json")

    # ------------------------------------------------------------ NAT traversal (see net/nat.py)

    async def _place(self) -> None:
        """Find out whether this node is direct, a NAT gateway, or relayed; advertise accordingly."""
        for attempt in range(10):
            self.placement = await detect(self.peers, self.ip, self.dna.net_port, self.me.node_id,
                                          list(self.contact_pins.values()))
            if self.placement.role != "nat-unreachable":
                break
            await asyncio.sleep(1.0)  # the LAN's gateway may still be starting
            await self._refresh_contact_pins()
        log.info("%s placement: %s", self.dna.name, self.placement)
        if self.placement.advertised_ip != self.me.ip:
            self.me = Member(self.me.node_id, self.placement.advertised_ip, self.dna.net_port)
            self.tree = TreeNode(self.me, self._tree_config, random.Random(os.urandom(16)))
            self.peers.ip = self.placement.advertised_ip
        if self.placement.role == "relayed":
            self._spawn(self._attach_loop())

    async def _refresh_contact_pins(self) -> None:
        for contact, (host, port, _) in list(self.contact_pins.items()):
            try:
                self.contact_pins[contact] = (host, port, await self.peers.hello(host, port))
            except PeerError:
                pass

    async def _attach_loop(self) -> None:
        assert self.placement.gateway is not None
        gateway_ip, gateway_key = self.placement.gateway
        while True:
            await asyncio.sleep(ATTACH_EVERY_S)
            try:
                await attach(self.peers, gateway_ip, self.dna.net_port, gateway_key, self.ip)
            except PeerError:
                self.counters["gateway_unreachable"] += 1

    async def _handle_reach(self, request: web.Request) -> web.Response:
        """Tell a node whether its claimed public address reaches it (one TLS hello there)."""
        try:
            env = await self._read_verified(request, expected_type="net.reach")
        except envelope.EnvelopeError as exc:
            return web.json_response({"error": exc.reason}, status=400)
        p = env.payload if isinstance(env.payload, dict) else {}
        ip, port, expect = p.get("ip"), p.get("port"), p.get("expect")
        if not isinstance(ip, str) or port not in self.dna.ports() or expect != env.signer:
            return web.json_response({"error": "refused", "detail": "only a cell port, only for yourself"}, status=400)
        probe = PeerClient(SigningKey.generate(), self.clock, envelope.Verifier(self.clock), timeout_s=2.0, bind=self.ip)
        try:
            reachable = (await probe.hello(ip, port)).pubkey == expect
        except PeerError:
            reachable = False
        finally:
            await probe.close()
        reply = envelope.sign(self.key, "net.reach.reply", {"reachable": reachable}, self.clock, ip=self.me.ip,
                              port=self.dna.net_port)
        return web.Response(body=envelope.encode(reply), content_type="application/json")

    async def _handle_attach(self, request: web.Request) -> web.Response:
        """A node on our LAN asks us, the gateway, to relay for it."""
        try:
            env = await self._read_verified(request, expected_type="net.attach")
        except envelope.EnvelopeError as exc:
            return web.json_response({"error": exc.reason}, status=400)
        ip = env.payload.get("ip") if isinstance(env.payload, dict) else None
        if self.placement.role != "gateway" or ip != request.remote or not is_private(ip):
            return web.json_response({"error": "refused", "detail": "not a gateway, or not from your LAN address"}, status=403)
        self.relays.attach(env.signer, ip)
        self.counters["relay_attached"] += 1
        return web.json_response({"ok": True})

    async def _handle_relay(self, request: web.Request) -> web.StreamResponse:
        """Pass a message on to an attached node, bytes untouched (it checks the signature)."""
        node = request.match_info["node"]
        internal = self.relays.lookup(node)
        if internal is None:
            return web.json_response({"error": "unknown_node", "detail": "no such node behind this gateway"}, status=404)
        body = await request.read()
        port = request.url.port or self.dna.net_port
        try:
            status, reply, _ = await self.peers.exchange(internal, port, "/" + request.match_info["tail"], body,
                                                         expect_pubkey=node)
        except PeerError as exc:
            self.counters["relay_failed"] += 1
            return web.json_response({"error": "relay_failed", "detail": str(exc)[:200]}, status=502)
        self.counters["relayed"] += 1
        return web.Response(status=status, body=reply, content_type="application/json")

    async def _read_verified(self, request: web.Request, **expect: Any) -> envelope.Envelope:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.verifier.counters[envelope.TooLarge.reason] += 1
            raise envelope.TooLarge("request body too large") from None
        return self.verifier.verify(body, **expect)

    async def _handle_net(self, request: web.Request) -> web.Response:
        try:
            env = await self._read_verified(request, expected_type=TREE_TYPES)
        except envelope.EnvelopeError as exc:
            return web.json_response({"error": exc.reason, "detail": str(exc)[:200]}, status=400)
        msg = env.payload
        if not isinstance(msg, dict) or msg.get("t") != env.type:
            self.verifier.counters[envelope.Malformed.reason] += 1
            return web.json_response({"error": "malformed", "detail": "payload t must equal type"}, status=400)
        sender = Member(env.signer, env.sender.ip, env.sender.port)
        self.counters[f"recv:{env.type}"] += 1
        self._execute(self.tree.on_message(self.clock.now_ms(), sender, msg))
        return web.json_response({"ok": True})

    # ------------------------------------------------------------ receptor

    def _receptor_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY + 1024)
        app.router.add_get("/hello", self._handle_hello)
        app.router.add_post("/recp", self._handle_receptor)
        app.router.add_post("/relay/{node}/{tail:.*}", self._handle_relay)
        return app

    async def _handle_receptor(self, request: web.Request) -> web.Response:
        try:
            env = await self._read_verified(request)
        except envelope.EnvelopeError as exc:
            return web.json_response({"error": exc.reason, "detail": str(exc)[:200]}, status=400)
        handler = self.routes.get(env.type)
        if handler is None:
            self.counters["receptor_unknown_type"] += 1
            return web.json_response({"error": "unknown_request", "detail": f"{self.dna.name} has no {env.type!r}"}, status=404)
        try:
            result = await handler(self, env)
        except RequestError as exc:
            self.counters["receptor_refused"] += 1
            return web.json_response({"error": "refused", "detail": str(exc)}, status=exc.status)
        except Exception:
            self.counters["receptor_errors"] += 1
            log.exception("receptor handler %s failed", env.type)
            return web.json_response({"error": "internal", "detail": "the cell failed to handle this request"}, status=500)
        try:
            reply = envelope.sign(self.key, env.type + ".reply", result, self.clock, ip=self.me.ip, port=self.dna.recp_port)
        except ValueError:  # a handler returned something that is not canonical JSON: a bug
            self.counters["receptor_errors"] += 1
            log.exception("receptor handler %s returned a value that cannot be signed", env.type)
            return web.json_response({"error": "internal", "detail": "the cell produced an invalid reply"}, status=500)
        self.counters[f"receptor:{env.type}"] += 1
        return web.Response(body=envelope.encode(reply), content_type="application/json")

    @receptor("cell.status")
    async def _r_status(self, env: envelope.Envelope) -> Any:
        return self.status()

    @receptor("tree.members")
    async def _r_members(self, env: envelope.Envelope) -> Any:
        """Every member of this cell's tree: the root answers from its table; others ask it."""
        table = getattr(self.tree, "table", None)
        if self.tree.status == "root" and table:
            return self._members_reply(table)
        root = self.tree.root
        if root is None or root.node_id == self.me.node_id:
            return self._members_reply({self.tree.pos or 1: self.me})
        try:
            return await self.peers.post(root.ip, self.dna.recp_port, "/recp", "tree.members", {},
                                         expect_pubkey=root.node_id, signed_reply=True)
        except PeerError as exc:
            raise RequestError(f"the root of this tree did not answer: {exc}", status=503) from None

    def _members_reply(self, table: dict[int, Member]) -> dict[str, Any]:
        return {
            "tree": self.tree.tree_id,
            "k": self.dna.max_children,
            "size": len(table),
            "members": [{"pos": pos, "pubkey": m.node_id, "ip": m.ip} for pos, m in sorted(table.items())],
        }

    @receptor("tree.broadcast")
    async def _r_broadcast(self, env: envelope.Envelope) -> Any:
        return {"id": self.broadcast(env.payload, origin=env)}

    # ------------------------------------------------------------ monitoring

    def _monitor_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._handle_status)
        app.router.add_get("/status", self._handle_status)
        return app

    async def _handle_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    def status(self) -> dict[str, Any]:
        view = self.tree.view()
        return {
            "cell": self.dna.to_dict(),
            "node": self.me.node_id,
            "fingerprint": self.key.fingerprint,
            "ip": self.ip,
            "uptime_ms": int((time.monotonic() - self.started_at) * 1000),
            "clock": self.clock.describe() if hasattr(self.clock, "describe") else {"source": "local"},  # crono hook
            "status": view.get("status"),
            "tree": view,
            "counters": dict(self.counters),
            "accepted": self.verifier.counters["accepted"],
            "rejected": self.verifier.rejected(),
            "registry": {None: "unknown", True: "announced", False: "unreachable"}[self.registry_ok],
            "nat": {
                "role": self.placement.role,
                "advertised": self.me.ip,
                "internal": self.ip,
                "public": self.placement.public_ip,
                "gateway": self.placement.gateway[0] if self.placement.gateway else None,
                "relays": len(self.relays.keys()),
            },
            "broadcasts": {
                "delivered": self.counters["broadcasts_delivered"],
                "duplicates": self.counters["broadcast_duplicates"],
                "recent": {bid: n for bid, (n, _) in list(self.delivered.items())[-50:]},
                "recent_at_ms": {bid: at for bid, (_, at) in list(self.delivered.items())[-50:]},
            },
        }
