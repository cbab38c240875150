"""PeerTree with real node processes: broadcast latency, healing time; join cost from the simulator.

Real part: N node processes on loopback (default 100), heartbeat 1 s. Broadcast
latency is from the moment a client sends a broadcast to a node's receptor to
the moment each node delivers it (one host, one clock), median and p99 over
all nodes and 20 broadcasts. Healing: SIGKILL 20% at random including the
root, time until one consistent tree of the survivors forms again, split into
time to detect (the kill until the first survivor confirms a failure: its
monitoring ``confirmed_at_ms``) and time to repair (from there to one tree).
Issue 20 aims at healing in under 3 s; beside it, the least time the failure
detector's settings allow for a detection and for a root's takeover, and the same
kill in the simulator (the same TreeNode code on a virtual clock): the protocol's
own time, without 100 processes sharing 2 cores.

Simulator part: messages per join during a 10,000-node join storm against the
messages of a single join into the same tree (the baseline).
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

HEARTBEAT_MS = 1000
AIM_S = 3.0  # issue 20


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def heal(cluster: Cluster, nodes: int, trace: bool) -> dict[str, float]:
    """SIGKILL a fifth of the nodes, the root among them; the heal, split into detect and repair."""
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
        swept_from = time.monotonic() - t1
        docs = await cluster.status(timeout_s=5)
        healed_s = time.monotonic() - t1  # the sweep's end: late by up to one sweep, never early
        summary = summarize(docs)
        if trace:
            print(f"    {swept_from:5.1f}-{healed_s:4.1f} s: {'; '.join(summary['problems'][:4]) or 'one tree'}")
        if summary["consistent"] and summary["size"] == expect:
            confirmed = [at for d in docs if "tree" in d and (at := d["tree"].get("confirmed_at_ms") or 0) >= kill_ms]
            detect_s = (min(confirmed) - kill_ms) / 1000 if confirmed else float("nan")
            sweep_s = healed_s - swept_from
            return {"heal_s": healed_s, "detect_s": detect_s, "repair_s": healed_s - detect_s, "sweep_s": sweep_s}
        await asyncio.sleep(0.1)
    raise TimeoutError(f"no single tree of {expect} within 120 s")


async def real_part(nodes: int, broadcasts: int, trace: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(name="bench", root_dir=Path(tmp), heartbeat_ms=HEARTBEAT_MS)
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
            healed = await heal(cluster, nodes, trace)
        finally:
            cluster.down()
    return {
        "formed_s": formed_s,
        "bcast_median_ms": statistics.median(latencies),
        "bcast_p99_ms": pct(latencies, 0.99),
        **healed,
    }


def sim_heal_s(cfg: TreeConfig, nodes: int, seeds: int = 5) -> list[float]:
    """The real part's kill (a fifth of the nodes, the root among them) in the simulator, which
    runs the same TreeNode code on a virtual clock: time until one tree, checked every 100 ms."""
    from borgusb.tree.sim import Bus

    out = []
    for seed in range(seeds):
        bus = Bus(cfg, seed=seed)
        first = bus.add_node([])
        for _ in range(nodes - 1):
            bus.add_node([first.me])
            bus.run(250)
        if not bus.run_until_consistent(120_000):
            raise RuntimeError(f"simulated tree never formed: {bus.consistent()}")
        bus.run(5 * cfg.heartbeat_ms)
        root = bus.root()
        others = [n for n in bus.alive.values() if n is not root]
        victims = [root, *random.Random(seed).sample(others, nodes // 5 - 1)]
        killed_at = bus.now
        for v in victims:
            bus.fail(v.me.node_id)
        while bus.consistent() is not None:
            if bus.now - killed_at > 120_000:
                raise RuntimeError(f"simulated heal stuck: {bus.consistent()}")
            bus.tick(100)
        out.append((bus.now - killed_at) / 1000)
    return out


def sim_part(storm: int) -> dict[str, float]:
    from borgusb.tree.sim import run_sim

    return run_sim(nodes=1000, children=10, storm=storm, seed=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--storm", type=int, default=10_000)
    parser.add_argument("--trace", action="store_true", help="print what each sweep of the heal saw")
    args = parser.parse_args()

    real = asyncio.run(real_part(args.nodes, args.broadcasts, args.trace))
    print(f"{args.nodes} real node processes on loopback (heartbeat 1 s)")
    print(f"  tree formed from cold start : {real['formed_s']:.1f} s")
    print(f"  broadcast latency median    : {real['bcast_median_ms']:.0f} ms   goal < 250 ms")
    print(f"  broadcast latency p99       : {real['bcast_p99_ms']:.0f} ms   goal < 1000 ms")
    print(f"  healing after killing 20%   : {real['heal_s']:.1f} s   goal < 30 s (incl. root)", end="")
    print(f"; aim < {AIM_S:g} s (issue 20) {'OK' if real['heal_s'] < AIM_S else 'not reached'}")
    print(f"    time to detect            : {real['detect_s']:.1f} s   (the kill to the first confirmed failure)")
    print(f"    time to repair            : {real['repair_s']:.1f} s   (from there to one tree of the survivors)")
    print(f"    (the heal is read by sweeps of every node's status; the last took {real['sweep_s']:.1f} s)")
    cfg = TreeConfig(k=dna.get("peerTreeNet").max_children, heartbeat_ms=HEARTBEAT_MS)
    print(
        f"    the detector's least times: a killed peer (its port refuses the nudge it gets a beat and a half"
        f" late) {1.5 * HEARTBEAT_MS / 1000:g} s after its last beat, a killed root at its child's next beat;"
        f" a silent peer (loss, a partition, frozen: nothing refused) {cfg.confirm_ms / 1000:g} s, a silent"
        f" root {2 * cfg.confirm_ms / 1000:g} s"
    )
    sim_heal = sim_heal_s(cfg, args.nodes)
    print(
        f"  the same kill in the simulator: {statistics.median(sim_heal):.1f} s median of {len(sim_heal)} seeds"
        f" (max {max(sim_heal):.1f} s; virtual time, no CPU contention: what the protocol itself takes)"
    )
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
