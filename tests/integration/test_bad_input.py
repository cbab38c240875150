"""Bad input on every port of a real node: rejected, counted by reason, and the node keeps serving."""

from __future__ import annotations

import aiohttp
import pytest

from borgusb import dna, envelope
from borgusb.clock import ManualClock, SystemClock
from borgusb.keys import SigningKey
from borgusb.net.tls import client_context

pytestmark = pytest.mark.slow

DNA = dna.get("peerTreeNet")
STRANGER = SigningKey.generate()


def signed(type: str, payload, *, to: str, key: SigningKey = STRANGER, ts_offset_ms: int = 0) -> bytes:
    clock = ManualClock(SystemClock().now_ms() + ts_offset_ms)
    return envelope.encode(envelope.sign(key, type, payload, clock, ip="127.0.0.99", port=DNA.net_port, to=to))


def forged(type: str, payload, to: str) -> bytes:
    doc = envelope.sign(STRANGER, type, payload, SystemClock(), ip="127.0.0.99", port=DNA.net_port, to=to)
    doc["sender"]["pubkey"] = SigningKey.generate().public_key_hex  # claims to be someone else
    return envelope.encode(doc)


def unsigned(type: str, payload) -> bytes:
    doc = envelope.sign(STRANGER, type, payload, SystemClock())
    del doc["sig"]
    return envelope.encode(doc)


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, dict]:
    async with session.post(url, data=body, ssl=client_context()) as resp:
        try:
            return resp.status, await resp.json(content_type=None)
        except ValueError:
            return resp.status, {}


async def status(session: aiohttp.ClientSession, ip: str) -> dict:
    async with session.get(f"http://{ip}:{DNA.mon_port}/status") as resp:
        return await resp.json()


async def test_bad_input_on_every_port(make_cluster) -> None:
    cluster = make_cluster()
    cluster.up(2)
    await cluster.wait_one_tree(timeout_s=30, expect=2)
    root = next(d for d in await cluster.status() if d["status"] == "root")
    ip, tree_id, node = root["ip"], root["tree"]["tree_id"], root["node"]
    net = f"https://{ip}:{DNA.net_port}/net"
    recp = f"https://{ip}:{DNA.recp_port}/recp"
    to_net, to_recp = envelope.address(node, DNA.net_port), envelope.address(node, DNA.recp_port)
    hb = {"t": "tree.hb", "tree": tree_id, "pos": 2}

    async with aiohttp.ClientSession() as s:
        for url, to in ((net, to_net), (recp, to_recp)):
            assert (await post(s, url, b"{not json"))[1]["error"] == "malformed"
            assert (await post(s, url, unsigned("tree.hb", hb)))[1]["error"] == "malformed"
            assert (await post(s, url, forged("tree.hb", hb, to)))[1]["error"] == "bad_signature"
            assert (await post(s, url, signed("tree.hb", hb, to=to, ts_offset_ms=-120_000)))[1]["error"] == "stale"
            assert (await post(s, url, signed("tree.hb", hb, to=to, ts_offset_ms=+120_000)))[1][
                "error"
            ] == "future_dated"
            code, body = await post(s, url, b"x" * (envelope.DEFAULT_MAX_BYTES + 10_000))
            assert code == 413 and body["error"] == "too_large"  # refused by the guard, unread
        # replay: the same valid message twice; one addressed to another cell or node; one to no one
        once = signed("tree.hb", hb, to=to_net)
        assert (await post(s, net, once))[0] == 200
        assert (await post(s, net, once))[1]["error"] == "replay"
        to_shard_cell = envelope.address(node, dna.get("shardTreeCell").recp_port)  # the same node's other cell
        assert (await post(s, recp, signed("cell.status", {}, to=to_shard_cell)))[1]["error"] == "wrong_recipient"
        other = envelope.address(SigningKey.generate().public_key_hex, DNA.net_port)
        assert (await post(s, net, signed("tree.hb", hb, to=other)))[1]["error"] == "wrong_recipient"
        assert (await post(s, net, signed("tree.hb", hb, to="")))[1]["error"] == "unaddressed"
        # a non-tree message on the tree port
        assert (await post(s, net, signed("app.other", {"x": 1}, to=to_net)))[1]["error"] == "wrong_type"
        # the receptor answers an unknown request type with a clear 404
        code, body = await post(s, recp, signed("no.such.request", {}, to=to_recp))
        assert code == 404 and body["error"] == "unknown_request"
        # the monitoring port is read-only
        async with s.post(f"http://{ip}:{DNA.mon_port}/status", data=b"{}") as resp:
            assert resp.status == 405

        doc = await status(s, ip)
    rejected = doc["rejected"]
    assert rejected["malformed"] >= 4 and rejected["bad_signature"] >= 2
    assert rejected["stale"] >= 2 and rejected["future_dated"] >= 2
    assert doc["counters"]["refused:too_large"] >= 2
    assert rejected["replay"] >= 1 and rejected["wrong_type"] >= 1
    assert rejected["wrong_recipient"] >= 2 and rejected["unaddressed"] >= 1
    # the stranger's heartbeat claimed position 2, which it does not hold
    assert doc["tree"]["counters"].get("rejected_position", 0) >= 1
    # and the node still serves its tree
    summary = await cluster.wait_one_tree(timeout_s=10, expect=2)
    assert summary["consistent"]
