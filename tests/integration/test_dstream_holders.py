"""DStream's reader against real holder processes: every holder at once, a liar avoided, a dead
holder's and a silent holder's shards moved to the others.

The liar is a hostile peer written here, not a stand-in for a BorgUSB holder: it speaks the
data channel correctly (its reply envelope is signed and answers the request) and sends bytes
that are not the shard. Run under ``flock /tmp/borgusb-cluster.lock`` (fixed 127.0.0.x ports).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from borgusb import envelope
from borgusb.clock import SystemClock
from borgusb.dstream import ENVELOPE_HEADER, SHARD_DATA_PORT, Holder, Receiver, parse_locate
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.shard import model
from tests.integration.test_shard_cluster import client, locate, put_bytes, start

pytestmark = pytest.mark.slow

SS = model.SHARD_SIZE
LIAR_IP = "127.0.9.9"  # outside the cluster's 127.0.0.2, 127.0.0.3, ...


class Liar:
    """A holder that signs correct-looking replies and serves wrong bytes of the right size."""

    def __init__(self) -> None:
        self.key = SigningKey.generate()
        self.clock = SystemClock()
        self.verifier = Verifier(self.clock)
        self.asked: Counter[str] = Counter()
        self.runner: web.AppRunner | None = None

    @property
    def holder(self) -> Holder:
        return Holder(self.key.public_key_hex, LIAR_IP, 0)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        env = self.verifier.verify(request.headers[ENVELOPE_HEADER].encode(), expected_type="shard.get")
        hs = env.payload["hs"]
        self.asked.update(hs)
        reply = envelope.sign(
            self.key,
            "shard.get.reply",
            {"hs": hs, "ns": [SS] * len(hs)},
            self.clock,
            ip=LIAR_IP,
            port=SHARD_DATA_PORT,
            to=envelope.address(env.signer, env.sender.port),
        )
        headers = {ENVELOPE_HEADER: envelope.encode(reply).decode("ascii")}
        return web.Response(body=os.urandom(SS * len(hs)), headers=headers, content_type="application/octet-stream")

    async def __aenter__(self) -> Liar:
        app = web.Application()
        app.router.add_get("/shard/{h}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, LIAR_IP, SHARD_DATA_PORT).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def read(ip: str, oid: str, out: Path, first: Holder | None = None, **kw) -> tuple[bytes, dict, list]:
    """Locate, then read with the Receiver (`first`, if given, put first in every shard's holders)."""
    m, holders = parse_locate(await locate(ip, oid), oid)
    if first is not None:
        holders = [[first, *hs] for hs in holders]
    async with client(SigningKey.generate()) as peers:
        fetch = Receiver(peers, m, holders, out, **kw)
        stats = await fetch.run()
        await fetch.receipts_handed()  # before the client closes: the hand-in would reopen its session
    return out.read_bytes(), stats, holders


async def test_every_holder_serves_at_once_and_a_liar_is_avoided(make_cluster, monkeypatch, tmp_path) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path, 3)
    ips = [n.ip for n in cluster.nodes]
    data = os.urandom(12 * SS + 7)
    put = await put_bytes(ips[0], data, SigningKey.generate(), tmp_path, r=3)
    before = {d["ip"]: d["counters"].get("plain:shard.get", 0) for d in await cluster.status()}
    got, stats, _ = await read(ips[1], put["id"], tmp_path / "plain", per_holder=2)
    assert got == data and stats["fetched"] == 13 and stats["refused"] == {}
    after = {d["ip"]: d["counters"].get("plain:shard.get", 0) for d in await cluster.status()}
    assert all(after[ip] > before[ip] for ip in ips), (before, after)  # different shards from every holder

    async with Liar() as liar:
        got, stats, _ = await read(ips[2], put["id"], tmp_path / "lied", first=liar.holder, per_holder=2)
    assert got == data
    assert 1 <= stats["refused"]["bad_bytes"] <= 2 and stats["avoided"] == 1
    assert sum(liar.asked.values()) <= 2  # its first window; nothing after its first bad shard came back


async def test_a_holder_killed_mid_read_has_its_shards_moved(make_cluster, monkeypatch, tmp_path) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path, 3)
    docs = await cluster.status()
    root = next(d["ip"] for d in docs if d["status"] == "root")
    data = os.urandom(16 * SS)
    put = await put_bytes(root, data, SigningKey.generate(), tmp_path, r=2)
    victim = next(n for n in cluster.nodes if n.ip != root)
    killed = asyncio.Event()

    def progress(got: int, total: int) -> None:
        if got >= 3 * SS and not killed.is_set():
            cluster.kill(victim)
            killed.set()

    got, stats, holders = await read(root, put["id"], tmp_path / "out", per_holder=2, progress=progress)
    assert killed.is_set() and got == data
    assert any(h.ip == victim.ip for hs in holders for h in hs)
    assert stats["refused"].get("unreachable", 0) >= 1 and stats["fetched"] == 16


async def test_a_silent_holders_shards_are_asked_of_the_others(make_cluster, monkeypatch, tmp_path) -> None:
    """A holder stopped (SIGSTOP) mid-read answers nothing and closes nothing: its shards in
    flight are asked again of the others once late, and the read ends long before the data
    channel's 30 s deadline would have declared it unreachable."""
    cluster = await start(make_cluster, monkeypatch, tmp_path, 3)
    docs = await cluster.status()
    root = next(d["ip"] for d in docs if d["status"] == "root")
    data = os.urandom(16 * SS)
    put = await put_bytes(root, data, SigningKey.generate(), tmp_path, r=2)
    victim = next(n for n in cluster.nodes if n.ip != root)
    stopped = asyncio.Event()

    def progress(got: int, total: int) -> None:
        if got >= 2 * SS and not stopped.is_set():
            os.kill(victim.pid, signal.SIGSTOP)
            stopped.set()

    try:
        got, stats, _ = await read(root, put["id"], tmp_path / "out", per_holder=2, progress=progress)
    finally:
        if stopped.is_set():
            os.kill(victim.pid, signal.SIGCONT)
    assert stopped.is_set() and got == data
    assert stats["hedged"] >= 1 and stats["refused"].get("unreachable", 0) == 0, stats
