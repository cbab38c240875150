"""Chaos scenario "floods": one hostile peer, from an address of its own, floods one node's doors.

Two nodes running peerTreeNet, each in its own namespace; the hostile peer is
`tests.chaos.hostile` ``flood``: one process at 10.98.0.101, niced to 19 (on a real network
its CPU would not be the node machine's), sending fresh requests from one key past its rate;
garbage, forged, replayed, oversized and deeply nested bodies; then slowloris connections,
TLS and bare TCP, more than the node keeps open from one address.
An honest client at the observer's address (10.98.0.100) asks node 1 for its status
(``cell.status``, a signed receptor request with a signed reply) every `HONEST_EVERY_S`, first
unloaded, then for the whole flood, each for 24 s (short form) or 120 s (full).
Claims (issue 20): the honest p99 under the flood is within 2x the unloaded p99 measured just
before (asserted in the full form, `./build.sh chaos`; printed in the short form, whose machine runs other
tests at the same time), and no honest request fails; the attacked cell's memory (RSS and PSS, sampled every
0.25 s) stays under `memory_bound_mib`; the hostile peer is refused per address
(``rate_limited:address``, ``conn_requests``, ``conn_rate``, ``conn_limit``) and per key (``rate_limited:key``),
its bad envelopes counted by reason, and its slow connections cut.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from borgusb import dna
from borgusb.cells.kit.doorsite import ConnLimits
from borgusb.cells.kit.guard import Limits
from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient, PeerError
from tests.chaos.conftest import FULL, figures, form
from tests.chaos.harness import OBSERVER

pytestmark = pytest.mark.slow

NODES = 2
CELL = "peerTreeNet"
DNA = dna.get(CELL)
HONEST_EVERY_S = 0.05
RATIO_MAX = 2.0
IDLE_TLS_CONNECTION_KIB = 330  # README Security: what an idle TLS connection holds in a cell
SLACK_MIB = 24  # the allocator's own slack and the refused requests' garbage between collections
BY_ADDRESS = ("rate_limited:address", "refused:conn_requests", "refused:conn_rate", "refused:conn_limit")
BY_KEY = ("rate_limited:key",)


def memory_bound_mib(before_mib: float) -> float:
    """The most the attacked cell may hold: what it held, plus every connection one address may
    keep open (an idle TLS connection's buffers each), plus the body bytes one address may have
    in flight, plus slack."""
    conns = ConnLimits().per_address * IDLE_TLS_CONNECTION_KIB / 1024
    return before_mib + conns + Limits().address_bytes / (1 << 20) + SLACK_MIB


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value)
    return fields["Rss"] / 1024, fields["Pss"] / 1024


def cpu_s(pid: int) -> float:
    """CPU seconds a process has used (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


# the hostile's phases (hostile.py's Flood.run), as shares of the flood: each phase's honest p99 is
# printed, so a figure above the claim names what caused it
PHASES = (("one_key", 0.2), ("every_kind", 0.45), ("slowloris", 1.0))


def by_phase(latencies: list[float], starts: list[float], t0: float, seconds: float) -> dict[str, float]:
    """The p99 (ms) of the honest requests that began in each phase of the flood."""
    out, begin = {}, 0.0
    for name, end in PHASES:
        inside = [lat for lat, at in zip(latencies, starts, strict=True) if begin <= (at - t0) / seconds < end]
        if inside:
            out[name] = round(p99(inside) * 1000, 1)
        begin = end
    return out


async def honest(
    peers: PeerClient, ip: str, seconds: float, starts: list[float] | None = None
) -> tuple[list[float], int]:
    """Latencies (s) of the honest status requests for seconds, and how many failed; each
    request's start (monotonic) goes into starts when given."""
    latencies, failed = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        began = time.monotonic()
        try:
            await peers.post(ip, DNA.recp_port, "/recp", "cell.status", {}, signed_reply=True)
            latencies.append(time.perf_counter() - t0)
            if starts is not None:
                starts.append(began)
        except PeerError:
            failed += 1
        await asyncio.sleep(HONEST_EVERY_S)
    return latencies, failed


async def sample_memory(pid: int, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        rss, pss = memory_mib(pid)
        peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
        await asyncio.sleep(0.25)


def refusals(doc: dict[str, Any]) -> dict[str, int]:
    """The node's refusals by reason: the doors' counters and the envelope checks' rejections."""
    counted = {k: v for k, v in doc["counters"].items() if k.startswith(("refused:", "rate_limited:"))}
    return {**counted, **{f"rejected:{k}": v for k, v in doc["rejected"].items() if v}}


async def test_one_hostile_peer_floods_one_node(chaos_net, tmp_path) -> None:
    flood_s = form(24, 120)
    unloaded_s = flood_s  # as long: a p99 over fewer samples would miss more of this machine's own noise
    net = chaos_net(NODES, heartbeat_ms=1000, confirm_misses=3)
    hostile_ip = net.observer_address(1)
    net.start([CELL])
    cluster = net.clusters[CELL]
    await cluster.wait_one_tree(timeout_s=120, expect=NODES)
    target = net.ips[0]
    pid = next(n.pid for n in net.procs(0))
    clock = SystemClock()
    async with PeerClient(SigningKey.generate(), clock, Verifier(clock), bind=OBSERVER, timeout_s=10) as peers:
        await honest(peers, target, 1)  # the connection and the pins made
        calm, calm_failed = await honest(peers, target, unloaded_s)
        before = next(d for d in await cluster.status(timeout_s=5) if d["ip"] == target)
        rss0, pss0 = memory_mib(pid)
        out = tmp_path / "hostile.json"
        # niced: its CPU is this machine's too, where on a network it would be the attacker's own
        cmd = ["nice", "-n", "19", sys.executable, "-m", "tests.chaos.hostile", "flood"]
        cmd += ["--bind", hostile_ip, "--target", target]
        cmd += ["--seconds", str(flood_s), "--out", str(out)]
        cpu0 = cpu_s(pid)
        with open(tmp_path / "hostile.log", "wb") as log:  # asyncio's complaints about the resets it gets
            hostile = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[2], stderr=log, start_new_session=True)
        flood_t0, starts = time.monotonic(), []
        peak, stop = [rss0, pss0], asyncio.Event()
        sampler = asyncio.create_task(sample_memory(pid, peak, stop))
        try:
            loaded, loaded_failed = await honest(peers, target, flood_s, starts)
            deadline = time.monotonic() + 60
            while hostile.poll() is None:
                assert time.monotonic() < deadline, "the hostile peer did not end"
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await sampler
            if hostile.poll() is None:
                os.killpg(hostile.pid, signal.SIGKILL)
            hostile.wait()
    cpu = cpu_s(pid) - cpu0
    rss1, pss1 = memory_mib(pid)
    after = next(d for d in await cluster.status(timeout_s=5) if d["ip"] == target)
    refused = {k: v - refusals(before).get(k, 0) for k, v in refusals(after).items() if v > refusals(before).get(k, 0)}
    attack = json.loads(out.read_text())
    bound = memory_bound_mib(rss0)
    ratio = p99(loaded) / p99(calm)
    figures(
        "floods",
        {
            "nodes": NODES,
            "flood_s": flood_s,
            "honest_p99_ms": {"unloaded": round(p99(calm) * 1000, 1), "flood": round(p99(loaded) * 1000, 1)},
            "honest_median_ms": {
                "unloaded": round(sorted(calm)[len(calm) // 2] * 1000, 1),
                "flood": round(sorted(loaded)[len(loaded) // 2] * 1000, 1),
            },
            "p99_ratio": round(ratio, 2),
            "honest_p99_ms_by_phase": by_phase(loaded, starts, flood_t0, flood_s),
            "attacked_cell_cpu_percent": round(100 * cpu / flood_s),
            "hostile_cpu_percent": round(100 * attack["cpu_s"] / flood_s),
            "honest_requests": {"unloaded": len(calm), "flood": len(loaded), "failed": calm_failed + loaded_failed},
            "rss_mib": {"before": round(rss0, 1), "max": round(peak[0], 1), "after": round(rss1, 1)},
            "pss_mib": {"before": round(pss0, 1), "max": round(peak[1], 1), "after": round(pss1, 1)},
            "memory_bound_mib": round(bound, 1),
            "hostile_sent": attack["sent"],
            "refused_by_reason": dict(sorted(refused.items())),
            "slow_connections": {k: v for k, v in attack["outcomes"].items() if k.startswith("slow_")},
            "pipelined": {k: v for k, v in attack["outcomes"].items() if k.startswith("pipelined_")},
        },
    )
    assert calm_failed == loaded_failed == 0, "honest requests failed"
    if FULL:  # the figure, on the quiet machine ./build.sh chaos runs on; in the suite's short form the
        # machine is shared with other tests, so the ratio is printed and liveness (no honest request failed,
        # each within its 10 s deadline) is what is asserted
        assert ratio <= RATIO_MAX, f"honest p99 {p99(loaded) * 1000:.1f} ms under the flood, {ratio:.2f}x unloaded"
    assert peak[0] <= bound, f"RSS peaked at {peak[0]:.0f} MiB, bound {bound:.0f}"
    assert all(refused.get(r, 0) > 0 for r in BY_ADDRESS), f"not limited per address: {refused}"
    assert all(refused.get(r, 0) > 0 for r in BY_KEY), f"not limited per key: {refused}"
    for reason in ("bad_signature", "replay", "malformed"):
        assert refused.get(f"rejected:{reason}", 0) > 0, f"no {reason} counted: {refused}"
    assert refused.get("refused:too_large", 0) > 0, refused
    assert attack["outcomes"].get("slow_tls:cut", 0) > 0 and attack["outcomes"].get("slow_raw:cut", 0) > 0
    assert "Traceback" not in Path(net.procs(0)[0].log).read_text(), "the attacked cell logged a failure"
