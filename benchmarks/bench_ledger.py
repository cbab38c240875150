"""peerPaysCell on a 5-holder loopback cluster: confirmed transfers per second and confirmation latency.

The cluster: five peerPaysCell processes (R = 5, quorum 4 of 5, the defaults), funded
through the TEST-ONLY reward setting. Latency is a wallet's view: from ``pay.send`` to
the reply that carries the certificate and the delivery to the payee's holders.

Two phases:

* **unloaded**: one account pays ``--accounts`` payees one after another (each
  confirmation waits for the one before): latency median and p99.
* **loaded**: those accounts pay each other ``--per`` times, all accounts at once, each
  entering through a different node in turn: confirmed transfers per second, with the
  latency under that load.

**Floor**, measured in the same run: the required work of one transfer alone, on one
core: verify the payer's signature and a quorum's (4) acceptance signatures with
libsecp256k1 (coincurve), and one SQLite commit (WAL, synchronous=FULL, in the same
directory the holders use). The ratio is the cluster's rate over that floor's rate.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import coincurve  # noqa: E402

from borgusb.cells.peerpays.client import PayClient  # noqa: E402
from borgusb.clock import SystemClock  # noqa: E402
from borgusb.cluster import Cluster  # noqa: E402
from borgusb.envelope import Verifier  # noqa: E402
from borgusb.keys import SigningKey  # noqa: E402
from borgusb.ledger import UNITS_PER_SHELL, ZERO_HASH, sign_reward, sign_transfer  # noqa: E402
from borgusb.ledger.certificate import acceptance_bytes, set_digest, sign_acceptance  # noqa: E402
from borgusb.ledger.tx import signing_bytes  # noqa: E402
from borgusb.net.peer import PeerClient  # noqa: E402

CLOCK = SystemClock()
NODES = 5
QUORUM = 4
WORK = hashlib.sha256(b"bench_ledger work record").hexdigest()
SHELL = UNITS_PER_SHELL


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def floor_rate(data_dir: Path, seconds: float = 2.0) -> dict[str, float]:
    """Transfers per second of the required work alone (one core, no network, no envelopes)."""
    payer, holders = SigningKey.generate(), [SigningKey.generate() for _ in range(QUORUM)]
    tx = sign_transfer(payer, seq=1, prev=ZERO_HASH, to=holders[0].public_key_hex, amount=SHELL, ts=CLOCK.now_ms())
    set_id = set_digest(h.public_key_hex for h in holders)
    acceptances = [sign_acceptance(h, tx, set_id) for h in holders]
    checks = [(coincurve.PublicKey(bytes.fromhex(tx.account)), bytes.fromhex(tx.sig), signing_bytes(tx.body()))]
    checks += [
        (
            coincurve.PublicKey(bytes.fromhex(a.holder)),
            bytes.fromhex(a.sig),
            acceptance_bytes(a.id, a.account, a.seq, a.holder, a.set_id),
        )
        for a in acceptances
    ]
    db = sqlite3.connect(data_dir / "floor.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS txs (id TEXT PRIMARY KEY, body TEXT)")
    body = tx.encode().decode()
    timings = {"verify": 0.0, "commit": 0.0}
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        for key, sig, msg in checks:
            assert key.verify(sig, msg)  # coincurve hashes msg with SHA-256, as the ledger signs
        t1 = time.perf_counter()
        db.execute("BEGIN")
        db.execute("INSERT INTO txs VALUES (?, ?)", (f"{done:064x}", body))
        db.execute("COMMIT")
        timings["commit"] += time.perf_counter() - t1
        timings["verify"] += t1 - t0
        done += 1
    db.close()
    elapsed = time.perf_counter() - start
    t0, signs = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds / 4:
        sign_acceptance(holders[0], tx, set_id)
        signs += 1
    verify_s = timings["verify"] / done / len(checks)
    sign_s = (time.perf_counter() - t0) / signs
    commit_s = timings["commit"] / done
    return {
        "rate": done / elapsed,
        "verify_us": timings["verify"] / done * 1e6,
        "commit_us": commit_s * 1e6,
        "replicated_rate": (os.cpu_count() or 1) / replicated_work_s(verify_s, sign_s, commit_s),
    }


def replicated_work_s(verify_s: float, sign_s: float, commit_s: float) -> float:
    """CPU seconds per transfer that the protocol itself requires of the whole cluster (no envelopes,
    TLS, HTTP or JSON): each of the R holders verifies the payer's signature, signs its acceptance
    and commits it; the entry verifies R acceptances; each of the R holders (the payer's and the
    payee's are the same five here) verifies the certificate's quorum signatures and commits it."""
    accept = NODES * (verify_s + sign_s + commit_s)
    certify = NODES * verify_s
    deliver = NODES * (QUORUM * verify_s + commit_s)
    return accept + certify + deliver


def cluster_cpu_s(cluster: Cluster) -> float:
    """User + system CPU seconds the node processes have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for node in cluster.nodes:
        fields = Path(f"/proc/{node.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def bundle_counts(docs: list[dict[str, Any]]) -> tuple[int, int]:
    """Holder-to-holder offer and certificate requests the nodes sent so far, and the items they carried."""
    kinds = [d.get("pay", {}).get("bundles", {}).get(k, {}) for d in docs for k in ("offers", "certs")]
    return sum(b.get("requests", 0) for b in kinds), sum(b.get("items", 0) for b in kinds)


def client(key: SigningKey) -> PeerClient:
    return PeerClient(key, CLOCK, Verifier(CLOCK), timeout_s=30)


async def settled(cluster: Cluster, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # every node reads the root's table of all five
        docs = await cluster.status()
        views = {d.get("pay", {}).get("view") for d in docs}
        if len(docs) == NODES and len(views) == 1 and all(d["pay"]["members"] == NODES for d in docs):
            return
        await asyncio.sleep(0.3)
    raise TimeoutError("the member views did not settle")


class Wallet:
    """One account with its own chain position and its own client key."""

    def __init__(self, key: SigningKey) -> None:
        self.key, self.seq, self.head = key, 0, ZERO_HASH
        self.peers = client(key)

    async def pay(self, ip: str, to: str, amount: int) -> float:
        tx = sign_transfer(self.key, seq=self.seq + 1, prev=self.head, to=to, amount=amount, ts=CLOCK.now_ms())
        t0 = time.perf_counter()
        reply = await PayClient(self.peers, ip).submit(tx)
        took = time.perf_counter() - t0
        assert reply["id"] == tx.id and len(reply["certificate"]["signers"]) >= QUORUM, reply
        self.seq, self.head = tx.seq, tx.id
        return took


async def run(accounts: int, per: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        os.environ["BORGUSB_DATA_ROOT"] = str(Path(tmp) / "data")
        os.environ["BORGUSB_PAY_TEST_ONLY_WORK_REF"] = WORK
        cluster = Cluster(name="bench-ledger", cell="peerPaysCell", root_dir=Path(tmp), heartbeat_ms=500)
        try:
            cluster.up(NODES)
            await cluster.wait_one_tree(timeout_s=90, expect=NODES)
            await settled(cluster)
            ips = [n.ip for n in cluster.nodes]
            (Path(tmp) / "data").mkdir(parents=True, exist_ok=True)

            alice = Wallet(SigningKey.generate())
            claim = sign_reward(alice.key, seq=1, prev=ZERO_HASH, amount=1000 * SHELL, ref=WORK, ts=CLOCK.now_ms())
            funded = await PayClient(alice.peers, ips[0]).submit(claim)
            assert funded["certificate"]["quorum"] == QUORUM, funded

            wallets = [Wallet(SigningKey.generate()) for _ in range(accounts)]
            unloaded = [
                await alice.pay(ips[i % NODES], w.key.public_key_hex, 10 * SHELL) for i, w in enumerate(wallets)
            ]

            async def spend(i: int, w: Wallet) -> list[float]:
                took = []
                for j in range(per):
                    payee = wallets[(i + 1 + j % (accounts - 1)) % accounts].key.public_key_hex  # never itself
                    took.append(await w.pay(ips[(i + j) % NODES], payee, SHELL // 100))
                return took

            sent0 = bundle_counts(await cluster.status())
            cpu0, t0 = cluster_cpu_s(cluster), time.perf_counter()
            loaded = [t for ts in await asyncio.gather(*(spend(i, w) for i, w in enumerate(wallets))) for t in ts]
            elapsed, cpu = time.perf_counter() - t0, cluster_cpu_s(cluster) - cpu0

            docs = await cluster.status()
            sent = [b - a for a, b in zip(sent0, bundle_counts(docs), strict=True)]
            refused = {
                k: v
                for d in docs
                for k, v in d.get("counters", {}).items()
                if k.startswith("refused:") or k.startswith("pay_refused:")
            }
            for w in [alice, *wallets]:
                await w.peers.close()
            floor = floor_rate(Path(tmp) / "data")
        finally:
            cluster.down()
    return {
        "unloaded_median_ms": statistics.median(unloaded) * 1e3,
        "unloaded_p99_ms": pct(unloaded, 0.99) * 1e3,
        "loaded_median_ms": statistics.median(loaded) * 1e3,
        "loaded_p99_ms": pct(loaded, 0.99) * 1e3,
        "rate": len(loaded) / elapsed,
        "cpu_ms": cpu / len(loaded) * 1e3,
        "transfers": len(loaded),
        "floor_rate": floor["rate"],
        "floor_verify_us": floor["verify_us"],
        "floor_commit_us": floor["commit_us"],
        "replicated_rate": floor["replicated_rate"],
        "requests": sent[0] / len(loaded),
        "items": sent[1] / len(loaded),
        "refused": sum(refused.values()),
        "refused_detail": str(refused or "none"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=16, help="accounts paying at once in the loaded phase")
    parser.add_argument("--per", type=int, default=10, help="transfers per account in the loaded phase")
    args = parser.parse_args()
    r = asyncio.run(run(args.accounts, args.per))
    ratio = r["rate"] / r["floor_rate"]
    print(
        f"unloaded ({args.accounts} transfers one after another): "
        f"median {r['unloaded_median_ms']:.1f} ms, p99 {r['unloaded_p99_ms']:.1f} ms"
    )
    print(
        f"loaded ({args.accounts} accounts x {args.per} transfers at once): {r['rate']:.1f} confirmed transfers/s; "
        f"latency median {r['loaded_median_ms']:.1f} ms, p99 {r['loaded_p99_ms']:.1f} ms"
    )
    print(
        f"the nodes' CPU per confirmed transfer: {r['cpu_ms']:.1f} ms (all five processes; "
        f"{r['cpu_ms'] * r['rate'] / 1e3:.2f} cores busy); offers and certificates to other holders "
        f"{r['items']:.1f} per transfer, in {r['requests']:.1f} requests "
        f"(bundles of {r['items'] / max(r['requests'], 1e-9):.1f} on average)"
    )
    print(
        f"floor (payer + {QUORUM} acceptance verifies {r['floor_verify_us']:.0f} us, one SQLite commit "
        f"{r['floor_commit_us']:.0f} us): {r['floor_rate']:.0f} transfers/s"
    )
    print(
        f"replicated floor: the same work done by every one of the {NODES} holders (accept, certify, deliver: "
        f"{NODES * 2} commits, {NODES * (QUORUM + 2)} verifies, {NODES} signs per transfer) on "
        f"{os.cpu_count()} cores: {r['replicated_rate']:.0f} transfers/s = ratio "
        f"{r['replicated_rate'] / r['floor_rate']:.2f} of the floor, the most any R={NODES} cluster on this "
        "machine can reach"
    )
    print(f"refusals during the run: {r['refused']} ({r['refused_detail']})")
    print(f"ratio {ratio:.3f} of the floor (goal >= 0.3): {'met' if ratio >= 0.3 else 'NOT met'}")
    p99 = max(r["unloaded_p99_ms"], r["loaded_p99_ms"])
    print(f"p99 confirmation {p99:.1f} ms (goal < 250 ms): {'met' if p99 < 250 else 'NOT met'}")


if __name__ == "__main__":
    main()
