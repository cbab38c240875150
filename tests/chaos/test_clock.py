"""Chaos scenario "clock": one node's host clock jumps an hour ahead while it runs.

Four nodes, each running cronoTreeCell and peerTreeNet in its own namespace; the last one
under libfaketime, reading its offset from a file (re-read at every call), so the test moves
that host's wall clock while its processes run (the monotonic clock stays real, as on a
machine whose clock is set by hand or by a bad NTP answer). Claims (issue 20): the node's
network time does not jump (it stays within `AGREE_MS` of the crono root's, measured from
outside NTP-style), while its cells see the host clock an hour off (monPort ``clock.offset_ms``);
its messages stay fresh for the others: no envelope refused as stale or future-dated anywhere,
it keeps its place in both trees (no repair, no takeover) for `HOLD_S`, and its signed replies
verify here.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from borgusb.timesync import faketime_library
from tests.chaos.conftest import figures, form
from tests.chaos.observe import FALSE_DETECTION_COUNTERS, broadcast, counter_sum, places, wait_delivered
from tests.integration.test_crono_cluster import client as crono_client
from tests.integration.test_crono_cluster import probe

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(faketime_library() is None, reason="libfaketime missing (./build.sh test installs faketime)"),
]

NODES = 4
JUMPER = NODES - 1
JUMP_S = 3600
CELLS = ["cronoTreeCell", "peerTreeNet"]  # crono first: the others take its network time at start
AGREE_MS = 5  # crono's goal (bench_crono: within 1 ms)
FRESHNESS = ("stale", "future_dated")


def rejected(docs: list[dict], reasons: tuple[str, ...] = FRESHNESS) -> int:
    return sum(d["rejected"].get(r, 0) for d in docs if "error" not in d for r in reasons)


async def agreement_ms(ip: str, root_ip: str) -> float:
    """The node's network time minus the crono root's, in ms (each measured NTP-style from here)."""
    async with crono_client() as peers:
        root = await probe(peers, root_ip)
        node = await probe(peers, ip)
    return (node.offset_us - root.offset_us) / 1000


async def test_an_hour_jump_of_one_host_clock(chaos_net, tmp_path) -> None:
    hold_s = form(15, 120)
    offset = tmp_path / "faketime"
    offset.write_text("+0s\n")
    lib = faketime_library()
    net = chaos_net(NODES, heartbeat_ms=1000, confirm_misses=3)
    net.prefix[JUMPER] = [
        "env",
        f"LD_PRELOAD={lib}",
        f"FAKETIME_TIMESTAMP_FILE={offset}",
        "FAKETIME_NO_CACHE=1",
        "FAKETIME_DONT_FAKE_MONOTONIC=1",
    ]
    net.start(CELLS)
    for cluster in net.clusters.values():
        await cluster.wait_one_tree(timeout_s=180, expect=NODES)
    crono, tree = net.clusters["cronoTreeCell"], net.clusters["peerTreeNet"]
    jumper = net.ips[JUMPER]
    crono_root = next(d["ip"] for d in await crono.status() if d["status"] == "root")
    assert crono_root != jumper  # the node joined the others' time; it does not set it
    before_ms = await agreement_ms(jumper, crono_root)
    start = {c: await cl.status(timeout_s=5) for c, cl in net.clusters.items()}

    offset.write_text(f"+{JUMP_S}s\n")
    t_jump = time.monotonic()
    deadline = t_jump + 30
    while True:  # the cells on the node see their host's clock an hour ahead of network time
        doc = next(d for d in await tree.status(timeout_s=5) if d["ip"] == jumper)
        host_off_ms = doc["clock"]["offset_ms"]  # network minus host clock
        if host_off_ms < -(JUMP_S - 60) * 1000:
            break
        assert time.monotonic() < deadline, f"the host clock did not jump: {doc['clock']}"
        await asyncio.sleep(0.5)
    sent, everywhere, worst_ms = 0, 0, abs(before_ms)
    while time.monotonic() - t_jump < hold_s:
        worst_ms = max(worst_ms, abs(await agreement_ms(jumper, crono_root)))
        bid = await broadcast(tree, jumper, {"i": sent})  # the jumper's signed reply verifies here
        sent += 1
        everywhere += await wait_delivered(tree, bid, net.ips, timeout_s=30) is not None
        await asyncio.sleep(1)  # pacing
    end = {c: await cl.status(timeout_s=5) for c, cl in net.clusters.items()}
    refused = sum(rejected(end[c]) - rejected(start[c]) for c in CELLS)
    swapped = sum(
        counter_sum(end[c], FALSE_DETECTION_COUNTERS) - counter_sum(start[c], FALSE_DETECTION_COUNTERS) for c in CELLS
    )
    moved = [c for c in CELLS if places(end[c]).get(jumper) != places(start[c]).get(jumper)]
    figures(
        "clock",
        {
            "nodes": NODES,
            "jump_s": JUMP_S,
            "held_s": round(time.monotonic() - t_jump),
            "host_minus_network_ms": -host_off_ms,
            "network_time_vs_root_before_ms": round(before_ms, 3),
            "network_time_vs_root_worst_after_ms": round(worst_ms, 3),
            "refused_stale_or_future": refused,
            "false_detections": swapped,
            "broadcasts_through_it_everywhere": f"{everywhere}/{sent}",
        },
    )
    assert worst_ms <= AGREE_MS, f"network time moved with the host clock: {worst_ms:.1f} ms from the root"
    assert refused == 0, "envelopes refused as stale or future-dated after the jump"
    assert swapped == 0 and not moved, f"the node lost its place in {moved}"
    assert everywhere == sent
