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


def signed(type: str, payload, *, key: SigningKey = STRANGER, ts_offset_ms: int = 0) -> bytes:
    clock = ManualClock(SystemClock().now_ms() + ts_offset_ms)
    return envelope.encode(envelope.sign(key, type, payload, clock, ip="127.0.0.99", port=DNA.net_port))


def forged(type: str, payload) -> bytes:
    doc = envelope.sign(STRANGER, type, payload, SystemClock(), ip="127.0.0.99", port=DNA.net_port)
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
    ip, tree_id = root["ip"], root["tree"]["tree_id"]
    net = f"https://{ip}:{DNA.net_port}/net"
    recp = f"https://{ip}:{DNA.recp_port}/recp"
    hb = {"t": "tree.hb", "tree": tree_id, "pos": 2}

    async with aiohttp.ClientSession() as s:
        for url in (net, recp):
            assert (await post(s, url, b"{not json"))[1]["error"] == "malformed"
            assert (await post(s, url, unsigned("tree.hb", hb)))[1]["error"] == "malformed"
            assert (await post(s, url, forged("tree.hb", hb)))[1]["error"] == "bad_signature"
            assert (await post(s, url, signed("tree.hb", hb, ts_offset_ms=-120_000)))[1]["error"] == "stale"
            assert (await post(s, url, signed("tree.hb", hb, ts_offset_ms=+120_000)))[1]["error"] == "future_dated"
            code, body = await post(s, url, b"x" * (envelope.DEFAULT_MAX_BYTES + 10_000))
            assert code in (400, 413)
        # replay: the same valid message twice
        once = signed("tree.hb", hb)
        assert (await post(s, net, once))[0] == 200
        assert (await post(s, net, once))[1]["error"] == "replay"
        # a non-tree message on the tree port
        assert (await post(s, net, signed("app.other", {"x": 1})))[1]["error"] == "wrong_type"
        # the receptor answers an unknown request type with a clear 404
        code, body = await post(s, recp, signed("no.such.request", {}))
        assert code == 404 and body["error"] == "unknown_request"
        # the monitoring port is read-only
        async with s.post(f"http://{ip}:{DNA.mon_port}/status", data=b"{}") as resp:
            assert resp.status == 405

        doc = await status(s, ip)
    rejected = doc["rejected"]
    assert rejected["malformed"] >= 4 and rejected["bad_signature"] >= 2
    assert rejected["stale"] >= 2 and rejected["future_dated"] >= 2
    assert rejected["too_large"] >= 2 and rejected["replay"] >= 1 and rejected["wrong_type"] >= 1
    # the stranger's heartbeat claimed position 2, which it does not hold
    assert doc["tree"]["counters"].get("rejected_position", 0) >= 1
    # and the node still serves its tree
    summary = await cluster.wait_one_tree(timeout_s=10, expect=2)
    assert summary["consistent"]
