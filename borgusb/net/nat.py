"""NAT traversal without STUN, UPnP or configuration.

How a node finds its place (`detect`):

1. Every hello a peer sends back names the address it saw us come from
   (`observed`). If two contacts (two node keys) outside our own network see
   the same address and it is not ours, we are behind NAT, and that address
   is our network's public one. One contact alone could name any address, so
   its word is not taken (`nat-unconfirmed`: we advertise our own address).
2. We ask both of them to open a connection to public:netPort and say
   whose key answers (`net.reach`). If both say it is ours, the router
   forwards the port to us: we are the network's **gateway** and advertise
   the public address.
3. Otherwise another node holds the forwarded port. Among our LAN contacts
   we look for the one whose hello says it is the gateway for our public
   address, and **attach** to it (`net.attach`, signed, from our LAN
   address, carrying our signed grant naming that gateway: relaygrant.py).
   We advertise the public address too; the gateway shows our grant in its
   hello's `relays`, so peers send to us through `/relay/<key>/...` on the
   gateway, which passes the bytes on untouched. Signatures are end to end: a
   gateway can drop traffic but cannot forge or alter it, and no address can
   claim to relay for a key that has not granted it.

The tree records such a node under its external address (the gateway's),
while the node itself listens on its internal one: external→internal.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any

from . import relaygrant
from .peer import PeerClient, PeerError, Pin

ATTACH_TTL_S = 20.0
ATTACH_EVERY_S = 5.0
MAX_RELAYED = 256  # nodes one gateway relays for (its hello shows each one's grant)


@dataclass
class Placement:
    role: str  # "direct" | "gateway" | "relayed" | "nat-unreachable" | "nat-unconfirmed"
    advertised_ip: str
    public_ip: str | None = None
    gateway: tuple[str, str] | None = None  # (LAN ip, pubkey) of our gateway


@dataclass
class Relays:
    """Internal nodes attached to this gateway: key -> (internal ip, expiry, their grant)."""

    entries: dict[str, tuple[str, float, dict[str, Any]]] = field(default_factory=dict)

    def attach(self, pubkey: str, internal_ip: str, grant: dict[str, Any]) -> bool:
        """Keep (or renew) a node; False when the table is full of live ones."""
        if pubkey not in self.entries and len(self.keys()) >= MAX_RELAYED:
            return False
        self.entries[pubkey] = (internal_ip, time.monotonic() + ATTACH_TTL_S, grant)
        return True

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

    def grants(self) -> list[dict[str, Any]]:
        """The grants of the nodes still attached (what the hello shows)."""
        return [self.entries[k][2] for k in self.keys()]


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
    public = agreed_address(outside)
    if public is None:
        return Placement("nat-unconfirmed", my_ip)
    witnesses = _witnesses(outside, public)
    answers = [await _reach(peers, ip, p, pin, public, port, pubkey) for ip, p, pin in witnesses]
    if all(answers):
        return Placement("gateway", public, public_ip=public)
    for lan_ip, lan_port, lan_pin in contacts:
        if lan_pin.info.get("gateway") == public and lan_pin.pubkey != pubkey:
            try:
                await attach(peers, lan_ip, lan_port, lan_pin.pubkey, my_ip)
            except PeerError:
                continue
            return Placement("relayed", public, public_ip=public, gateway=(lan_ip, lan_pin.pubkey))
    return Placement("nat-unreachable", my_ip, public_ip=public)


def agreed_address(outside: list[tuple[str, int, Pin]]) -> str | None:
    """The address that at least two contacts (two node keys) both observed us at, if any."""
    seen: dict[str, set[str]] = {}
    for _, _, pin in outside:
        if pin.observed:
            seen.setdefault(pin.observed, set()).add(pin.pubkey)
    agreed = [address for address, keys in seen.items() if len(keys) >= 2]
    return max(agreed, key=lambda a: len(seen[a])) if agreed else None


def _witnesses(outside: list[tuple[str, int, Pin]], public: str) -> list[tuple[str, int, Pin]]:
    """Two contacts with different keys that saw `public`: both are asked whether it reaches us."""
    chosen: dict[str, tuple[str, int, Pin]] = {}
    for ip, p, pin in outside:
        if pin.observed == public and pin.pubkey not in chosen:
            chosen[pin.pubkey] = (ip, p, pin)
    return list(chosen.values())[:2]


async def _reach(peers: PeerClient, ip: str, p: int, pin: Pin, public: str, port: int, pubkey: str) -> bool:
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
    except PeerError:
        return False
    return bool(reply.get("reachable")) if isinstance(reply, dict) else False


async def attach(peers: PeerClient, gateway_ip: str, port: int, gateway_key: str, my_ip: str) -> None:
    """Ask the gateway to relay for us, with our grant naming it (renewed at every attach)."""
    payload = {"ip": my_ip, "grant": relaygrant.grant(peers.key, gateway_key, peers.clock.now_ms())}
    await peers.post(gateway_ip, port, "/attach", "net.attach", payload, expect_pubkey=gateway_key)
