"""cronoTreeCell: agreement with the root across a 30-node tree, convergence from ±5 s skew.

N crono node processes on loopback (default 30, k=3: depth 3), each under
libfaketime with its wall clock skewed by a random offset in [-5 s, +5 s]
(the root's too); monotonic clocks are real.

* Convergence: time from launching the processes until every node's network
  time agrees with the root's within 5 ms, then within 1 ms (polled every
  0.2 s), and the same from the moment the tree is formed.
* Offsets from the root: median, p99, max of |node - root| over all nodes
  and several rounds, two ways: the NTP-style probe from this process
  (four timestamps, min RTT of 10 samples per node) and exactly, from each
  node's (network - CLOCK_MONOTONIC) offset, since on one machine all
  processes share that clock.
* Baseline, same run, same loopback, same signed receptor and kept-alive
  connection: the error of a single Cristian-style exchange (server time +
  RTT/2), and of the seed's method (server time, no latency correction),
  both scored against the exact offset.
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
from borgusb.cells.crono.exchange import exchange  # noqa: E402
from borgusb.clock import SystemClock  # noqa: E402
from borgusb.cluster import Cluster, loopback  # noqa: E402
from borgusb.envelope import Verifier  # noqa: E402
from borgusb.keys import SigningKey  # noqa: E402
from borgusb.net.peer import PeerClient  # noqa: E402
from borgusb.timesync import cristian, faketime_library, skewed_command_prefix  # noqa: E402

CRONO = dna.get("cronoTreeCell")
BASE = 200


def mono_us() -> int:
    return time.monotonic_ns() // 1000


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def dist(values: list[int]) -> str:
    a = [abs(v) for v in values]
    return f"median {statistics.median(a):7.0f} µs   p99 {pct(a, 0.99):7.0f} µs   max {max(a):7.0f} µs   (n={len(a)})"


async def truth(cluster: Cluster) -> tuple[str | None, dict[str, int]]:
    docs = [d for d in await cluster.status() if "error" not in d]
    root = next((d["ip"] for d in docs if d["status"] == "root"), None)
    if root is None or not all(d["crono"]["synced"] for d in docs):
        return None, {}
    offs = {d["ip"]: d["crono"]["mono_offset_us"] for d in docs}
    return root, {ip: off - offs[root] for ip, off in offs.items() if ip != root}


async def run(nodes: int, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    skews = [rng.uniform(-5.0, 5.0) for _ in range(nodes)]
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(name="bench-crono", cell="cronoTreeCell", root_dir=Path(tmp), heartbeat_ms=1000)
        cluster.prefix = {loopback(i, BASE): skewed_command_prefix(s) for i, s in enumerate(skews)}
        try:
            t0 = time.monotonic()
            cluster.up(nodes, base=BASE)
            await cluster.wait_one_tree(timeout_s=120 + nodes, expect=nodes)
            formed = time.monotonic() - t0
            within: dict[int, float] = {}
            deadline = time.monotonic() + 120
            while len(within) < 2 and time.monotonic() < deadline:
                root, diffs = await truth(cluster)
                if len(diffs) == nodes - 1:
                    worst = max(abs(d) for d in diffs.values())
                    for bound in (5_000, 1_000):
                        if worst < bound and bound not in within:
                            within[bound] = time.monotonic() - t0
                await asyncio.sleep(0.2)
            summary = await cluster.wait_one_tree(timeout_s=10, expect=nodes)
            print(
                f"{nodes} crono nodes (k={CRONO.max_children}, depth {summary['depth']}), host clocks skewed "
                f"{min(skews):+.2f} s .. {max(skews):+.2f} s; load {open('/proc/loadavg').read().split()[0]}"
            )
            print(f"  tree formed           {formed:6.1f} s after launch")
            for bound in (5_000, 1_000):
                at = within.get(bound)
                print(
                    f"  all within {bound // 1000} ms of root "
                    + (
                        f"{at:6.1f} s after launch ({at - formed:+.1f} s after the tree formed)"
                        if at
                        else "NOT reached in 120 s"
                    )
                )

            probe_err: list[int] = []
            exact_err: list[int] = []
            cristian_err: list[int] = []
            seed_err: list[int] = []
            client = PeerClient(SigningKey.generate(), SystemClock(), Verifier(SystemClock()))
            async with client:
                for _ in range(rounds):
                    root, exact = await truth(cluster)
                    assert root is not None
                    docs = await cluster.status()
                    mono_off = {d["ip"]: d["crono"]["mono_offset_us"] for d in docs}

                    async def best(ip: str, n: int = 10) -> int:
                        samples = []
                        for _ in range(n):
                            samples.append((await exchange(client, ip, CRONO.recp_port, mono=mono_us))[0])
                            await asyncio.sleep(0.002)
                        return min(samples, key=lambda s: s.rtt_us).offset_us

                    root_probe = await best(root)
                    for ip in mono_off:
                        if ip != root:
                            probe_err.append(await best(ip) - root_probe)
                            exact_err.append(exact[ip])
                        # the baseline: one exchange, one server timestamp (t3), against the exact offset
                        t1 = mono_us()
                        _, info = await exchange(client, ip, CRONO.recp_port, mono=mono_us)
                        t4 = mono_us()
                        cristian_err.append(cristian(t1, info["t3"], t4) - mono_off[ip])
                        seed_err.append(info["t3"] - t4 - mono_off[ip])
                    await asyncio.sleep(1.0)
            print(f"offsets from the root over {rounds} rounds:")
            print(f"  crono, exact (shared monotonic)   {dist(exact_err)}")
            print(f"  crono, NTP-style probe            {dist(probe_err)}")
            print("baseline, one exchange per node over the same loopback, error against the exact offset:")
            print(f"  Cristian (t_server + RTT/2)       {dist(cristian_err)}")
            print(f"  seed (t_server, no correction)    {dist(seed_err)}")
            ce, xe = [abs(v) for v in cristian_err], [abs(v) for v in exact_err]
            print(
                f"Cristian / crono: median {statistics.median(ce) / max(1, statistics.median(xe)):.1f}x, "
                f"p99 {pct(ce, 0.99) / max(1, pct(xe, 0.99)):.1f}x, max {max(ce) / max(1, max(xe)):.1f}x "
                f"(crono's error adds up over {summary['depth']} hops; Cristian's is one hop from this process)"
            )
        finally:
            cluster.down()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    if faketime_library() is None:
        print(
            "bench_crono: libfaketime is missing (apt-get install faketime; ./build.sh bench installs it)",
            file=sys.stderr,
        )
        return 1
    asyncio.run(run(args.nodes, args.rounds, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
