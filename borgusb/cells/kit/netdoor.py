"""The netPort's doors besides tree messages: hello (pinning), NAT placement, reach, attach, relay.

See `borgusb/net/nat.py` for the protocol; this mixin is the cell side of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import Any

from aiohttp import web

from ... import envelope
from ...keys import SigningKey
from ...net.nat import ATTACH_EVERY_S, attach, detect, is_private
from ...net.peer import HELLO, PeerClient, PeerError
from ...net.relaygrant import granted_node
from ...tree.model import Member, TreeNode
from .errors import RequestError
from .handlers import route
from .parts import CellParts

log = logging.getLogger("borgusb.cell")


class NetDoor(CellParts):
    """Mixin of `Cell`: the signed hello and NAT traversal."""

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
            info["relays"] = self.relays.grants()
        return envelope.encode(envelope.sign(self.key, HELLO, info, self.clock, ip=self.me.ip, port=self.dna.net_port))

    @route(("net", "recp"), "GET", "/hello")
    async def _handle_hello(self, request: web.Request) -> web.Response:
        return web.Response(body=self._hello(request.remote), content_type="application/json")

    async def _place(self) -> None:
        """Find out whether this node is direct, a NAT gateway, or relayed; advertise accordingly."""
        for _ in range(10):
            self.placement = await detect(
                self.peers, self.ip, self.dna.net_port, self.me.node_id, list(self.contact_pins.values())
            )
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

    @route("net", "POST", "/reach")
    async def _handle_reach(self, request: web.Request) -> web.Response:
        """Tell a node whether its claimed public address reaches it (one TLS hello there)."""
        try:
            env = await self._read_verified(request, expected_type="net.reach")
        except envelope.EnvelopeError as exc:
            return web.json_response({"error": exc.reason, "detail": str(exc)[:200]}, status=400)
        p = env.payload if isinstance(env.payload, dict) else {}
        ip, port, expect = p.get("ip"), p.get("port"), p.get("expect")
        if not isinstance(ip, str) or port not in self.dna.ports() or expect != env.signer:
            return _refuse(RequestError("refused", "only a cell port, only for yourself"))
        probe = PeerClient(
            SigningKey.generate(), self.clock, envelope.Verifier(self.clock), timeout_s=2.0, bind=self.ip
        )
        try:
            reachable = (await probe.hello(ip, port)).pubkey == expect
        except PeerError:
            reachable = False
        finally:
            await probe.close()
        reply = envelope.sign(
            self.key,
            "net.reach.reply",
            {"reachable": reachable},
            self.clock,
            ip=self.me.ip,
            port=self.dna.net_port,
            to=envelope.address(env.signer, env.sender.port),
        )
        return web.Response(body=envelope.encode(reply), content_type="application/json")

    @route("net", "POST", "/attach")
    async def _handle_attach(self, request: web.Request) -> web.Response:
        """A node on our LAN asks us, the gateway, to relay for it."""
        try:
            env = await self._read_verified(request, expected_type="net.attach")
        except envelope.EnvelopeError as exc:
            return web.json_response({"error": exc.reason, "detail": str(exc)[:200]}, status=400)
        p = env.payload if isinstance(env.payload, dict) else {}
        ip, grant = p.get("ip"), p.get("grant")
        if self.placement.role != "gateway" or not isinstance(ip, str) or ip != request.remote or not is_private(ip):
            return _refuse(RequestError("refused", "not a gateway, or not from your LAN address", 403))
        if granted_node(grant, self.me.node_id, self.clock.now_ms()) != env.signer:
            self.counters["relay_refused:no_grant"] += 1
            return _refuse(RequestError("no_grant", "attach with your own current grant naming this gateway", 403))
        assert isinstance(grant, dict)
        if not self.relays.attach(env.signer, ip, grant):
            self.counters["relay_refused:full"] += 1
            return _refuse(RequestError("full", "this gateway relays for as many nodes as it can", 503))
        self.counters["relay_attached"] += 1
        return web.json_response({"ok": True})

    @route(("net", "recp"), "POST", "/relay/{node}/{tail:.*}")
    async def _handle_relay(self, request: web.Request) -> web.StreamResponse:
        """Pass a message on to an attached node, bytes untouched (it checks the signature)."""
        node = request.match_info["node"]
        internal = self.relays.lookup(node)
        if internal is None:
            return _refuse(RequestError("unknown_node", "no such node behind this gateway", 404))
        body = await request.read()
        port = request.url.port or self.dna.net_port
        try:
            status, reply, _ = await self.peers.exchange(
                internal, port, "/" + request.match_info["tail"], body, expect_pubkey=node
            )
        except PeerError as exc:
            self.counters["relay_failed"] += 1
            return _refuse(RequestError("relay_failed", str(exc)[:200], 502))
        self.counters["relayed"] += 1
        return web.Response(status=status, body=reply, content_type="application/json")


def _refuse(exc: RequestError) -> web.Response:
    return web.json_response(exc.to_json(), status=exc.status)
