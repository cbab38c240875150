"""Issue 15 item 2: nobody but a machine's own cells writes that machine's part of the service registry.

Live serviceMgrCell and peerTreeNet processes on three loopback "machines"; an attacker with a
throwaway key on a fourth address tries each attack of the issue, through every door it has:

* it lists its own address as another machine's cell (an entry naming that cell's node key);
* it erases a machine's entries (a table naming that machine as its origin);
* it announces a cell to a serviceMgr from another machine (svc.announce is for local cells).

Tables go both through the public ``tree.broadcast`` receptor and straight into the tree as a
``tree.bcast`` to the root's netPort, so the registry's own rules are tested, not only the door.
Each test waits until every serviceMgr has either counted its refusal or shown the attack's
effect, then asserts which it was.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from borgusb import dna, envelope
from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient, PeerError, PeerRejected

pytestmark = pytest.mark.slow

SVC = dna.get("serviceMgrCell")
TREE = dna.get("peerTreeNet")
ATTACKER_IP = "127.0.0.250"  # another machine: no cluster of these tests uses it
STATEMENT = "svc.entry"  # a cell's signed statement about itself (the wire type of a registry entry)
DEADLINE_S = 30.0


async def listing(client: PeerClient, ip: str) -> list[dict[str, Any]]:
    try:
        reply = await client.post(ip, SVC.recp_port, "/recp", "svc.list", {}, signed_reply=True)
    except PeerError:
        return []
    return [e for e in reply["services"] if isinstance(e, dict)]


async def mon(ip: str, port: int) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
        async with session.get(f"http://{ip}:{port}/status") as resp:
            return await resp.json()


async def refused(ip: str) -> dict[str, int]:
    """The registry's refusals by reason at one serviceMgr (its monPort)."""
    doc = await mon(ip, SVC.mon_port)
    return dict(doc.get("registry_table", {}).get("refused", {}))


async def wait_until(what: str, condition: Callable[[], Any], timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def machines(make_cluster):
    """Three machines, each running serviceMgrCell and peerTreeNet, all listed everywhere."""
    svc, tree = make_cluster("serviceMgrCell"), make_cluster("peerTreeNet")
    svc.up(3)
    tree.up(3)  # at once: its cells announce themselves again every second until their serviceMgr answers
    await svc.wait_one_tree(timeout_s=30, expect=3)
    ips = [n.ip for n in svc.nodes]
    everything = {(c, ip) for ip in ips for c in ("serviceMgrCell", "peerTreeNet")}
    async with PeerClient(SigningKey.generate(), SystemClock(), Verifier(SystemClock())) as reader:

        async def all_listed() -> bool:
            for ip in ips:
                if not everything <= {(e["cell"], e["ip"]) for e in await listing(reader, ip)}:
                    return False
            return True

        await wait_until("every cell listed at every serviceMgr", all_listed)
        key = SigningKey.generate()
        async with PeerClient(
            key, SystemClock(), Verifier(SystemClock()), ip=ATTACKER_IP, port=SVC.net_port, bind=ATTACKER_IP
        ) as attacker:
            yield ips, reader, attacker, key


def statement(key: SigningKey, entry: dict[str, Any]) -> dict[str, Any]:
    """A registry entry signed by `key` (what a cell signs about itself)."""
    return envelope.sign(
        key, STATEMENT, entry, SystemClock(), ip=ATTACKER_IP, port=0, to=envelope.everyone(SVC.recp_port)
    )


async def inject(attacker: PeerClient, key: SigningKey, via: str, data: dict[str, Any]) -> None:
    """Put a broadcast signed by the attacker into the serviceMgr tree at its root, past every receptor."""
    members = await attacker.post(via, SVC.recp_port, "/recp", "tree.members", {}, signed_reply=True)
    root = next(m for m in members["members"] if m["pos"] == 1)
    inner = envelope.sign(
        key, "bcast", data, SystemClock(), ip=ATTACKER_IP, port=SVC.net_port, to=envelope.everyone(SVC.net_port)
    )
    msg = {
        "t": "tree.bcast",
        "tree": members["tree"],
        "id": os.urandom(8).hex(),
        "payload": {"id": os.urandom(12).hex(), "env": inner},
        "hops": 0,
        "up": True,
    }
    await attacker.post(root["ip"], SVC.net_port, "/net", "tree.bcast", msg, expect_pubkey=root["pubkey"])


async def relay(attacker: PeerClient, via: str, data: dict[str, Any]) -> str | None:
    """Ask a serviceMgr's public receptor to broadcast the attacker's table; the refusal reason, if refused."""
    try:
        await attacker.post(via, SVC.recp_port, "/recp", "tree.broadcast", data, signed_reply=True, broadcast=True)
    except PeerRejected as exc:
        return exc.reason
    return None


async def test_a_throwaway_key_cannot_list_itself_as_another_machines_cell(machines) -> None:
    ips, reader, attacker, key = machines
    victim = await mon(ips[1], TREE.mon_port)  # machine 2's peerTreeNet: its node key is what the attacker names
    forged = {
        "cell": "peerTreeNet",
        "ip": ATTACKER_IP,
        "ports": list(TREE.ports()),
        "status": "online",
        "load": {},
        "node": victim["node"],
    }
    table = {"k": "table", "origin": key.public_key_hex, "entries": [forged, statement(key, forged)]}
    refusal = await relay(attacker, ips[0], table)
    await inject(attacker, key, ips[2], table)

    def forged_listed(entries: list[dict[str, Any]]) -> bool:
        return any(e["ip"] == ATTACKER_IP or e.get("node") == key.public_key_hex for e in entries)

    async def settled() -> bool:
        for ip in ips:
            if forged_listed(await listing(reader, ip)):
                return True  # the attack worked somewhere: settled, and the assertions below fail
            if (await refused(ip)).get("node_mismatch", 0) < 1:
                return False
        return True

    await wait_until("every serviceMgr refused the forged entry (or listed it)", settled)
    for ip in ips:
        entries = await listing(reader, ip)
        assert not forged_listed(entries), f"{ip} lists the attacker's forged entry: {entries}"
        assert any(e["cell"] == "peerTreeNet" and e.get("node") == victim["node"] for e in entries)
        counts = await refused(ip)
        assert counts.get("node_mismatch", 0) >= 1 and counts.get("malformed", 0) >= 1, counts
    assert refusal == "members_only", "the public receptor relays a registry table for any key"


async def test_a_throwaway_key_cannot_erase_a_machines_entries(machines) -> None:
    ips, reader, attacker, key = machines
    victim_ip = ips[1]
    victim_key = (await mon(victim_ip, SVC.mon_port))["node"]
    watchers = [ip for ip in ips if ip != victim_ip]
    # the origin named as the victim's key (what identifies a table now) and as its address (what did)
    for origin in (victim_key, victim_ip):
        await inject(attacker, key, ips[0], {"k": "table", "origin": origin, "entries": []})
    refusal = await relay(attacker, ips[2], {"k": "table", "origin": victim_ip, "entries": []})

    async def victim_listed(ip: str) -> bool:
        cells = {e["cell"] for e in await listing(reader, ip) if e["ip"] == victim_ip}
        return {"serviceMgrCell", "peerTreeNet"} <= cells

    async def settled() -> bool:
        for ip in watchers:
            if not await victim_listed(ip):
                return True  # erased somewhere: settled, and the assertions below fail
            if (await refused(ip)).get("origin_mismatch", 0) < 2:
                return False
        return True

    await wait_until("every other serviceMgr refused both forged tables (or dropped the victim)", settled)
    for ip in watchers:
        assert await victim_listed(ip), f"{ip} no longer lists {victim_ip}'s cells"
        assert (await refused(ip)).get("origin_mismatch", 0) >= 2
    assert refusal == "members_only"


async def test_a_remote_announcement_is_refused_and_never_shared(machines) -> None:
    from borgusb.cells.servicemgr.client import ServiceMgrClient

    ips, reader, attacker, key = machines
    fake = {"cell": "peerTreeNet", "ip": ATTACKER_IP, "ports": list(TREE.ports()), "status": "online", "load": {}}
    with pytest.raises(PeerRejected) as refused_announce:
        await ServiceMgrClient(attacker, ips[0]).announce(fake)
    assert refused_announce.value.reason == "not_local"
    # a withdrawal of a real cell's entry from afar is refused the same way
    real = {"cell": "peerTreeNet", "ip": ips[0], "ports": list(TREE.ports())}
    with pytest.raises(PeerRejected) as refused_withdraw:
        await ServiceMgrClient(attacker, ips[0]).withdraw(real)
    assert refused_withdraw.value.reason == "not_local"
    counts = await refused(ips[0])
    assert counts.get("not_local", 0) >= 2, counts
    for ip in ips:
        entries = await listing(reader, ip)
        assert not any(e["ip"] == ATTACKER_IP for e in entries), entries
        assert ("peerTreeNet", ips[0]) in {(e["cell"], e["ip"]) for e in entries}
