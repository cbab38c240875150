"""DStream over realistic links: three holders, each in its own network namespace behind a
100 Mbit/s veth (``tc tbf``), 2 % of packets dropped at random on every link (nftables; TCP SYNs
spared, see `shaped_net.set_loss`).

Checks behaviour, not speed (the figures are `benchmarks/bench_dstream.py`'s): the object
arrives whole, and its shards came from every holder at once. Needs root, ``tc`` and ``nft``;
run under ``flock /tmp/borgusb-cluster.lock`` (fixed namespace names and addresses).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time

import pytest

from borgusb.dstream import Receiver, parse_locate, put_file
from borgusb.keys import SigningKey
from borgusb.shard import model
from tests.integration import shaped_net
from tests.integration.test_shard_cluster import PORT, client

pytestmark = pytest.mark.slow


@pytest.fixture
def links():
    if shutil.which("nft") is None or shutil.which("tc") is None:
        pytest.fail("tc and nftables are needed: ./build.sh test installs them")
    with shaped_net.shaped_holders(3) as ips:
        yield ips


async def test_a_read_over_lossy_shaped_links_pulls_from_every_holder(make_cluster, monkeypatch, tmp_path, links):
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path))
    ips = links
    cluster = make_cluster("shardTreeCell")
    cluster.prefix = {ip: ["ip", "netns", "exec", shaped_net.holder_ns(i)] for i, ip in enumerate(ips)}
    cluster.spawn(ips[0], [])
    for ip in ips[1:]:
        cluster.spawn(ip, [ips[0]])
    await cluster.wait_one_tree(timeout_s=60, expect=3)
    deadline = time.monotonic() + 30
    while not all(d.get("shard", {}).get("directory") == 3 for d in await cluster.status()):
        assert time.monotonic() < deadline, "shard directories did not fill"
        await asyncio.sleep(0.2)
    data = os.urandom(9 * model.SHARD_SIZE + 3)
    src = tmp_path / "src"
    src.write_bytes(data)
    owner = SigningKey.generate()
    async with client(owner) as peers:
        put = await put_file(peers, ips[0], PORT, src, owner, r=3)
    shaped_net.set_loss(3, 2, spare_handshakes=True)  # a lost SYN would stall one holder for 1 s
    before = {d["ip"]: d["counters"].get("plain:shard.get", 0) for d in await cluster.status()}
    async with client(SigningKey.generate()) as peers:
        reply = await peers.post(ips[1], PORT, "/recp", "shard.locate", {"id": put["id"]}, signed_reply=True)
        m, holders = parse_locate(reply, put["id"])
        fetch = Receiver(peers, m, holders, tmp_path / "out")
        stats = await fetch.run()
        await fetch.receipts_handed()  # before the client closes: the hand-in would reopen its session
    assert (tmp_path / "out").read_bytes() == data
    assert stats["fetched"] == 10 and stats["avoided"] == 0, stats
    after = {d["ip"]: d["counters"].get("plain:shard.get", 0) for d in await cluster.status()}
    assert all(after[ip] > before[ip] for ip in ips), (before, after)  # every holder served at once
