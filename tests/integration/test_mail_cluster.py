"""mailTreeCell with real node processes and the real `borgusb mail` CLI (issue 17, "Mail: ...").

Four mail cells, R = 3 holders per inbox. A sends to B while B runs nothing (no CLI, no conduit:
the network keeps the inbox); later B lists and reads it through another node, even with one of
its inbox's holders killed. C cannot read it with any key C has. Tampered, forged-sender and
replayed messages are refused or deduplicated; a reply is threaded; a deletion holds against a replay;
the holders' disks hold no plaintext.
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

from borgusb.cells.mail.cell import holders_of
from borgusb.cells.mail.client import MailClient
from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.mail import errors
from borgusb.mail.message import DOMAIN, Content, check_message, compose, open_message, seal_context
from borgusb.mail.request import sign_request
from borgusb.mailcli import save_attachments
from borgusb.net.peer import PeerClient, PeerRejected
from borgusb.seal import SealError, unseal
from borgusb.signed import signing_bytes
from tests.integration.diskscan import files_holding

pytestmark = pytest.mark.slow

CLOCK = SystemClock()
N = 4
R = 3
MARKER = "zebra-quokka-7731"  # written into the subject and body; must never reach a holder's disk


def peers(key: SigningKey | None = None) -> PeerClient:
    return PeerClient(key or SigningKey.generate(), CLOCK, Verifier(CLOCK), timeout_s=30)


async def start(make_cluster, monkeypatch, data: Path):
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(data))
    monkeypatch.setenv("BORGUSB_MAIL_R", str(R))
    monkeypatch.setenv("BORGUSB_MAIL_RATE", "2")  # messages per minute from one sender to one inbox
    cluster = make_cluster("mailTreeCell")
    cluster.up(N)
    await cluster.wait_one_tree(timeout_s=60, expect=N)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # every node reads the root's table of all four
        docs = await cluster.status()
        if len(docs) == N and len({d.get("mail", {}).get("view") for d in docs}) == 1:
            if all(d["mail"]["members"] == N for d in docs):
                return cluster, {d["node"]: d["ip"] for d in docs}
        await asyncio.sleep(0.3)
    raise TimeoutError("the member views did not settle")


def cli(*args: str, key: Path, node: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "borgusb.cli", "mail", *args, "--key-file", str(key), "--node", node],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "BORGUSB_NODE"},
    )


def keyfile(tmp_path: Path, name: str, key: SigningKey) -> Path:
    path = tmp_path / f"{name}.key"
    path.write_text(bytes(key.secret_bytes()).hex() + "\n")
    return path


async def listing(ip: str, key: SigningKey) -> dict:
    async with peers() as p:
        return await MailClient(p, ip).ask(sign_request(key, "list", [], CLOCK.now_ms()))


async def post(ip: str, doc: dict) -> dict:
    async with peers() as p:
        return await MailClient(p, ip).post(doc)


async def test_mail_between_keys_on_real_cells(make_cluster, monkeypatch, tmp_path: Path) -> None:
    cluster, members = await start(make_cluster, monkeypatch, tmp_path / "data")
    ips = [n.ip for n in cluster.nodes]
    a, b, c = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    akey, bkey, ckey = keyfile(tmp_path, "a", a), keyfile(tmp_path, "b", b), keyfile(tmp_path, "c", c)

    # A sends to B through the first node; B runs nothing meanwhile
    sent = cli(
        "send",
        "--to",
        b.public_key_hex,
        "--subject",
        f"hi {MARKER}",
        "--body",
        f"body {MARKER}",
        "--json",
        key=akey,
        node=ips[0],
    )
    assert sent.returncode == 0, sent.stderr
    done = json.loads(sent.stdout)
    assert done["stored"] == R and done["holders"] == R
    mid = done["id"]

    # floods (while the holder set is the one A sent to: per-holder counts): a sender's third
    # message in a minute, and an oversized one, refused and counted
    await post(ips[0], compose(a, b.public_key_hex, Content("2nd", "ok"), CLOCK.now_ms()).to_dict())
    with pytest.raises(PeerRejected) as err:
        await post(ips[0], compose(a, b.public_key_hex, Content("3rd", "too many"), CLOCK.now_ms()).to_dict())
    assert err.value.reason == "rate_limited"
    huge = dict(compose(a, b.public_key_hex, Content("h", "h"), CLOCK.now_ms()).to_dict(), sealed="00" * 60_000)
    with pytest.raises(PeerRejected) as err:
        await post(ips[0], huge)
    assert err.value.reason == "too_large"
    too_long = cli("send", "--to", b.public_key_hex, "--subject", "s", "--body", "x" * 60_000, key=akey, node=ips[0])
    assert too_long.returncode == 2 and "too_large" in too_long.stderr
    counted: Counter[str] = Counter()
    for d in await cluster.status():
        counted.update({k: v for k, v in d["counters"].items() if k.startswith("mail_refused:")})
    assert counted["mail_refused:rate_limited"] >= R - 1 and counted["mail_refused:too_large"] >= 1

    # one of B's inbox holders dies; B, back later, reads through a node that is not that holder
    holders = holders_of(b.public_key_hex, members, R)
    victim = next(n for n in cluster.nodes if n.ip == members[holders[0]])
    entry = next(ip for ip in ips if ip != victim.ip)
    cluster.kill(victim)
    deadline = time.monotonic() + 30  # the tree drops it: B's holder set now has a holder that never got the mail
    while not all(d.get("mail", {}).get("members") == N - 1 for d in await cluster.status()):
        assert time.monotonic() < deadline, "the member views did not drop the dead holder"
        await asyncio.sleep(0.3)
    ls = cli("ls", key=bkey, node=entry)
    assert ls.returncode == 0, ls.stderr
    assert mid[:12] in ls.stdout and f"hi {MARKER}" in ls.stdout and " new" in ls.stdout and "*" in ls.stdout
    # that read handed the message off to the holder new to B's set, which never got it from A
    live = {k: ip for k, ip in members.items() if ip != victim.ip}
    [newcomer] = set(holders_of(b.public_key_hex, live, R)) - set(holders)
    deadline = time.monotonic() + 30
    while True:
        async with peers() as p:
            got = await MailClient(p, live[newcomer], pubkey=newcomer).inbox(
                sign_request(b, "list", [], CLOCK.now_ms())
            )
        if mid in {check_message(m).id for m in got["messages"]}:
            break
        assert time.monotonic() < deadline, "the new holder did not get the message handed off"
        await asyncio.sleep(0.3)
    read = cli("read", mid[:8], key=bkey, node=entry)
    assert read.returncode == 0, read.stderr
    assert f"body {MARKER}" in read.stdout and a.public_key_hex in read.stdout and "never read mail" in read.stdout
    ls = cli("ls", "--json", key=bkey, node=entry)
    seen = next(e for e in json.loads(ls.stdout) if e["id"] == mid)
    assert seen["read"] and not seen["new_sender"] and seen["from"] == a.public_key_hex

    # C: an empty inbox; B's inbox cannot be listed with C's key; the ciphertext opens with no key C has
    assert "no mail" in cli("ls", key=ckey, node=entry).stdout
    forged_q = dict(sign_request(c, "list", [], CLOCK.now_ms()), who=b.public_key_hex)
    async with peers(c) as p:
        with pytest.raises(PeerRejected) as err:
            await MailClient(p, entry).ask(forged_q)
    assert err.value.reason == "bad_signature"
    doc = (await listing(entry, b))["replies"][0]["messages"][0]
    msg = check_message(doc)
    for k in (c, SigningKey.generate()):
        with pytest.raises(errors.NotForYou):
            open_message(k, msg)
        with pytest.raises(SealError):
            unseal(k, bytes.fromhex(msg.sealed), seal_context(msg.sender, msg.ts, msg.re))

    # tampered and forged-sender messages are refused; a replay is kept once
    fresh = compose(a, b.public_key_hex, Content("second", "x"), CLOCK.now_ms()).to_dict()
    tampered = dict(fresh, sealed=fresh["sealed"][:-2] + ("00" if fresh["sealed"][-2:] != "00" else "01"))
    forged = dict(fresh, **{"from": c.public_key_hex})  # C claims A's words, keeps A's signature
    body = {k: v for k, v in fresh.items() if k != "sig"} | {"from": c.public_key_hex}
    resigned = dict(body, sig=c.sign(signing_bytes(body, DOMAIN)).hex())  # A's sealed words re-signed by C
    for bad in (tampered, forged):
        with pytest.raises(PeerRejected) as err:
            await post(ips[1] if ips[1] != victim.ip else ips[2], bad)
        assert err.value.reason == "bad_signature"
    refused = Counter(k for d in await cluster.status() for k, v in d["counters"].items() for _ in range(v))
    assert refused["mail_refused:bad_signature"] >= 2
    await post(entry, resigned)  # well signed by C, so stored; but it does not open as anyone's words
    await post(entry, doc)  # A's first message again: deduplicated
    ls = json.loads(cli("ls", "--json", key=bkey, node=entry).stdout)
    assert [e["id"] for e in ls].count(mid) == 1
    lifted = next(e for e in ls if e["from"] == c.public_key_hex)
    assert lifted["error"] == "undecryptable" and lifted["new_sender"]

    # B replies, threaded; A sees the reply with its thread
    rep = cli(
        "send",
        "--to",
        a.public_key_hex,
        "--subject",
        "re: hi",
        "--body",
        "got it",
        "--reply-to",
        mid[:8],
        key=bkey,
        node=entry,
    )
    assert rep.returncode == 0, rep.stderr
    als = json.loads(cli("ls", "--json", key=akey, node=entry).stdout)
    assert [(e["subject"], e["re"]) for e in als] == [("re: hi", mid)]

    # B deletes; the list no longer has it and a replay is refused by every live holder
    rm = cli("rm", mid[:8], key=bkey, node=entry)
    assert rm.returncode == 0, rm.stderr
    assert mid not in cli("ls", key=bkey, node=entry).stdout
    with pytest.raises(PeerRejected) as err:
        await post(entry, doc)
    assert err.value.reason == "deleted"

    # the holders' disks hold ciphertext only
    for path in (tmp_path / "data").rglob("*.json"):
        assert MARKER.encode() not in path.read_bytes(), path


async def test_attachments_travel_sealed_through_shards(make_cluster, monkeypatch, tmp_path: Path) -> None:
    data = tmp_path / "data"
    mail, _ = await start(make_cluster, monkeypatch, data)
    shards = make_cluster("shardTreeCell")
    shards.up(3)
    await shards.wait_one_tree(timeout_s=60, expect=3)
    deadline = time.monotonic() + 30
    while not all(d.get("shard", {}).get("directory") == 3 for d in await shards.status()):
        assert time.monotonic() < deadline, "the shard directories did not fill"
        await asyncio.sleep(0.3)
    a, b, c = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    akey, bkey = keyfile(tmp_path, "a", a), keyfile(tmp_path, "b", b)
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "report.bin"
    src.write_bytes(os.urandom(300_000) + MARKER.encode() + os.urandom(1000))
    node, shard_node = mail.nodes[0].ip, shards.nodes[1].ip
    sent = cli(
        "send",
        "--to",
        b.public_key_hex,
        "--subject",
        "the report",
        "--body",
        "attached",
        "--attach",
        str(src),
        "--shard-node",
        shard_node,
        "--json",
        key=akey,
        node=node,
    )
    assert sent.returncode == 0, sent.stderr
    mid = json.loads(sent.stdout)["id"]
    got = tmp_path / "got"
    read = cli("read", mid[:8], "--save", str(got), "--shard-node", shard_node, "--json", key=bkey, node=node)
    assert read.returncode == 0, read.stderr
    doc = json.loads(read.stdout)
    assert len(doc["attachments"]) == 1 and doc["saved"] == [str(got / "report.bin")]
    assert (got / "report.bin").read_bytes() == src.read_bytes()
    # C fetches the same shards through the real reader (every check passes: they are the sender's
    # object) and cannot open them with C's key
    async with peers(c) as p:
        with pytest.raises(errors.Undecryptable):
            await save_attachments(p, shard_node, c, doc, tmp_path / "got-by-c")
    assert not list((tmp_path / "got-by-c").iterdir())
    read, holding = files_holding(tmp_path, [MARKER.encode()], skip=("src", "got"))
    assert read and not holding, holding
