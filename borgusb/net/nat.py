"""NAT traversal without STUN, UPnP or configuration.

How a node finds its place (`detect`):

1. Every hello a peer sends back names the address it saw us come from
   (`observed`). If a contact outside our own network sees an address that
   is not ours, we are behind NAT, and that address is our network's public
   one.
2. We ask that contact to open a connection to public:netPort and say
   whose key answers (`net.reach`). If it is ours, the router forwards the
   port to us: we are the network's **gateway** and advertise the public
   address.
3. Otherwise another node holds the forwarded port. Among our LAN contacts
   we look for the one whose hello says it is the gateway for our public
   address, and **attach** to it (`net.attach`, signed, from our LAN
   address). We advertise the public address too; the gateway lists our key
   in its hello's `relays`, so peers send to us through `/relay/<key>/...`
   on the gateway, which passes the bytes on untouched. Signatures are end
   to end: a gateway can drop traffic but cannot forge or alter it.

The tree records such a node under its external address (the gateway's),
while the node itself listens on its internal one: external→internal.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field

from .peer import PeerClient, PeerError, Pin

ATTACH_TTL_S = 20.0
ATTACH_EVERY_S = 5.0


@dataclass
class Placement:
    role: str  # "direct" | "gateway" | "relayed" | "nat-unreachable"
    advertised_ip: str
    public_ip: str | None = None
    gateway: tuple[str, str] | None = None  # (LAN ip, pubkey) of our gateway


@dataclass
class Relays:
    """Internal nodes attached to this gateway: key -> (internal ip, expiry)."""

    entries: dict[str, tuple[str, float]] = field(default_factory=dict)

    def attach(self, pubkey: str, internal_ip: str) -> None:
        self.entries[pubkey] = (internal_ip, time.monotonic() + ATTACH_TTL_S)

    def lookup(self, pubkey: str) -> str | None:
        entry = self.entries.get(pubkey)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            del self.entries[pubkey]
            return None
        return entry[0]

    def keys(self) -> list[str]:
        return [k for k in list(self.entries) if self.lookup(k) is not None]


def is_private(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_private
    except ValueError:
        return False


async def detect(
    peers: PeerClient, my_ip: str, port: int, pubkey: str, contacts: list[tuple[str, int, Pin]]
) -> Placement:
    """Decide this node's role from what its contacts report (see the module docstring)."""
    outside = [(ip, p, pin) for ip, p, pin in contacts if pin.observed and pin.observed != my_ip]
    if not outside:
        return Placement("direct", my_ip)
    ip, p, pin = outside[0]
    public = pin.observed
    assert public is not None
    try:
        reply = await peers.post(
            ip,
            p,
            "/reach",
            "net.reach",
            {"ip": public, "port": port, "expect": pubkey},
            expect_pubkey=pin.pubkey,
            signed_reply=True,
        )
        reachable = bool(reply.get("reachable")) if isinstance(reply, dict) else False
    except PeerError:
        reachable = False
    if reachable:
        return Placement("gateway", public, public_ip=public)
    for lan_ip, lan_port, lan_pin in contacts:
        if lan_pin.info.get("gateway") == public and lan_pin.pubkey != pubkey:
            try:
                await attach(peers, lan_ip, lan_port, lan_pin.pubkey, my_ip)
            except PeerError:
                continue
            return Placement("relayed", public, public_ip=public, gateway=(lan_ip, lan_pin.pubkey))
    return Placement("nat-unreachable", my_ip, public_ip=public)


async def attach(peers: PeerClient, gateway_ip: str, port: int, gateway_key: str, my_ip: str) -> None:
    await peers.post(gateway_ip, port, "/attach", "net.attach", {"ip": my_ip}, expect_pubkey=gateway_key)
