"""peerMemoryCell: recall@5 of the hybrid search against keyword-only and embedding-only, and search
latency over 10,000 memories on a 5-node loopback cluster.

* **Recall@5** on tests/vectors/memory_corpus.json's 40 questions (they share few words with their
  answers): first over its 300 memories alone, then with 9,700 more notes of the same kinds around
  them (10,000 in all: the answers must still come out on top of a larger crowd). Goal: hybrid above
  both single methods.
* **Latency**: ``memory.search`` from a client, round-robin over the five entry cells, each search
  fanned out to all five cells (R = 3 copies, so each holds about 6,000), answers checked and merged
  at the entry and checked again by the client. Median and p99 over `--searches`; goal p99 < 100 ms.
  **Baseline**, same run: one in-process `Index` of all 10,000 texts answering the same questions
  (no network, no signatures, one index instead of five in parallel).
* The cells' resident memory after the searches (the model and the index loaded), beside one idle
  cell's before any search.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from borgusb.cells.memory.client import MemoryClient  # noqa: E402
from borgusb.clock import SystemClock  # noqa: E402
from borgusb.cluster import Cluster  # noqa: E402
from borgusb.envelope import Verifier  # noqa: E402
from borgusb.keys import SigningKey  # noqa: E402
from borgusb.memory.query import make_query  # noqa: E402
from borgusb.memory.record import compose  # noqa: E402
from borgusb.memory.scoring import MODES, Index  # noqa: E402
from borgusb.net.peer import PeerClient  # noqa: E402

CLOCK = SystemClock()
NODES = 5
DAY_MS = 86_400_000
CORPUS = json.loads((Path(__file__).resolve().parents[1] / "tests/vectors/memory_corpus.json").read_text())
WHO = [
    "Maria",
    "Leo",
    "Priya",
    "Jonas",
    "Eva",
    "Sam",
    "Ana",
    "Ben",
    "Tomás",
    "the landlord",
    "my sister",
    "the plumber",
]
DID = [
    "asked about", "fixed", "forgot", "paid for", "cleaned", "moved", "ordered", "returned", "photographed",
    "wrote a note about", "complained about", "borrowed", "painted", "measured", "sold", "lost",
]  # fmt: skip
WHAT = [
    "the kitchen shelf", "the winter tyres", "the blue jacket", "the garden hose", "the coffee grinder",
    "the printer cartridge", "the spare bulbs", "the bookcase", "the old laptop", "the bike helmet",
    "the tent", "the passport photos", "the birthday cake", "the power drill", "the hallway mirror",
    "the desk chair", "the camera battery", "the recycling bins", "the guitar strings", "the window blinds",
]  # fmt: skip
WHEN = ["on Monday", "last weekend", "this morning", "before lunch", "after work", "yesterday evening", "in the rain"]


def filler(n: int) -> list[tuple[str, str, int]]:
    """n fixed notes (kind, text, age in days), varied by a stride through the combinations."""
    combos = list(itertools.product(WHO, DID, WHAT, WHEN))
    kinds = ["note", "home", "work", "finance", "car", "garden", "pet", "travel"]
    out = []
    for i in range(n):
        who, did, what, when = combos[(i * 7919) % len(combos)]
        out.append((kinds[i % len(kinds)], f"{who[0].upper() + who[1:]} {did} {what} {when}.", 1 + (i * 13) % 365))
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def rss_mib(pid: int) -> float:
    """A node process's resident memory with its children (a node may run its cell in a child)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            total += int(Path(f"/proc/{p}/status").read_text().split("VmRSS:")[1].split()[0])
        except (OSError, IndexError):
            pass
    return total / 1024


def _children(pid: int) -> list[int]:
    try:
        kids = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


async def put_all(p: PeerClient, ips: list[str], notes: list) -> None:
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with sem:
            done = await MemoryClient(p, ips[i % len(ips)]).put(notes[i])
            assert done["stored"] == done["holders"], done

    await asyncio.gather(*(one(i) for i in range(len(notes))))


async def recall(p: PeerClient, ips: list[str], answers: list[str]) -> dict[str, float]:
    out = {}
    for mode in MODES:
        hits = 0
        for i, q in enumerate(CORPUS["questions"]):
            found = await MemoryClient(p, ips[i % len(ips)]).search(
                make_query(q["q"], CLOCK.now_ms(), limit=5, mode=mode)
            )
            hits += answers[q["answer"]] in {r.memory.id for r in found.results}
        out[mode] = hits / len(CORPUS["questions"])
    return out


async def run(total: int, searches: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        os.environ["BORGUSB_DATA_ROOT"] = str(Path(tmp) / "data")
        os.environ["BORGUSB_MEMORY_PUT_RATE"] = "1000000"
        os.environ["BORGUSB_MEMORY_MAX_RECORDS"] = str(total)
        cluster = Cluster(name="bench-memory", cell="peerMemoryCell", root_dir=Path(tmp), heartbeat_ms=500)
        try:
            cluster.up(NODES)
            await cluster.wait_one_tree(timeout_s=90, expect=NODES)
            deadline = time.monotonic() + 30
            while not all(d.get("memory", {}).get("members") == NODES for d in await cluster.status()):
                assert time.monotonic() < deadline, "member views did not settle"
                await asyncio.sleep(0.3)
            ips = [n.ip for n in cluster.nodes]
            idle_rss = [rss_mib(n.pid) for n in cluster.nodes]
            writer = SigningKey.generate()
            now = CLOCK.now_ms()
            notes = [
                compose(writer, m["text"], kind=m["kind"], ts=now - m["age_days"] * DAY_MS) for m in CORPUS["memories"]
            ]
            extra = [compose(writer, t, kind=k, ts=now - a * DAY_MS) for k, t, a in filler(total - len(notes))]
            answers = [m.id for m in notes]
            async with PeerClient(SigningKey.generate(), CLOCK, Verifier(CLOCK), timeout_s=60) as p:
                await put_all(p, ips, notes)
                small = await recall(p, ips, answers)
                t0 = time.perf_counter()
                await put_all(p, ips, extra)
                put_s = time.perf_counter() - t0
                held = [d["memory"]["records"] for d in await cluster.status()]
                t0 = time.perf_counter()
                for ip in ips:  # the first search of each cell embeds its texts and builds its BM25 index
                    await MemoryClient(p, ip).search(make_query("warm up", CLOCK.now_ms()))
                warm_s = time.perf_counter() - t0
                large = await recall(p, ips, answers)
                took = []
                questions = [q["q"] for q in CORPUS["questions"]]
                for i in range(searches):
                    q = make_query(questions[i % len(questions)], CLOCK.now_ms(), limit=10)
                    t0 = time.perf_counter()
                    found = await MemoryClient(p, ips[i % NODES]).search(q)
                    took.append(time.perf_counter() - t0)
                    assert found.cells == NODES and not found.bad
            busy_rss = [rss_mib(n.pid) for n in cluster.nodes]
        finally:
            cluster.down()
    index = Index()
    for m in notes + extra:
        index.add(m.id, m.text, m.ts)
    index.build()
    base = []
    for i in range(searches):
        t0 = time.perf_counter()
        index.search(questions[i % len(questions)], CLOCK.now_ms(), limit=10)
        base.append(time.perf_counter() - t0)
    return {
        "small": small, "large": large, "took": took, "base": base, "put_s": put_s, "warm_s": warm_s,
        "held": held, "idle_rss": idle_rss, "busy_rss": busy_rss, "total": len(notes) + len(extra),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=10_000, help="memories on the cluster for the latency phase")
    parser.add_argument("--searches", type=int, default=400, help="searches timed")
    args = parser.parse_args()
    r = asyncio.run(run(args.memories, args.searches))
    for name, rec in (("300 memories", r["small"]), (f"{r['total']:,} memories", r["large"])):
        verdict = "met" if rec["hybrid"] > max(rec["keyword"], rec["embedding"]) else "not met"
        print(
            f"recall@5, 40 questions, {name}: hybrid {rec['hybrid']:.3f} | keyword-only (BM25) {rec['keyword']:.3f} | "
            f"embedding-only {rec['embedding']:.3f}  (goal: hybrid above both: {verdict})"
        )
    med, p99 = statistics.median(r["took"]) * 1e3, pct(r["took"], 0.99) * 1e3
    bmed, bp99 = statistics.median(r["base"]) * 1e3, pct(r["base"], 0.99) * 1e3
    print(
        f"search latency, {len(r['took'])} searches over {r['total']:,} memories on {NODES} cells "
        f"(each holds {min(r['held']):,}-{max(r['held']):,}): median {med:.1f} ms, p99 {p99:.1f} ms "
        f"(goal p99 < 100 ms: {'met' if p99 < 100 else 'not met'}); baseline, one in-process index of all "
        f"{r['total']:,}: median {bmed:.1f} ms, p99 {bp99:.1f} ms"
    )
    print(
        f"puts: {r['total'] - 300:,} in {r['put_s']:.1f} s ({(r['total'] - 300) / r['put_s']:.0f}/s, R = 3); "
        f"first search of each cell (model load, embeddings, BM25 index): {r['warm_s']:.1f} s for all five"
    )
    idle, busy = r["idle_rss"], r["busy_rss"]
    print(
        f"cell RSS: idle {statistics.median(idle):.0f} MiB (median of {NODES}); after the searches "
        f"{statistics.median(busy):.0f} MiB (model, numpy, index of ~{statistics.median(r['held']):,.0f} memories)"
    )


if __name__ == "__main__":
    main()
