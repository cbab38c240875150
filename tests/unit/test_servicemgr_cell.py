"""serviceMgrCell's I/O around the registry: statements through the one Verifier, the receptor's
source address, and which broadcasts may carry a table. One cell object, no tree, no cluster; the
receptor tests serve its real receptor app on loopback."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from borgusb import dna, envelope
from borgusb.cells.kit import RequestError
from borgusb.cells.kit.cell import MAX_BODY
from borgusb.cells.servicemgr.cell import ServiceMgrCell
from borgusb.cells.servicemgr.registry import STATEMENT
from borgusb.clock import ManualClock
from borgusb.keys import SigningKey

SVC = dna.get("serviceMgrCell")
IP = "127.0.0.2"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cell(clock: ManualClock) -> ServiceMgrCell:
    return ServiceMgrCell(SVC, IP, clock=clock)


def statement(key: SigningKey, clock: ManualClock, to: str | None = None, **fields: Any) -> dict[str, Any]:
    payload = {"cell": "peerTreeNet", "ip": "127.0.0.3", "ports": [13360, 13361, 13362], "status": "online", **fields}
    return envelope.sign(key, STATEMENT, payload, clock, to=envelope.everyone(SVC.recp_port) if to is None else to)


def nodes(cell: ServiceMgrCell) -> list[str]:
    return [e["node"] for e in cell.services()]


def test_a_tables_statements_are_verified_and_a_repeated_one_is_no_replay(cell, clock) -> None:
    origin, a = SigningKey.generate(), SigningKey.generate()
    good = statement(a, clock)
    cell._b_table(origin.public_key_hex, {"origin": origin.public_key_hex, "entries": [good]})
    assert nodes(cell) == [a.public_key_hex]
    clock.advance(300)  # the origin shares again within the announce period: the same statement
    cell._b_table(origin.public_key_hex, {"entries": [good]})
    assert nodes(cell) == [a.public_key_hex] and not cell.registry_table.refused


def test_each_bad_statement_is_refused_by_reason_and_the_others_stand(cell, clock) -> None:
    origin, a, b = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    forged = statement(a, clock)
    forged["payload"]["ip"] = "127.0.0.66"  # altered after signing
    entries = [
        forged,
        statement(a, clock, node=b.public_key_hex),  # names another node
        statement(a, clock, to=envelope.address(SigningKey.generate().public_key_hex, SVC.recp_port)),
        envelope.sign(a, "svc.announce", {"cell": "x"}, clock, to=envelope.everyone(SVC.recp_port)),
        {"cell": "peerTreeNet", "ip": "127.0.0.3", "ports": [1], "node": a.public_key_hex},  # unsigned
        statement(b, clock),
    ]
    cell._b_table(origin.public_key_hex, {"entries": entries})
    assert nodes(cell) == [b.public_key_hex]
    assert dict(cell.registry_table.refused) == {
        "bad_signature": 1,
        "node_mismatch": 1,
        "wrong_recipient": 1,
        "wrong_type": 1,
        "malformed": 1,
    }
    assert cell.status()["registry_table"]["refused"] == dict(cell.registry_table.refused)


def test_a_table_naming_another_origin_changes_nothing(cell, clock) -> None:
    victim, attacker = SigningKey.generate(), SigningKey.generate()
    cell._b_table(victim.public_key_hex, {"entries": [statement(victim, clock)]})
    cell._b_table(attacker.public_key_hex, {"origin": victim.public_key_hex, "entries": []})
    assert nodes(cell) == [victim.public_key_hex] and cell.registry_table.refused["origin_mismatch"] == 1


def origin_envelope(key: SigningKey, clock: ManualClock, type: str, port: int) -> envelope.Envelope:
    wire = envelope.sign(
        key, type, {"k": "table", "entries": [statement(key, clock)]}, clock, to=envelope.everyone(port)
    )
    verifier = envelope.Verifier(clock)
    return verifier.verify(wire, broadcast_types=(type,))


def test_a_table_is_taken_only_as_a_nodes_own_broadcast(cell, clock) -> None:
    key = SigningKey.generate()
    cell._dispatch_broadcast(origin_envelope(key, clock, "tree.broadcast", SVC.recp_port))
    assert cell.counters["broadcast_refused:members_only"] == 1 and not cell.services()
    cell._dispatch_broadcast(origin_envelope(key, clock, "bcast", SVC.net_port))
    assert nodes(cell) == [key.public_key_hex]


def test_the_receptor_does_not_relay_a_requesters_table(cell, clock) -> None:
    with pytest.raises(RequestError) as exc:
        cell.broadcast(None, origin=origin_envelope(SigningKey.generate(), clock, "tree.broadcast", SVC.recp_port))
    assert exc.value.reason == "members_only" and exc.value.status == 403


async def post(server: TestServer, source: str, key: SigningKey, cell: ServiceMgrCell, type: str, payload: Any):
    wire = envelope.sign(key, type, payload, cell.clock, to=envelope.address(cell.key.public_key_hex, SVC.recp_port))
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(server.make_url("/recp"), data=envelope.encode(wire)) as resp:
            return resp.status, await resp.json()


async def test_announcements_are_taken_from_this_machines_address_only(cell, clock) -> None:
    cellkey = SigningKey.generate()
    announce = {"entry": statement(cellkey, clock, ip=IP)}
    async with TestServer(cell._app("recp", MAX_BODY), host=IP, port=0) as server:
        status, reply = await post(server, "127.0.0.3", cellkey, cell, "svc.announce", announce)
        assert (status, reply["error"]) == (403, "not_local") and not cell.services()
        status, reply = await post(
            server, "127.0.0.3", cellkey, cell, "svc.withdraw", {"cell": "peerTreeNet", "ip": IP}
        )
        assert (status, reply["error"]) == (403, "not_local")

        other = SigningKey.generate()  # a local process passing off another cell's statement
        status, reply = await post(server, IP, other, cell, "svc.announce", announce)
        assert (status, reply["error"]) == (403, "node_mismatch")
        status, _ = await post(server, IP, cellkey, cell, "svc.announce", {"entry": {"cell": "x"}})
        assert status == 400

        status, reply = await post(server, IP, cellkey, cell, "svc.announce", announce)
        assert (status, reply["error"]) == (400, "replay")  # that statement was spent above
        announce = {"entry": statement(cellkey, clock, ip=IP)}
        status, _ = await post(server, IP, cellkey, cell, "svc.announce", announce)
        assert status == 200 and nodes(cell) == [cellkey.public_key_hex]
        assert cell.registry_table.share(clock.now_ms()) == [announce["entry"]]  # shared as the cell signed it

        status, reply = await post(server, IP, other, cell, "svc.withdraw", {"cell": "peerTreeNet", "ip": IP})
        assert (status, reply["error"]) == (403, "not_owner") and cell.services()
        status, _ = await post(server, IP, cellkey, cell, "svc.withdraw", {"cell": "peerTreeNet", "ip": IP})
        assert status == 200 and not cell.services()
    assert cell.registry_table.refused == {
        "not_local": 2,
        "node_mismatch": 1,
        "malformed": 1,
        "replay": 1,
        "not_owner": 1,
    }
