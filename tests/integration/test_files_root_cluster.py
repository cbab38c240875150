"""ftreeFileMgrCell on real processes: a person's root pointer kept by the R cells the lottery
picks, found again from the key alone at any cell, newest wins, forgeries and stale ones refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from borgusb.cells.ftree.client import FtreeClient
from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.files.root import holders, make_root
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient, PeerRejected

pytestmark = pytest.mark.slow

CLOCK = SystemClock()
N, R = 5, 3
F = "aa" * 32


async def test_root_pointer_kept_by_its_holders_and_found_from_the_key(
    make_cluster, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BORGUSB_FILES_R", str(R))
    cluster = make_cluster("ftreeFileMgrCell")
    cluster.up(N)
    await cluster.wait_one_tree(timeout_s=60, expect=N)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # every cell reads the root's table of all five
        docs = await cluster.status()
        if len(docs) == N and all(d.get("files", {}).get("members") == N for d in docs):
            break
        await asyncio.sleep(0.3)
    else:
        raise TimeoutError("the member views did not settle")
    by_key = {d["node"]: d["ip"] for d in docs}
    ips = [n.ip for n in cluster.nodes]
    owner, eve = SigningKey.generate(), SigningKey.generate()
    chosen = holders(owner.public_key_hex, by_key, R)

    async with PeerClient(SigningKey.generate(), CLOCK, Verifier(CLOCK), timeout_s=30) as peers:
        p1 = make_root(owner, seq=1, folder=F, root="11" * 32, ts=CLOCK.now_ms())
        put = await FtreeClient(peers, ips[0]).publish_root(p1)
        assert put["holders"] == R and put["kept"] == R, put
        for key, ip in by_key.items():  # kept by exactly the lottery's R holders
            held = await FtreeClient(peers, ip).held_root(owner.public_key_hex)
            assert (held == p1) == (key in chosen), (key, held)
        for ip in ips:  # found from the key alone at any cell
            assert await FtreeClient(peers, ip).find_root(owner.public_key_hex) == p1

        p2 = make_root(owner, seq=2, folder=F, root="22" * 32, ts=CLOCK.now_ms())
        assert (await FtreeClient(peers, ips[3]).publish_root(p2))["kept"] == R
        stale = await FtreeClient(peers, ips[1]).publish_root(p1)  # an old pointer replayed
        assert stale["kept"] == 0 and stale["refused"] == {"stale": R} and stale["newest"] == p2.to_dict()
        assert await FtreeClient(peers, ips[2]).find_root(owner.public_key_hex) == p2

        # eve's pointer claiming the owner's key: refused at the door, nothing changes
        forged = dict(make_root(eve, seq=9, folder=F, root="33" * 32, ts=CLOCK.now_ms()).to_dict())
        forged["owner"] = owner.public_key_hex
        with pytest.raises(PeerRejected) as err:
            await FtreeClient(peers, ips[4]).call("ft.root.put", {"pointer": forged})
        assert err.value.reason == "bad_signature"
        # a cell the lottery did not pick refuses to hold
        outsider = next(ip for key, ip in by_key.items() if key not in chosen)
        with pytest.raises(PeerRejected) as err:
            await FtreeClient(peers, outsider).store_root(p2)
        assert err.value.reason == "not_placed"
        assert await FtreeClient(peers, ips[0]).find_root(owner.public_key_hex) == p2
        status = (await cluster.status())[0]
        assert "roots" in status["files"]
