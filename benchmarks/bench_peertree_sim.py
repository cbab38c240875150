"""PeerTree simulator benchmark: join-storm cost and the million-node build.

Run: ``python benchmarks/bench_peertree_sim.py [--big N]`` (default N = 1,000,000).
Prints messages per join for a 10,000-joiner storm vs. a single join, and the
time and broadcast hops of the big k=10 run.
"""

from __future__ import annotations

import argparse
import time

from borgusb.tree.sim import run_sim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big", type=int, default=1_000_000, help="nodes in the big run (default 1e6)")
    a = ap.parse_args()

    storm = run_sim(10_000, 10, storm=10_000, seed=1)
    t0 = time.perf_counter()
    big = run_sim(a.big, 10, seed=1)
    big_s = time.perf_counter() - t0

    rows = [
        ("msgs per single join (10k tree)", storm["msgs_per_single_join"]),
        ("msgs per join, 10k-joiner storm", storm["msgs_per_join_in_storm"]),
        ("storm / single ratio", storm["storm_vs_single"]),
        (f"{a.big:,}-node k=10 run: seconds", round(big_s, 1)),
        (f"{a.big:,}-node k=10 run: build seconds", big["build_seconds"]),
        (f"{a.big:,}-node k=10 run: broadcast hops", big["broadcast_hops"]),
        (f"{a.big:,}-node k=10 run: exactly once", big["broadcast_exactly_once"]),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'metric':<{w}}  value")
    print("-" * (w + 10))
    for name, val in rows:
        print(f"{name:<{w}}  {val}")


if __name__ == "__main__":
    main()
