"""shardTreeCell with real node processes: round trips, holder loss, corruption, bad input, resume."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from borgusb import dna
from borgusb.clock import SystemClock
from borgusb.dstream import FRAME_PATH, Receiver, StreamError, frame, parse_locate, post_frame, put_file
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient, PeerRejected
from borgusb.net.tls import client_context
from borgusb.shard import model

pytestmark = pytest.mark.slow

DNA = dna.get("shardTreeCell")
PORT = DNA.recp_port
SS = model.SHARD_SIZE
MB30 = 30_000_000


def client(key: SigningKey) -> PeerClient:
    clock = SystemClock()
    return PeerClient(key, clock, Verifier(clock), timeout_s=30)


async def start(make_cluster, monkeypatch, tmp_path: Path, n: int):
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path))
    cluster = make_cluster("shardTreeCell")
    cluster.up(n)
    await cluster.wait_one_tree(timeout_s=60, expect=n)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # every node has heard every other's announcement
        docs = await cluster.status()
        if all(d.get("shard", {}).get("directory") == n for d in docs):
            return cluster
        await asyncio.sleep(0.2)
    raise TimeoutError("shard directories did not fill")


async def put_bytes(ip: str, data: bytes, key: SigningKey, tmp_path: Path, r: int = 3) -> dict:
    path = tmp_path / f"in-{os.urandom(4).hex()}"
    path.write_bytes(data)
    async with client(key) as peers:
        return await put_file(peers, ip, PORT, path, key, r=r)


async def locate(ip: str, oid: str) -> dict:
    async with client(SigningKey.generate()) as peers:
        return await peers.post(ip, PORT, "/recp", "shard.locate", {"id": oid}, signed_reply=True)


async def stat(ip: str, oid: str) -> dict:
    async with client(SigningKey.generate()) as peers:
        return await peers.post(ip, PORT, "/recp", "shard.stat", {"id": oid}, signed_reply=True)


async def get_bytes(ip: str, oid: str, out: Path, **kw) -> tuple[bytes, dict]:
    async with client(SigningKey.generate()) as peers:
        reply = await peers.post(ip, PORT, "/recp", "shard.locate", {"id": oid}, signed_reply=True)
        m, holders = parse_locate(reply, oid)
        fetch = Receiver(peers, m, holders, out, **kw)
        stats = await fetch.run()
        await fetch.receipts_handed()  # before the client closes: the hand-in would reopen its session
    return out.read_bytes(), stats


async def wait_refetched(cluster, ip: str, path: Path, timeout_s: float) -> dict:
    """The status of the node at ip once it has refetched a dropped copy (path back), or at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        doc = next(d for d in await cluster.status() if d["ip"] == ip)
        if (doc["counters"].get("shard_refetched") and path.exists()) or time.monotonic() > deadline:
            return doc
        await asyncio.sleep(0.3)


async def wait_copies(ip: str, oid: str, r: int, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        st = await stat(ip, oid)
        if st["found"] and st["copies_min"] >= r and st["manifest_copies"] >= r:
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"copies not back at {r}: {json.dumps(st)[:400]}")
        await asyncio.sleep(0.5)


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "borgusb.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


async def test_round_trips_of_every_size_and_fair_concurrent_streams(make_cluster, monkeypatch, tmp_path) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path, 4)
    ips = [n.ip for n in cluster.nodes]
    owner = SigningKey.generate()
    rng = random.Random(4)
    for size in (0, 1, SS - 1, SS, SS + 1, 2 * SS + 1):
        data = rng.randbytes(size)
        put = await put_bytes(ips[0], data, owner, tmp_path)
        assert put["id"] == model.object_id(size, SS, [model.sha256_hex(c) for _, c in model.split(data)])
        assert put["copies_min"] == 3 and put["manifest_copies"] == 3
        got, _ = await get_bytes(ips[size % 3 + 1], put["id"], tmp_path / f"out-{size}")
        assert got == data, size
    # 30 MB, and two streams of it at once from the same holders
    big = rng.randbytes(MB30)
    put = await put_bytes(ips[1], big, owner, tmp_path)
    assert put["shards"] == -(-MB30 // SS)
    st = await stat(ips[3], put["id"])
    assert st["copies"] == [3] * put["shards"] and st["owner"] == owner.public_key_hex
    t0 = time.monotonic()
    (a, sa), (b, sb) = await asyncio.gather(
        get_bytes(ips[2], put["id"], tmp_path / "a"), get_bytes(ips[3], put["id"], tmp_path / "b", window=4)
    )
    assert a == big and b == big
    slow, fast = max(sa["seconds"], sb["seconds"]), min(sa["seconds"], sb["seconds"])
    print(
        f"two concurrent 30 MB streams: {sa['seconds']}s (window 16), {sb['seconds']}s (window 4), "
        f"total {time.monotonic() - t0:.2f}s"
    )
    assert slow < 4 * fast  # the narrow stream is not starved
    docs = await cluster.status()
    streams = [s for d in docs for s in d["shard"]["streams"].values() if s.get("progress")]
    assert streams and max(s["progress"] for s in streams) == 100.0  # progress on the monitoring port
    # 4 known nodes: every locate (9 above: 6 gets, a stat, 2 gets) asked them directly, and no find went out
    counters = [d["counters"] for d in docs]
    assert sum(c.get("shard_locate_direct", 0) for c in counters) >= 9, counters
    assert not any(c.get("shard_locate_direct_short") or c.get("shard_have_sent") for c in counters), counters


async def test_cli_put_get_stat_rm(make_cluster, monkeypatch, tmp_path) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path, 3)
    ip = cluster.nodes[0].ip
    src = tmp_path / "f"
    src.write_bytes(os.urandom(3 * SS + 17))
    keyfile = str(tmp_path / "key")
    put = cli("put", str(src), "--node", ip, "--key-file", keyfile, "-q")
    assert put.returncode == 0, put.stderr
    oid = put.stdout.strip()
    assert oid == model.object_id(3 * SS + 17, SS, [model.sha256_hex(c) for _, c in model.split(src.read_bytes())])
    out = tmp_path / "g"
    got = cli("get", oid, "-o", str(out), "-q", env={"BORGUSB_NODE": cluster.nodes[1].ip})
    assert got.returncode == 0, got.stderr
    assert out.read_bytes() == src.read_bytes()
    st = cli("stat", oid, "--node", cluster.nodes[2].ip)
    assert st.returncode == 0 and "min 3 of R=3" in st.stdout, st.stdout
    other = cli("rm", oid, "--node", ip, "--key-file", str(tmp_path / "other"))
    assert other.returncode != 0 and "(not_owner)" in other.stderr
    rm = cli("rm", oid, "--node", ip, "--key-file", keyfile)
    assert rm.returncode == 0, rm.stderr
    # the owner's delete reaches every holder by broadcast: gone everywhere, waited for with a deadline
    deadline = time.monotonic() + 60
    while True:
        gone = cli("stat", oid, "--node", cluster.nodes[1].ip)
        held = sum(d["shard"]["store"]["shards"] for d in await cluster.status(timeout_s=30))
        if (gone.returncode == 1 and "not found" in gone.stdout and held == 0) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert gone.returncode == 1 and "not found" in gone.stdout, gone.stdout
    assert held == 0, f"{held} shards still held after the delete"


async def test_a_get_that_cannot_fit_is_refused_before_fetching_and_leaves_nothing(
    make_cluster, monkeypatch, tmp_path
) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path, 2)
    src = tmp_path / "f"
    src.write_bytes(os.urandom(3 * SS))
    async with client(SigningKey.generate()) as peers:
        put = await put_file(peers, cluster.nodes[0].ip, PORT, src, peers.key, r=1)
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SS}", "tmpfs", str(small)], check=True)
    try:
        with pytest.raises(StreamError, match="not enough free space"):
            await get_bytes(cluster.nodes[1].ip, put["id"], small / "out")
        assert list(small.iterdir()) == []  # no partial file, nothing written
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
    data, _ = await get_bytes(cluster.nodes[1].ip, put["id"], tmp_path / "out")  # room elsewhere: it works
    assert data == src.read_bytes()


async def test_killing_a_third_of_the_holders_reads_and_restores_r(make_cluster, monkeypatch, tmp_path) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path, 6)
    docs = await cluster.status()
    root = next(d["ip"] for d in docs if d["status"] == "root")
    data = os.urandom(12 * SS + 5)
    owner = SigningKey.generate()
    put = await put_bytes(root, data, owner, tmp_path)
    victims = random.sample([n for n in cluster.nodes if n.ip != root], 2)  # 2 of 6 holders
    for node in victims:
        cluster.kill(node)
    reader = next(n.ip for n in cluster.live() if n.ip != root)
    got, stats = await get_bytes(reader, put["id"], tmp_path / "out")
    assert got == data
    st = await wait_copies(reader, put["id"], 3)
    dead = {n.ip for n in victims}
    assert not dead & set(st["holders"])
    print(f"after killing {sorted(dead)}: copies {st['copies']} on {st['holders']}")


async def test_scrub_finds_and_replaces_a_corrupt_copy_nobody_read(make_cluster, monkeypatch, tmp_path) -> None:
    """The background SHA-256 scrub, not a reader, finds a copy damaged on disk and refetches it."""
    monkeypatch.setenv("BORGUSB_SCRUB_BPS", str(64 << 20))
    cluster = await start(make_cluster, monkeypatch, tmp_path, 3)
    ips = [n.ip for n in cluster.nodes]
    data = os.urandom(2 * SS)
    put = await put_bytes(ips[0], data, SigningKey.generate(), tmp_path)
    m, holders = parse_locate(await locate(ips[1], put["id"]), put["id"])
    victim, h1 = holders[1][0], m["shards"][1]
    vdoc = next(d for d in await cluster.status() if d["ip"] == victim.ip)
    path = Path(vdoc["shard"]["data_dir"]) / "shards" / "shards" / h1[:2] / h1
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))
    vdoc = await wait_refetched(cluster, victim.ip, path, 30)
    assert vdoc["counters"]["shard_corrupt_dropped"] == 1 and vdoc["counters"]["shard_refetched"] == 1
    assert hashlib.sha256(path.read_bytes()).hexdigest() == h1


async def test_corrupt_copy_is_never_served_and_is_replaced(make_cluster, monkeypatch, tmp_path) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path, 4)
    ips = [n.ip for n in cluster.nodes]
    data = os.urandom(4 * SS)
    put = await put_bytes(ips[0], data, SigningKey.generate(), tmp_path)
    loc = await locate(ips[1], put["id"])
    m, holders = parse_locate(loc, put["id"])
    victim = holders[0][0]  # the first holder listed for shard 0: a window of 1 asks it first
    h0 = m["shards"][0]
    vdoc = next(d for d in await cluster.status() if d["ip"] == victim.ip)
    path = Path(vdoc["shard"]["data_dir"]) / "shards" / "shards" / h0[:2] / h0
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0xFF
    path.write_bytes(bytes(raw))
    async with client(SigningKey.generate()) as peers:
        fetch = Receiver(peers, m, holders, tmp_path / "out", window=1)
        stats = await fetch.run()
        await fetch.receipts_handed()  # before the client closes: the hand-in would reopen its session
    assert (tmp_path / "out").read_bytes() == data
    assert stats["bad"] == 1 and stats["retries"] == 1
    vdoc = await wait_refetched(cluster, victim.ip, path, 15)
    assert vdoc["counters"]["shard_corrupt_dropped"] == 1
    assert hashlib.sha256(path.read_bytes()).hexdigest() == h0  # the corrupt copy was replaced


async def test_forged_mismatched_replayed_and_foreign_stores_are_rejected_and_counted(
    make_cluster, monkeypatch, tmp_path
) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path, 3)
    ip = cluster.nodes[0].ip
    owner, mallory = SigningKey.generate(), SigningKey.generate()
    data = os.urandom(1000)
    h = model.sha256_hex(data)
    clock = SystemClock()
    async with client(owner) as peers:
        forged = dict(model.sign_record(mallory, h, len(data), clock.now_ms()), o=owner.public_key_hex)
        with pytest.raises(PeerRejected) as err:
            await post_frame(peers, ip, PORT, "shard.put", {"rec": forged}, data)
        assert err.value.status == 403
        rec = model.sign_record(owner, h, len(data), clock.now_ms())
        with pytest.raises(PeerRejected) as err:
            await post_frame(peers, ip, PORT, "shard.put", {"rec": rec}, b"x" + data[1:])
        assert err.value.status == 422
        with pytest.raises(PeerRejected) as err:  # a record of someone else's, sent with my key
            await post_frame(peers, ip, PORT, "shard.hold", {"rec": forged}, data)
        body = frame(peers.sign("shard.put", {"rec": rec, "r": 3}, await peers.address(ip, PORT)), data)
    async with aiohttp.ClientSession() as s:
        url = f"https://{ip}:{PORT}{FRAME_PATH}"
        async with s.post(url, data=body, ssl=client_context()) as resp:
            assert resp.status == 200
            first = await resp.read()
        async with s.post(url, data=body, ssl=client_context()) as resp:
            assert resp.status == 400 and (await resp.json())["error"] == "replay"
    reply = json.loads(first.split(b"\n", 1)[0])["payload"]
    assert reply["copies"] == 3
    async with client(mallory) as peers:  # same bytes, another owner: nothing changes
        theirs = model.sign_record(mallory, h, len(data), clock.now_ms())
        with pytest.raises(PeerRejected) as err:
            await post_frame(peers, ip, PORT, "shard.put", {"rec": theirs}, data)
        assert err.value.status == 409
    docs = await cluster.status()
    entry = next(d for d in docs if d["ip"] == ip)
    c = entry["counters"]
    assert c["shard_rejected:bad_owner_signature"] == 2
    assert c["shard_rejected:hash_mismatch"] == 1
    assert entry["rejected"]["replay"] == 1
    # the three winners refused to hold it, and the entry refused the put for that (the put stops there)
    assert sum(d["counters"].get("shard_rejected:other_owner", 0) for d in docs) == 4
    for d in docs:  # every holder still has the owner's record
        assert d["shard"]["store"]["shards"] == 1


def shards_on_disk(part: Path, src: Path) -> int:
    """How many whole shards of src a receiver's .part file holds in their places."""
    with part.open("rb") as got, src.open("rb") as want:
        return sum(got.read(SS) == chunk for chunk in iter(lambda: want.read(SS), b""))


async def test_interrupted_30mb_transfer_resumes(make_cluster, monkeypatch, tmp_path) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path, 4)
    ips = [n.ip for n in cluster.nodes]
    src = tmp_path / "big"
    src.write_bytes(os.urandom(MB30))
    put = await put_bytes(ips[0], src.read_bytes(), SigningKey.generate(), tmp_path)
    oid = put["id"]
    out = tmp_path / "got"
    # 1) the receiver stops midway (as if the connection dropped)
    first = cli("get", oid, "-o", str(out), "--node", ips[1], "--stop-after", "8", "-q")
    assert first.returncode != 0 and "stopped after" in first.stderr, first.stderr
    assert Path(str(out) + ".part").exists()
    # 2) the receiver is killed midway (SIGKILL), with a holder killed as well
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "borgusb.cli",
            "get",
            oid,
            "-o",
            str(out),
            "--node",
            ips[1],
            "--window",
            "1",
            "--throttle-ms",
            "400",
            "-q",
        ],
        stderr=subprocess.PIPE,
    )
    # killed once it has written shards past the first run's 8 (read back from its .part file), however
    # long its start takes on a loaded machine
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, "the receiver finished before it could be killed"
        if shards_on_disk(Path(str(out) + ".part"), src) > 8:
            break
        assert time.monotonic() < deadline, "the receiver wrote no shard past the first 8 in 120 s"
        await asyncio.sleep(0.5)  # each look reads both 30 MB files; a shard takes 400 ms (--throttle-ms)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    docs = await cluster.status()
    root = next(d["ip"] for d in docs if d["status"] == "root")
    cluster.kill(next(n for n in cluster.nodes if n.ip not in (root, ips[1])))
    done = cli("get", oid, "-o", str(out), "--node", ips[1], "-q", "--json")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    print(f"resumed with {stats['resumed']} of {stats['shards']} shards on disk")
    assert stats["resumed"] > 8 and stats["resumed"] + stats["fetched"] == stats["shards"]
    assert out.read_bytes() == src.read_bytes()
    assert not Path(str(out) + ".part").exists()
