"""cronoTreeCell with real processes whose host clocks are skewed by libfaketime.

Each node runs under ``env LD_PRELOAD=libfaketime FAKETIME=±Ns``: its wall
clock is seconds off, its monotonic clock is real. The test measures every
node's network time from outside, NTP-style (four timestamps, the minimum
round trip of several samples) against its own monotonic clock, and so
compares each node with the root.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from borgusb import dna
from borgusb.cells.crono.exchange import exchange
from borgusb.clock import SystemClock
from borgusb.cluster import Cluster, loopback
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient, PeerError
from borgusb.timesync import BadExchange, Sample, faketime_library, skewed_command_prefix

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(faketime_library() is None, reason="libfaketime missing (./build.sh test installs faketime)"),
]

CRONO = dna.get("cronoTreeCell")
BASE = 180  # 127.0.0.180.. : away from the addresses other cluster tests use
AGREE_US = 5_000  # the goal; the aim is < 1 ms


def mono_us() -> int:
    return time.monotonic_ns() // 1000


def client() -> PeerClient:
    return PeerClient(SigningKey.generate(), SystemClock(), Verifier(SystemClock()))


async def probe(peers: PeerClient, ip: str, n: int = 10) -> Sample:
    """This process's best estimate of (node's network time - our monotonic clock)."""
    best: Sample | None = None
    for _ in range(n):
        sample, _ = await exchange(peers, ip, CRONO.recp_port, mono=mono_us)
        if best is None or sample.rtt_us < best.rtt_us:
            best = sample
        await asyncio.sleep(0.002)
    assert best is not None
    return best


async def agreement(peers: PeerClient, ips: list[str], root_ip: str) -> dict[str, int]:
    """Each node's network time minus the root's, in µs (measured within a few ms of each other)."""
    root = await probe(peers, root_ip)
    result = {}
    for ip in ips:
        if ip != root_ip:
            result[ip] = (await probe(peers, ip)).offset_us - root.offset_us
    return result


def skewed_cluster(make_cluster, skews: list[float], cell: str = "cronoTreeCell") -> Cluster:
    cluster = make_cluster(cell)
    cluster.prefix = {loopback(i, BASE): skewed_command_prefix(s) for i, s in enumerate(skews)}
    return cluster


async def wait_status(cluster: Cluster, pred, timeout_s: float, what: str) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    docs: list[dict] = []
    while time.monotonic() < deadline:
        docs = await cluster.status()
        if docs and all("error" not in d and pred(d) for d in docs):
            return docs
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"{what} not reached in {timeout_s}s: "
        + str([(d.get("ip"), d.get("crono") or d.get("clock") or d.get("error")) for d in docs])[:1500]
    )


async def wait_agreement(peers: PeerClient, ips: list[str], root_ip: str, timeout_s: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        diffs = await agreement(peers, ips, root_ip)
        if max(abs(d) for d in diffs.values()) < AGREE_US or time.monotonic() > deadline:
            return diffs
        await asyncio.sleep(0.5)


def report(label: str, diffs: dict[str, int]) -> None:
    ordered = sorted(abs(d) for d in diffs.values())
    print(
        f"{label}: |offset from root| median {ordered[len(ordered) // 2]} µs, max {ordered[-1]} µs "
        f"over {len(ordered)} nodes; {diffs}"
    )


async def test_skewed_nodes_agree_with_the_root_within_5ms(make_cluster) -> None:
    skews = [3.0, -5.0, 5.0, -4.0, 4.5, -2.5, 1.0, 0.0]
    cluster = skewed_cluster(make_cluster, skews)
    cluster.up(len(skews), base=BASE)
    await cluster.wait_one_tree(timeout_s=90, expect=len(skews))
    docs = await wait_status(cluster, lambda d: d["crono"]["synced"], 30, "every node synced")
    root_ip = next(d["ip"] for d in docs if d["status"] == "root")
    ips = [d["ip"] for d in docs]
    async with client() as peers:
        await wait_agreement(peers, ips, root_ip, timeout_s=20)
        await asyncio.sleep(3)  # a few more polls: the filter fills with good samples
        # probed again until within the bound (one probe's error is up to half its round trip, which a
        # busy moment of this shared machine stretches); the shared clock below is the exact check
        diffs = await wait_agreement(peers, ips, root_ip, timeout_s=20)
    report("agreement (NTP-style probe from the test)", diffs)
    assert max(abs(d) for d in diffs.values()) < AGREE_US, diffs
    # on one machine every process shares CLOCK_MONOTONIC: each node's (network - monotonic)
    # offset is an exact cross-check of the probe
    docs = await cluster.status()
    truth = {d["ip"]: d["crono"]["mono_offset_us"] for d in docs}
    exact = {ip: off - truth[root_ip] for ip, off in truth.items() if ip != root_ip}
    report("agreement (shared monotonic clock)", exact)
    assert max(abs(d) for d in exact.values()) < AGREE_US, exact
    # the skew was real, and network time is the root's, not the host's: each node's
    # network time is ahead of its own host clock by (root skew - node skew)
    docs = await cluster.status()
    skew_of = {loopback(j, BASE): s for j, s in enumerate(skews)}
    for d in docs:
        want_ms = (skew_of[root_ip] - skew_of[d["ip"]]) * 1000
        assert abs(d["clock"]["offset_ms"] - want_ms) < 50, (d["ip"], d["clock"], want_ms)
        assert d["clock"]["source"] == ("root" if d["ip"] == root_ip else "parent")
        if d["ip"] != root_ip:
            assert d["crono"]["stratum"] == d["tree"]["depth"]
            assert 0 < d["crono"]["bound_us"] < 50_000


async def test_network_time_stays_monotonic_when_the_root_is_killed(make_cluster) -> None:
    skews = [2.0, -5.0, 5.0, -3.0, 4.0, -1.5, 3.5]
    cluster = skewed_cluster(make_cluster, skews)
    cluster.up(len(skews), base=BASE)
    await cluster.wait_one_tree(timeout_s=90, expect=len(skews))
    docs = await wait_status(cluster, lambda d: d["crono"]["synced"], 30, "every node synced")
    root_ip = next(d["ip"] for d in docs if d["status"] == "root")
    survivors = [d["ip"] for d in docs if d["ip"] != root_ip]
    async with client() as peers:
        await wait_agreement(peers, [d["ip"] for d in docs], root_ip, timeout_s=20)
        series: dict[str, list[int]] = {ip: [] for ip in survivors}
        stop = asyncio.Event()

        async def sample(ip: str) -> None:
            # each survivor's own network time (t2 of its crono.time replies), over and over
            async with client() as own:
                while not stop.is_set():
                    try:
                        _, info = await exchange(own, ip, CRONO.recp_port, mono=mono_us)
                        series[ip].append(info["t2"])
                    except (PeerError, BadExchange):
                        pass
                    await asyncio.sleep(0.01)

        tasks = [asyncio.create_task(sample(ip)) for ip in survivors]
        await asyncio.sleep(1.0)
        cluster.kill(next(n for n in cluster.nodes if n.ip == root_ip))
        summary = await cluster.wait_one_tree(timeout_s=90, expect=len(skews) - 1)
        new_root = summary["roots"][0]
        await asyncio.sleep(3.0)  # the tree's new shape syncs again
        stop.set()
        await asyncio.gather(*tasks)
        for ip, values in series.items():
            assert len(values) > 50, (ip, len(values))
            backwards = [(a, b) for a, b in zip(values, values[1:]) if b < a]
            assert not backwards, f"{ip}: network time went backwards {len(backwards)} times, e.g. {backwards[:3]}"
        diffs = await wait_agreement(peers, survivors, new_root, timeout_s=20)
    report(f"after failover (new root {new_root})", diffs)
    assert new_root != root_ip
    assert max(abs(d) for d in diffs.values()) < AGREE_US, diffs
    docs = await cluster.status()
    assert all(d["crono"]["steps"] <= 1 for d in docs), [(d["ip"], d["crono"]) for d in docs]  # only the first sync


async def hello_ts(ip: str, port: int) -> int:
    """The ts of the signed hello at ip:port (a fresh envelope signed with the cell's clock)."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"https://{ip}:{port}/hello", ssl=False) as resp:
            body = await resp.read()
    return Verifier(SystemClock(), window_ms=3_600_000).verify(body).ts


async def test_other_cells_sign_with_network_time_and_fall_back_to_the_last_offset(make_cluster) -> None:
    skews = [2.0, -3.0]
    crono = skewed_cluster(make_cluster, skews)
    crono.up(2, base=BASE)
    await crono.wait_one_tree(timeout_s=30, expect=2)
    await wait_status(crono, lambda d: d["crono"]["synced"], 30, "crono synced")
    net = skewed_cluster(make_cluster, skews, cell="peerTreeNet")
    net.up(2, base=BASE)
    await net.wait_one_tree(timeout_s=30, expect=2)
    skewed_ip = loopback(1, BASE)
    root_ip = loopback(0, BASE)
    ptn = dna.get("peerTreeNet")

    async def network_now_ms(peers: PeerClient) -> int:
        return (mono_us() + (await probe(peers, root_ip, 5)).offset_us) // 1000

    docs = await wait_status(net, lambda d: d["clock"]["source"] == "crono", 15, "clock source crono")
    async with client() as peers:
        for d in docs:
            want_ms = (skews[0] - skews[[root_ip, skewed_ip].index(d["ip"])]) * 1000
            assert abs(d["clock"]["offset_ms"] - want_ms) < 50, d["clock"]
        # a signature made now by the peerTreeNet cell on the host 3 s behind carries the root's time (+2 s)
        before = await network_now_ms(peers)
        ts = await hello_ts(skewed_ip, ptn.net_port)
        after = await network_now_ms(peers)
        assert before - 20 <= ts <= after + 20, (before, ts, after)
        # crono on that host goes away: the cell keeps the last offset and says so
        crono.kill(next(n for n in crono.nodes if n.ip == skewed_ip))
        doc = await wait_status(
            net, lambda d: d["ip"] != skewed_ip or d["clock"]["source"] == "last-offset", 15, "last-offset on monPort"
        )
        doc = next(d for d in doc if d["ip"] == skewed_ip)
        assert abs(doc["clock"]["offset_ms"] - 5000) < 50, doc["clock"]
        assert doc["clock"]["age_ms"] >= 3000
        before = await network_now_ms(peers)
        ts = await hello_ts(skewed_ip, ptn.net_port)
        after = await network_now_ms(peers)
        assert before - 20 <= ts <= after + 20, (before, ts, after)
