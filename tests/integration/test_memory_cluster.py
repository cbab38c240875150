"""peerMemoryCell with real node processes (issue 19, "Tests: Memory").

Four memory cells, R = 2 copies of each memory. 300 memories written like real notes
(tests/vectors/memory_corpus.json) are put through every node; 40 questions that share few words
with their answers are asked through one node: the hybrid search (embeddings + BM25 + recency)
finds the answer in the top 5 for most of them, printed beside the keyword-only score of the same
run, and above it. A forged or tampered memory is refused; a private memory is found by its owner
and unreadable by any other key (and never on a holder's disk in clear); a removal holds against
a replayed put; after a holder is killed, the others bring every memory back to R copies.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from borgusb.cells.memory.client import MemoryClient
from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.memory import errors
from borgusb.memory.query import make_query
from borgusb.memory.record import compose, make_tombstone, open_text
from borgusb.net.peer import PeerClient, PeerRejected
from borgusb.seal import SealError, unseal
from tests.integration.diskscan import files_holding

pytestmark = pytest.mark.slow

CLOCK = SystemClock()
N = 4
R = 2
DAY_MS = 86_400_000
CORPUS = json.loads((Path(__file__).parents[1] / "vectors" / "memory_corpus.json").read_text())
MARKER = "okapi-marmalade-5521"  # only in the private memory's text: never on a holder's disk


def peers(key: SigningKey | None = None) -> PeerClient:
    return PeerClient(key or SigningKey.generate(), CLOCK, Verifier(CLOCK), timeout_s=30)


async def start(make_cluster, monkeypatch, data: Path):
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(data))
    monkeypatch.setenv("BORGUSB_MEMORY_R", str(R))
    monkeypatch.setenv("BORGUSB_MEMORY_PUT_RATE", "100000")
    cluster = make_cluster("peerMemoryCell")
    cluster.up(N)
    await cluster.wait_one_tree(timeout_s=60, expect=N)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # every node reads the root's table of all four
        docs = await cluster.status()
        views = {d.get("memory", {}).get("view") for d in docs}
        if len(docs) == N and len(views) == 1 and all(d["memory"]["members"] == N for d in docs):
            return cluster
        await asyncio.sleep(0.3)
    raise TimeoutError("the member views did not settle")


def cli(*args: str, key: Path, node: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "borgusb.cli", "memory", *args, "--key-file", str(key), "--node", node],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "BORGUSB_NODE"},
    )


async def recall_at_5(p: PeerClient, ip: str, mode: str) -> float:
    """The share of questions whose answer is among the top 5 results."""
    client = MemoryClient(p, ip)
    hits = 0
    for q in CORPUS["questions"]:
        found = await client.search(make_query(q["q"], CLOCK.now_ms(), limit=5, mode=mode))
        assert not found.bad and found.cells == N
        hits += CORPUS["memories"][q["answer"]]["text"] in [r.memory.text for r in found.results]
    return hits / len(CORPUS["questions"])


async def test_memory_search_on_real_cells(make_cluster, monkeypatch, tmp_path: Path) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path / "data")
    ips = [n.ip for n in cluster.nodes]
    writer, a, b = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    now = CLOCK.now_ms()
    notes = [compose(writer, m["text"], kind=m["kind"], ts=now - m["age_days"] * DAY_MS) for m in CORPUS["memories"]]

    async with peers() as p:
        sem = asyncio.Semaphore(16)

        async def put(i: int) -> dict:
            async with sem:
                return await MemoryClient(p, ips[i % N]).put(notes[i])

        t0 = time.monotonic()
        done = await asyncio.gather(*(put(i) for i in range(len(notes))))
        put_s = time.monotonic() - t0
        assert all(d["stored"] == R and d["holders"] == R for d in done)
        assert [d["id"] for d in done] == [m.id for m in notes]
        held = sum(d["memory"]["records"] for d in await cluster.status())
        assert held == R * len(notes)
        assert not any(d["memory"]["model_loaded"] for d in await cluster.status())  # puts never load the model

        t0 = time.monotonic()
        hybrid = await recall_at_5(p, ips[0], "hybrid")
        search_s = time.monotonic() - t0
        keyword = await recall_at_5(p, ips[1], "keyword")
        embedding = await recall_at_5(p, ips[2], "embedding")
        print(
            f"\nMEMORY recall@5 over {len(CORPUS['questions'])} questions, {len(notes)} memories on {N} cells "
            f"(R={R}): hybrid {hybrid:.3f}, keyword-only (BM25) {keyword:.3f}, embedding-only {embedding:.3f}; "
            f"300 puts {put_s:.1f} s, 40 hybrid searches {search_s:.1f} s"
        )
        assert hybrid >= 0.8
        assert hybrid > keyword

        # filters: kind, time range, owner, limit
        client = MemoryClient(p, ips[3])
        got = await client.search(make_query("car tyres and oil", CLOCK.now_ms(), kinds=("car",), limit=50))
        assert got.results and all(r.memory.kind == "car" for r in got.results)
        cars = sum(m["kind"] == "car" for m in CORPUS["memories"])
        assert len({r.memory.id for r in got.results}) == len(got.results) == cars  # each once, not R times
        week = CLOCK.now_ms() - 7 * DAY_MS
        got = await client.search(make_query("what happened recently", CLOCK.now_ms(), since=week, limit=50))
        assert got.results and all(r.memory.ts >= week for r in got.results)
        assert not (await client.search(make_query("key", CLOCK.now_ms(), owner=a.public_key_hex))).results
        got = await client.search(make_query("house key", CLOCK.now_ms(), limit=3, min_score=1))
        assert len(got.results) == 3 and got.results[0].score >= got.results[-1].score

        # a forged memory (another key's name on it) and a tampered one are refused and counted
        forged = dict(compose(b, "I owe b nothing", ts=CLOCK.now_ms()).to_dict(), owner=a.public_key_hex)
        tampered = dict(notes[0].to_dict(), text="Left the extra house key with a stranger.")
        for doc in (forged, tampered):
            with pytest.raises(PeerRejected) as err:
                await client.call("memory.put", {"m": doc})
            assert err.value.reason == "bad_signature"
        with pytest.raises(PeerRejected) as err:  # straight at a holder too
            await MemoryClient(p, ips[0]).keep(tampered)
        assert err.value.reason == "bad_signature"
        counted: Counter[str] = Counter()
        for d in await cluster.status():
            counted.update({k: v for k, v in d["counters"].items() if k.startswith("memory_refused:")})
        assert counted["memory_refused:bad_signature"] >= 3

        # a private memory: found by its owner's signed search, unreadable by any other key
        secret = compose(
            a, f"The safe's combination is hidden in the cookbook, page 77 ({MARKER}).", ts=now, private=True
        )
        assert (await client.put(secret))["stored"] == R
        assert secret.id not in {
            r.memory.id for r in (await client.search(make_query("safe combination", now))).results
        }
        mine = await client.search(make_query("where is the code for the strongbox?", CLOCK.now_ms(), key=a), key=a)
        assert mine.results and mine.results[0].memory.id == secret.id
        [sealed] = await client.get([secret.id])
        assert sealed.private and sealed.text == "" and MARKER in open_text(a, sealed)
        with pytest.raises(errors.NotYours):
            open_text(b, sealed)
        with pytest.raises(SealError):  # the box itself does not open with another key
            unseal(b, bytes.fromhex(sealed.sealed), f"borgusb.memory.v1|{a.public_key_hex}|{now}|note".encode())
        forged_q = dict(make_query("safe", CLOCK.now_ms(), key=b).to_dict(), owner=a.public_key_hex)
        with pytest.raises(PeerRejected) as err:  # b cannot ask for a's private memories
            await client.call("memory.search", {"q": forged_q})
        assert err.value.reason == "bad_signature"

        # removal by the owner only; a replayed put of a removed memory is refused
        with pytest.raises(PeerRejected) as err:
            await client.rm(make_tombstone(b, notes[0].id, CLOCK.now_ms()))
        assert err.value.reason == "malformed"
        gone = await client.rm(make_tombstone(writer, notes[0].id, CLOCK.now_ms()))
        assert gone["removed"] == R
        assert not await client.get([notes[0].id])
        with pytest.raises(PeerRejected) as err:
            await client.put(notes[0])
        assert err.value.reason == "deleted"

    # the CLI: a private put and the owner's search through another node, then its removal
    akey = tmp_path / "a.key"
    akey.write_text(bytes(a.secret_bytes()).hex() + "\n")
    put = cli(
        "put", f"Parked the bike behind the library, rack 3 ({MARKER})", "--private", "--json", key=akey, node=ips[1]
    )
    assert put.returncode == 0, put.stderr
    pid = json.loads(put.stdout)["id"]
    found = cli("search", "where did I leave my bicycle?", "--mine", "--json", key=akey, node=ips[2])
    assert found.returncode == 0, found.stderr
    rows = json.loads(found.stdout)
    assert rows[0]["id"] == pid and "rack 3" in rows[0]["text"]
    public = cli("search", "bicycle rack library", "--owner", a.public_key_hex, key=akey, node=ips[3])
    assert "nothing found" in public.stdout, public.stderr  # a private memory is in no public search
    gone = cli("rm", pid, key=akey, node=ips[0])
    assert gone.returncode == 0 and f"from {R} holder(s)" in gone.stdout, gone.stderr
    again = cli("search", "where did I leave my bicycle?", "--mine", "--json", key=akey, node=ips[2])
    assert pid not in again.stdout

    # a holder dies: the live holders pass its memories on until every one has R copies again
    async def copies() -> int:
        return sum(d.get("memory", {}).get("records", 0) for d in await cluster.status())

    kept = await copies()
    assert kept == R * len(notes)  # 300 notes, less the removed one, plus the private memory
    cluster.kill(cluster.nodes[3])
    deadline = time.monotonic() + 60
    while not all(d.get("memory", {}).get("members") == N - 1 for d in await cluster.status()):
        assert time.monotonic() < deadline, "the member views did not drop the dead holder"
        await asyncio.sleep(0.3)
    while (now_held := await copies()) != kept:
        assert time.monotonic() < deadline, f"{now_held} copies on the live cells, not {kept}"
        await asyncio.sleep(0.3)
    handed = sum(d["counters"].get("memory_handoff", 0) for d in await cluster.status())
    assert handed >= kept - R * len(notes) + 1  # what the dead holder had, sent once each
    async with peers() as p:
        q = CORPUS["questions"][1]  # the answer of the first was removed above
        found = await MemoryClient(p, ips[0]).search(make_query(q["q"], CLOCK.now_ms(), limit=5))
        assert found.cells == N - 1 and notes[q["answer"]].id in {r.memory.id for r in found.results}

    read, holding = files_holding(tmp_path / "data", [MARKER.encode()])
    assert read and not holding, holding
