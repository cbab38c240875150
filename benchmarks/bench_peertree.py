"""PeerTree with real node processes: broadcast latency, healing time; join cost from the simulator.

Real part: N node processes on loopback (default 100) at the product's heartbeat
settings. Broadcast latency is from the moment a client sends a broadcast to a
node's receptor to the moment each node delivers it (one host, one clock), median
and p99 over all nodes and 20 broadcasts. Healing: SIGKILL 20% at random
including the root; time to detect = kill until the first member confirms a
failure (its monitoring ``confirmed_at_ms``), time to repair = from there until
one consistent tree of every survivor (status polled every ~0.1 s).
``--baseline`` heals a second cluster at the old settings (heartbeat 1 s, 3 missed
beats) in the same run.

Simulator part: the same heal at 100 ms ticks, with refused connections (SIGKILL)
and silent (a host gone), split the same way; the failure detector's false
confirmations at 5 % loss; messages per join during a 10,000-node join storm
against the messages of a single join into the same tree (the baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from borgusb import dna  # noqa: E402
from borgusb.clock import SystemClock  # noqa: E402
from borgusb.cluster import Cluster, summarize  # noqa: E402
from borgusb.envelope import Verifier  # noqa: E402
from borgusb.keys import SigningKey  # noqa: E402
from borgusb.net.peer import PeerClient  # noqa: E402
from borgusb.tree.model import TreeConfig  # noqa: E402
from borgusb.tree.suspicion import false_confirms_per_hour  # noqa: E402

GOAL_S = 3.0
LOSS = 0.05  # the loss scenario's (tests/chaos/test_loss.py)
LINK_BUDGET_B_S = 4096  # test_loss's heartbeat budget: 4 KiB per exchange at its former 1 s beat


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def heal(cluster: Cluster, nodes: int) -> dict[str, float]:
    """SIGKILL a fifth of the nodes, the root among them; split the heal into detect and repair."""
    docs = await cluster.status()
    root = next(d["ip"] for d in docs if d.get("status") == "root")
    victims = [n for n in cluster.live() if n.ip == root]
    victims += random.sample([n for n in cluster.live() if n.ip != root], nodes // 5 - 1)
    kill_ms = SystemClock().now_ms()
    t1 = time.monotonic()
    for v in victims:
        cluster.kill(v)
    expect = nodes - len(victims)
    while time.monotonic() - t1 < 120:
        swept = time.monotonic()
        docs = await cluster.status(timeout_s=5)
        healed_s = time.monotonic() - t1  # the sweep's end: late by up to one sweep, never early
        summary = summarize(docs)
        if summary["consistent"] and summary["size"] == expect:
            confirmed = [
                d["tree"]["confirmed_at_ms"]
                for d in docs
                if "tree" in d and (d["tree"].get("confirmed_at_ms") or 0) >= kill_ms
            ]
            detect_s = (min(confirmed) - kill_ms) / 1000 if confirmed else float("nan")
            sweep_s = time.monotonic() - swept
            return {"heal_s": healed_s, "detect_s": detect_s, "repair_s": healed_s - detect_s, "sweep_s": sweep_s}
        await asyncio.sleep(0.1)
    raise TimeoutError(f"no single tree of {expect} within 120 s: {summarize(docs)['problems'][:4]}")


async def baseline_part(nodes: int) -> dict[str, float]:
    """The same heal at the old settings (heartbeat 1 s, a peer suspected after 3 missed beats)."""
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(name="bench-base", root_dir=Path(tmp), heartbeat_ms=1000, confirm_misses=3)
        try:
            cluster.up(nodes)
            await cluster.wait_one_tree(timeout_s=120 + nodes, expect=nodes)
            await asyncio.sleep(3)  # every node past its first beats
            return await heal(cluster, nodes)
        finally:
            cluster.down()


async def real_part(nodes: int, broadcasts: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(name="bench", root_dir=Path(tmp))
        try:
            t0 = time.monotonic()
            cluster.up(nodes)
            await cluster.wait_one_tree(timeout_s=120 + nodes, expect=nodes)
            formed_s = time.monotonic() - t0
            client = PeerClient(SigningKey.generate(), SystemClock(), Verifier(SystemClock()))
            latencies: list[float] = []
            recp = dna.get("peerTreeNet").recp_port
            async with client:
                for i in range(broadcasts):
                    target = random.choice(cluster.live()).ip
                    sent_ms = SystemClock().now_ms()
                    bid = (await client.post(target, recp, "/recp", "tree.broadcast", {"i": i}, signed_reply=True))[
                        "id"
                    ]
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline:
                        docs = await cluster.status()
                        ats = [d["broadcasts"]["recent_at_ms"].get(bid) for d in docs if "broadcasts" in d]
                        if all(a is not None for a in ats) and len(ats) == nodes:
                            latencies += [a - sent_ms for a in ats]
                            break
                        await asyncio.sleep(0.1)
            healed = await heal(cluster, nodes)
        finally:
            cluster.down()
    return {
        "formed_s": formed_s,
        "bcast_median_ms": statistics.median(latencies),
        "bcast_p99_ms": pct(latencies, 0.99),
        **healed,
    }


def sim_heal(seeds: int = 20) -> dict[str, dict[str, float]]:
    """Medians and worst of the simulator's heal split, refused (SIGKILL) and silent (host gone)."""
    from borgusb.tree.sim import heal_split

    out = {}
    for how in ("refused", "silent"):
        runs = [heal_split(seed=s, silent=how == "silent") for s in range(seeds)]
        out[how] = {
            "detect_s": statistics.median(r["detect_ms"] for r in runs) / 1000,
            "repair_s": statistics.median(r["repair_ms"] for r in runs) / 1000,
            "heal_s": statistics.median(r["heal_ms"] for r in runs) / 1000,
            "worst_s": max(r["heal_ms"] for r in runs) / 1000,
        }
    return out


def print_detector(cfg: TreeConfig) -> None:
    """The detector's settings, its false confirmations at 5 % loss, its heartbeat traffic."""
    per_hour = {
        how: false_confirms_per_hour(
            LOSS, cfg.heartbeat_ms, cfg.confirm_misses, cfg.probe_rounds, cfg.probe_ms, cfg.probe_relays, beat
        )
        for how, beat in (("parent watching a child", 1), ("root child watching the root", 2))
    }
    print(
        f"failure detector: heartbeat {cfg.heartbeat_ms} ms, suspect after {cfg.suspect_ms} ms of silence, "
        f"confirmed after {cfg.probe_rounds} probe rounds of {cfg.probe_ms} ms (direct + {cfg.probe_relays} relays)"
    )
    for how, rate in per_hour.items():
        print(f"  false confirmations at 5% loss: {rate:.1e} per link-hour ({how}; every message lost alone)")
    exchanges = 1000 / cfg.heartbeat_ms
    print(
        f"  heartbeat exchanges per link  : {exchanges:.0f}/s; budget {LINK_BUDGET_B_S} B/s per link "
        f"(test_loss measures the bytes): {LINK_BUDGET_B_S / exchanges:.0f} B per exchange"
    )


def sim_part(storm: int) -> dict[str, float]:
    from borgusb.tree.sim import run_sim

    return run_sim(nodes=1000, children=10, storm=storm, seed=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--storm", type=int, default=10_000)
    parser.add_argument("--baseline", action="store_true", help="also heal a cluster at the old settings")
    args = parser.parse_args()

    cfg = TreeConfig(k=10)
    real = asyncio.run(real_part(args.nodes, args.broadcasts))
    print(f"{args.nodes} real node processes on loopback (heartbeat {cfg.heartbeat_ms} ms)")
    print(f"  tree formed from cold start : {real['formed_s']:.1f} s")
    print(f"  broadcast latency median    : {real['bcast_median_ms']:.0f} ms   goal < 250 ms")
    print(f"  broadcast latency p99       : {real['bcast_p99_ms']:.0f} ms   goal < 1000 ms")
    met = "met" if real["heal_s"] < GOAL_S else "NOT met"
    print(f"  healing after killing 20%   : {real['heal_s']:.1f} s   goal < {GOAL_S:g} s (incl. root): {met}")
    print(f"    time to detect            : {real['detect_s']:.2f} s   (kill -> first member confirms a failure)")
    print(f"    time to repair            : {real['repair_s']:.2f} s   (-> one tree, every survivor placed)")
    print(f"    (status of every node read in {real['sweep_s']:.2f} s: the heal is late by up to that much)")
    if args.baseline:
        base = asyncio.run(baseline_part(args.nodes))
        print(
            f"  baseline, heartbeat 1 s and 3 missed beats: healed in {base['heal_s']:.1f} s "
            f"(detect {base['detect_s']:.2f} s, repair {base['repair_s']:.2f} s)"
        )
    sim_heals = sim_heal()
    print("simulator, the same kill at 100 ms ticks (medians of 20 seeds; no CPU or network delay)")
    for how, r in sim_heals.items():
        print(
            f"  {how:<7} detect {r['detect_s']:.1f} s + repair {r['repair_s']:.1f} s = heal {r['heal_s']:.1f} s "
            f"(worst {r['worst_s']:.1f} s)"
        )
    print_detector(cfg)
    sim = sim_part(args.storm)
    per_join = sim.get("msgs_per_join_in_storm")
    single = sim.get("msgs_per_single_join")
    print(f"simulator, {args.storm}-node join storm into a 1,000-node tree at k=10")
    print(f"  messages per join in storm  : {per_join}")
    print(f"  messages of a single join   : {single}   (baseline)")
    if per_join and single:
        print(f"  ratio storm/single          : {per_join / single:.2f}   goal <= 1.5")


if __name__ == "__main__":
    main()
