"""NAT traversal in network namespaces: two public nodes, three home nodes behind one router.

Only the gateway (the first home node) has a forwarded port. All five join
one tree, a broadcast from a public node reaches every home node, and a
request from the public side to a home node without a forwarded port
succeeds through the gateway, signed end to end by that node.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time

import pytest

from borgusb import dna
from borgusb.clock import SystemClock
from borgusb.cluster import summarize
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient

from . import netns

pytestmark = pytest.mark.slow
DNA = dna.get("peerTreeNet")


def home_status(ip: str) -> dict:
    """A home node's monitoring JSON, read from inside the home LAN (its port is not forwarded)."""
    code = f"import urllib.request;print(urllib.request.urlopen('http://{ip}:{DNA.mon_port}/status',timeout=3).read().decode())"
    proc = netns.sh(sys.executable, "-c", code, ns=netns.HOME, check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else {"ip": ip, "error": proc.stderr[-200:]}


async def public_status(cluster, ip: str) -> dict:
    docs = await cluster.status()
    return next(d for d in docs if d.get("ip") == ip)


@pytest.fixture
def internet():
    if shutil.which("nft") is None:
        pytest.fail("nftables is not installed: ./build.sh test installs it")
    with netns.small_internet() as nets:
        yield nets


async def test_nat_gateway_relays_for_home_nodes(make_cluster, internet) -> None:
    public, home = internet["public"], internet["home"]
    pub = make_cluster()
    pub.prefix = {ip: ["ip", "netns", "exec", netns.PUB] for ip in public}
    pub.spawn(public[0], [])
    pub.spawn(public[1], [public[0]])
    await pub.wait_one_tree(timeout_s=30, expect=2)

    lan = make_cluster()
    lan.prefix = {ip: ["ip", "netns", "exec", netns.HOME] for ip in home}
    # the gateway: the router forwards its ports. Two public contacts, because one contact's word
    # on our public address is not taken (it could name any address)
    gateway = lan.spawn(home[0], [public[0], public[1]])
    # the others are started with the gateway as a contact once it listens (its READY line follows its
    # placement): a contact that does not answer yet is not asked again until the joiner is placed
    assert lan.wait_listening(gateway, timeout_s=120), "the gateway node did not start"
    for ip in home[1:]:
        lan.spawn(ip, [home[0], public[0], public[1]])

    deadline = time.monotonic() + 60
    while True:
        docs = [await public_status(pub, ip) for ip in public] + [home_status(ip) for ip in home]
        summary = summarize(docs)
        # the statuses are read one after another: a home node may attach between the gateway's read and
        # its own, so the gateway's count is waited for too, not taken from the first consistent look
        relays = next(d for d in docs if d["ip"] == home[0])["nat"]["relays"]
        if summary["consistent"] and summary["size"] == 5 and relays == len(home) - 1:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"no tree of 5 with 2 relayed (relays {relays}): {json.dumps(summary)[:1500]}")
        await asyncio.sleep(0.5)

    roles = {d["ip"]: d["nat"]["role"] for d in docs}
    assert roles == {
        public[0]: "direct",
        public[1]: "direct",
        home[0]: "gateway",
        home[1]: "relayed",
        home[2]: "relayed",
    }
    assert all(d["nat"]["advertised"] == netns.ROUTER_PUBLIC for d in docs if d["ip"] in home)
    assert next(d for d in docs if d["ip"] == home[0])["nat"]["relays"] == 2

    # a broadcast from a public node reaches every home node exactly once
    async with PeerClient(SigningKey.generate(), SystemClock(), Verifier(SystemClock())) as client:
        reply = await client.post(
            public[1], DNA.recp_port, "/recp", "tree.broadcast", {"to": "everyone"}, signed_reply=True, broadcast=True
        )
        bid = reply["id"]
        deadline = time.monotonic() + 15
        while True:
            counts = [home_status(ip)["broadcasts"]["recent"].get(bid, 0) for ip in home]
            if counts == [1, 1, 1] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        assert counts == [1, 1, 1]

        # a request from the public side to a home node that has no forwarded port
        target = home_status(home[2])["node"]
        status = await client.post(
            netns.ROUTER_PUBLIC, DNA.recp_port, "/recp", "cell.status", {}, expect_pubkey=target, signed_reply=True
        )
        assert status["node"] == target and status["nat"]["role"] == "relayed"
        gateway = home_status(home[0])
        assert gateway["counters"].get("relayed", 0) > 0
