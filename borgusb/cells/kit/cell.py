"""Cell: the runtime every cell type shares.

A cell is one process bound to its own IP on its DNA ports:

* **netPort** (TLS, pinned): node-to-node PeerTree messages, ``POST /net``, and
  the signed ``GET /hello`` that lets peers pin this node's certificate;
* **recpPort** (TLS): the receptor, the cell's only public door. Signed
  requests (``POST /recp``, dispatched by type to ``@receptor`` handlers) and
  binary frames (``POST /frame``, to ``@frame`` handlers); each reply is an
  envelope signed by the node key;
* **monPort** (plain HTTP, read-only): JSON status, the node's view of the
  tree, counters and rejections by reason, plus a cell's ``@route("mon", ...)``
  data channels.

The base class knows no cell type: the node that starts a cell injects its
clock (`use_clock`) and its service-registry link (``registry=``), and each
cell declares its handlers with the decorators of `handlers.py`.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from ... import envelope
from ...clock import Clock, SystemClock
from ...dna import CellDNA
from ...dstream.frames import FRAME_PATH, MAX_FRAME, unframe
from ...keys import SigningKey, is_public_key_hex
from ...net.nat import Placement, Relays
from ...net.peer import PeerClient, PeerError, Pin
from ...net.tls import TLSIdentity, bound_read_buffers, make_tls_identity
from ...tree.model import Member, TreeConfig, TreeNode
from .doorsite import IDLE_S, ConnectionGate, GuardedSite
from .errors import RequestError
from .guard import Guard
from .handlers import collect, receptor, route
from .joins import ForwardedJoins, JoinForged
from .netdoor import NetDoor
from .settings import Settings
from .treebatch import BATCH, BadBatch, batch_items
from .treedriver import TreeDriver

log = logging.getLogger("borgusb.cell")

MAX_BODY = envelope.DEFAULT_MAX_BYTES
ANNOUNCE_MS = 1000  # how often a cell tells the service registry on its IP that it is alive


class TypePrefix:
    """A set of message types by prefix, for `Verifier.verify(expected_type=...)`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and item.startswith(self.prefix)


TREE_TYPES = TypePrefix("tree.")
BROADCAST_REQUESTS = ("tree.broadcast",)  # the receptor requests addressed to every cell of the type


class Registry(Protocol):
    """The node's link to the service registry (serviceMgrCell on its own IP), injected."""

    async def announce(self, entry: dict[str, Any]) -> None: ...

    async def withdraw(self, entry: dict[str, Any]) -> None: ...


def release_startup_memory() -> None:
    """Hand the heap that imports and start-up left free back to the system: a full
    collection, then glibc's malloc_trim. Elsewhere than glibc this does nothing.

    What start-up left alive (modules, classes, tables: ~50,000 objects) is then frozen out of
    the collector's sight: a full collection scanned them all again, 5-13 ms during which the
    cell answered nobody (the flood scenario's honest p99 showed it)."""
    gc.collect()
    gc.freeze()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


def refusal(exc: RequestError) -> web.Response:
    return web.json_response(exc.to_json(), status=exc.status)


class Cell(NetDoor, TreeDriver):
    """A PeerTree member with a receptor and a monitoring port."""

    def __init__(
        self,
        dna: CellDNA,
        ip: str,
        *,
        key: SigningKey | None = None,
        contacts: list[str] | None = None,
        clock: Clock | None = None,
        registry: Registry | None = None,
        settings: Settings | None = None,
        heartbeat_ms: int = 1000,
        confirm_misses: int = 3,
        tick_ms: int = 100,
        data_dir: Path | None = None,
    ) -> None:
        self.dna = dna
        self.ip = ip
        self.key = key or SigningKey.generate()
        self.clock: Clock = clock or SystemClock()
        self.verifier = envelope.Verifier(self.clock)
        self.verifier.answer_to(self.key.public_key_hex, dna.ports())
        self.forwarded_joins = ForwardedJoins(self.clock)
        self.registry = registry
        self.settings = settings if settings is not None else Settings()
        self.contacts = [c for c in (contacts or []) if c]
        self.data_dir = data_dir
        self.tick_ms = tick_ms
        self.me = Member(self.key.public_key_hex, ip, dna.net_port)
        self._tree_config = TreeConfig(k=dna.max_children, heartbeat_ms=heartbeat_ms, confirm_misses=confirm_misses)
        self.tree = TreeNode(self.me, self._tree_config, random.Random(os.urandom(16)))
        self.placement = Placement("direct", ip)
        self.relays = Relays()
        self.contact_pins: dict[str, tuple[str, int, Pin]] = {}
        self.counters: Counter[str] = Counter()
        self.guard = Guard(self.counters)
        self.conn_gate = ConnectionGate(self.counters, requests=self.guard.addresses)
        self.registry_ok: bool | None = None
        self.started_at = time.monotonic()
        bound_read_buffers()  # before the first TLS connection (the clock's first sync)
        self.peers = PeerClient(self.key, self.clock, self.verifier, ip=ip, port=dna.net_port, bind=ip)
        self.tls: TLSIdentity | None = None
        self.handlers = collect(type(self))
        self._runners: list[web.AppRunner] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._companions: list[Awaitable[Any]] = []
        self._stopping = asyncio.Event()
        self._init_tree_driver()

    def use_clock(self, clock: Clock, companion: Awaitable[Any] | None = None) -> None:
        """Sign and check with this clock from now on (the node injects network time);
        companion, if given, is the clock's own loop, run for as long as the cell runs."""
        self.clock = self.verifier.clock = self.peers.clock = clock
        if companion is not None:
            self._companions.append(companion)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        for companion in self._companions:
            self._spawn(companion)
        self.tls = make_tls_identity(f"borgusb-{self.dna.name}-{self.key.public_key_hex[:16]}")
        await self._serve("net", self.dna.net_port, self.tls.server_context, MAX_BODY + 1024)
        await self._serve("recp", self.dna.recp_port, self.tls.server_context, MAX_BODY + 1024)
        await self._serve("mon", self.dna.mon_port, None, 1024)
        members = await self._resolve_contacts()
        await self._place()
        self._execute(self.tree.start(self.clock.now_ms(), members))
        self._spawn(self._tick_loop())
        self._spawn(self._contact_loop())
        if self.registry is not None:
            self._spawn(self._announce_loop())
        await self.on_start()
        release_startup_memory()
        log.info("%s node %s on %s ready", self.dna.name, self.key.fingerprint, self.ip)

    async def on_start(self) -> None:
        """Override: start the cell's own loops (with `_spawn`) once its ports are up."""

    async def on_stop(self) -> None:
        """Override: release what the cell holds once its loops are cancelled."""

    async def stop(self) -> None:
        """Withdraw, cancel the loops, stop the doors (their requests in hand finish), cancel what those
        requests spawned meanwhile, then close the client: a handler still running during the doors'
        cleanup may use it."""
        self._stopping.set()
        if self.tls is not None and self.registry is not None:
            try:
                await asyncio.wait_for(self.registry.withdraw(self.announcement()), 0.5)
            except (TimeoutError, PeerError):
                pass
        await self._cancel_tasks()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        await self._cancel_tasks()
        await self.peers.close()
        await self.on_stop()

    async def _cancel_tasks(self) -> None:
        """Cancel the cell's background tasks and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait_stopped(self) -> None:
        await self._stopping.wait()

    def _app(self, port: str, max_body: int) -> web.Application:
        """One door's app: its routes behind the guard (rates, body budget and deadline)."""
        larger = {FRAME_PATH: MAX_FRAME} if port == "recp" else {}
        app = web.Application(
            client_max_size=max([max_body, *larger.values()]), middlewares=[self.guard.middleware(max_body, larger)]
        )
        for (ports, method, path), name in self.handlers.routes.items():
            if port in ports:
                app.router.add_route(method, path, getattr(self, name))
        return app

    async def _serve(self, port_name: str, port: int, ssl_context: Any, max_body: int) -> None:
        # lingering_time=0: a body the guard refused is never read, not even to be thrown away;
        # keepalive_timeout: the deadline of a connection's first request head, and of an idle one
        runner = web.AppRunner(
            self._app(port_name, max_body),
            access_log=None,
            handle_signals=False,
            lingering_time=0,
            keepalive_timeout=IDLE_S,
        )
        await runner.setup()
        site = GuardedSite(runner, self.ip, port, self.conn_gate, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise RuntimeError(f"cannot listen on {self.ip}:{port} ({exc.strerror})") from None
        self._runners.append(runner)

    # ------------------------------------------------------------ the service registry

    def announcement(self) -> dict[str, Any]:
        """What this cell tells the service registry about itself (extend for more load figures)."""
        return {
            "cell": self.dna.name,
            "ip": self.me.ip,
            "ports": list(self.dna.ports()),
            "status": self.tree.status,
            "load": {
                "load1_x100": int(os.getloadavg()[0] * 100),
                "sent": self.counters["sent"],
                "accepted": self.verifier.counters["accepted"],
            },
        }

    async def _announce_loop(self) -> None:
        assert self.registry is not None
        while True:
            try:
                await asyncio.wait_for(self.registry.announce(self.announcement()), 2.0)
                self.registry_ok = True
            except (TimeoutError, PeerError):
                self.counters["registry_unreachable"] += 1
                self.registry_ok = False
            await asyncio.sleep(ANNOUNCE_MS / 1000)

    # ------------------------------------------------------------ the doors

    @route("net", "POST", "/net")
    async def _handle_net(self, request: web.Request) -> web.Response:
        try:
            env = await self._read_verified(request, expected_type=TREE_TYPES)
        except envelope.EnvelopeError as exc:
            return web.json_response({"error": exc.reason, "detail": str(exc)[:200]}, status=400)
        msg = env.payload
        if not isinstance(msg, dict) or msg.get("t") != env.type:
            self.verifier.counters[envelope.Malformed.reason] += 1
            return web.json_response({"error": "malformed", "detail": "payload t must equal type"}, status=400)
        try:
            msgs = batch_items(msg) if env.type == BATCH else [msg]
        except BadBatch as exc:
            self.verifier.counters[envelope.Malformed.reason] += 1
            return web.json_response({"error": "malformed", "detail": str(exc)}, status=400)
        try:
            self.guard.admit_key(env.signer, cost=len(msgs))  # a batch costs what its messages would alone
        except RequestError as exc:
            return refusal(exc)
        sender = Member(env.signer, env.sender.ip, env.sender.port)
        try:
            proof = self.forwarded_joins.proof_of(env, msg)
        except JoinForged as exc:
            self.counters[f"refused:{exc.reason}"] += 1
            return web.json_response({"error": exc.reason, "detail": str(exc)}, status=403)
        for m in msgs:
            self.counters[f"recv:{m['t']}"] += 1
            # the socket's address, not the signed but self-claimed one: a join is admitted by where it came from
            self._execute(self.tree.on_message(self.clock.now_ms(), sender, m, source=request.remote, proof=proof))
        return web.json_response({"ok": True})

    @route("recp", "POST", "/recp")
    async def _handle_receptor(self, request: web.Request) -> web.Response:
        try:
            env = await self._read_verified(request, broadcast_types=BROADCAST_REQUESTS)
        except envelope.EnvelopeError as exc:
            return web.json_response({"error": exc.reason, "detail": str(exc)[:200]}, status=400)
        return await self._dispatch(env, self.handlers.receptors.get(env.type), (env,), "application/json")

    @route("recp", "POST", FRAME_PATH)
    async def _handle_frame(self, request: web.Request) -> web.Response:
        """A binary frame: the signed envelope, a newline, the bytes (see borgusb.dstream)."""
        body = await request.read()  # read by the guard, within its budget and deadline
        try:
            try:
                wire, data = unframe(body)
            except envelope.Malformed:
                self.verifier.counters[envelope.Malformed.reason] += 1
                raise
            env = self.verifier.verify(wire)
        except envelope.EnvelopeError as exc:
            return web.json_response({"error": exc.reason, "detail": str(exc)[:200]}, status=400)
        return await self._dispatch(env, self.handlers.frames.get(env.type), (env, data), "application/octet-stream")

    async def _dispatch(
        self, env: envelope.Envelope, name: str | None, args: tuple[Any, ...], content_type: str
    ) -> web.Response:
        """Call the handler a request's type names; a refusal keeps its reason, a bug becomes `internal`.

        A receptor handler returns the reply payload; a frame handler returns (payload, bytes)."""
        if name is None:
            self.counters["receptor_unknown_type"] += 1
            return refusal(RequestError("unknown_request", f"{self.dna.name} has no {env.type!r}", 404))
        try:
            self.guard.admit_key(env.signer)
            result = await getattr(self, name)(*args)
        except RequestError as exc:
            self.counters[f"receptor_refused:{exc.reason}"] += 1
            return refusal(exc)
        except Exception:
            self.counters["receptor_errors"] += 1
            log.exception("handler of %s failed", env.type)
            return refusal(RequestError("internal", "the cell failed to handle this request", 500))
        payload, out = result if content_type == "application/octet-stream" else (result, b"")
        return self._signed_reply(env, payload, out, content_type)

    def _signed_reply(
        self, env: envelope.Envelope, result: Any, out: bytes | memoryview, content_type: str
    ) -> web.Response:
        """The handler's result, signed and addressed to the requester (it is no use to anyone else)."""
        type = env.type
        try:
            reply = envelope.encode(
                envelope.sign(
                    self.key,
                    type + ".reply",
                    result,
                    self.clock,
                    ip=self.me.ip,
                    port=self.dna.recp_port,
                    to=envelope.address(env.signer, env.sender.port),
                )
            )
        except ValueError:  # a handler returned something that is not canonical JSON: a bug
            self.counters["receptor_errors"] += 1
            log.exception("handler %s returned a value that cannot be signed", type)
            return refusal(RequestError("internal", "the cell produced an invalid reply", 500))
        self.counters[f"receptor:{type}"] += 1
        body = b"".join((reply, b"\n", out)) if content_type == "application/octet-stream" else reply
        return web.Response(body=body, content_type=content_type)

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
            return await self.peers.post(
                root.ip, self.dna.recp_port, "/recp", "tree.members", {}, expect_pubkey=root.node_id, signed_reply=True
            )
        except PeerError as exc:
            raise RequestError("root_unreachable", f"the root of this tree did not answer: {exc}", 503) from None

    async def read_members(self) -> dict[str, str] | None:
        """This tree's member table, node key -> address, as the root answers `tree.members`; None
        (counted) when it cannot be read. The view every cell that picks holders by the placement
        lottery chooses among (the ledger, mail, the file manager)."""
        try:
            doc = await asyncio.wait_for(self._r_members(None), 2.0)  # type: ignore[arg-type]
        except (RequestError, PeerError, TimeoutError):
            doc = None
        found = doc.get("members") if isinstance(doc, dict) else None
        if not isinstance(found, list):
            self.counters["members_unreadable"] += 1
            return None
        return {
            m["pubkey"]: m["ip"]
            for m in found
            if isinstance(m, dict) and is_public_key_hex(m.get("pubkey")) and isinstance(m.get("ip"), str)
        }

    def _members_reply(self, table: dict[int, Member]) -> dict[str, Any]:
        return {
            "tree": self.tree.tree_id,
            "k": self.dna.max_children,
            "size": len(table),
            "members": [{"pos": pos, "pubkey": m.node_id, "ip": m.ip} for pos, m in sorted(table.items())],
        }

    @receptor("tree.broadcast")
    async def _r_broadcast(self, env: envelope.Envelope) -> Any:
        """Broadcast the requester's own envelope to the tree (dispatched by its ``"k"``, if it names one)."""
        return {"id": self.broadcast(None, origin=env)}

    # ------------------------------------------------------------ monitoring

    @route("mon", "GET", "/")
    async def _handle_index(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    @route("mon", "GET", "/status")
    async def _handle_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    def status(self) -> dict[str, Any]:
        """Override (call super) to add the cell's own figures to its monPort status."""
        view = self.tree.view()
        describe = getattr(self.clock, "describe", None)
        return {
            "cell": self.dna.to_dict(),
            "node": self.me.node_id,
            "fingerprint": self.key.fingerprint,
            "ip": self.ip,
            "uptime_ms": int((time.monotonic() - self.started_at) * 1000),
            "clock": describe() if describe else {"source": "local"},
            "settings": self.settings.to_dict(),
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
