"""Mail to an address (issue 17, "Mail is addressed to ... their address resolved through a directory
entry the person signs") on real mailTreeCell processes with the real `borgusb mail` CLI.

Four mail cells, R = 3 holders per address. B publishes an entry with a name; A sends to B's address
and is told which key it resolved to; B reads it. A's first ``ls`` publishes A's entry. Another key
claiming B's address is refused by the cells and dropped by the reader; an older entry is refused
(rollback); a holder that answers an old entry loses to the newest, and is handed the newest. A
flood of publishes for one address is rate-limited, and every refusal is counted by reason.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import pytest

from borgusb.cells.mail.cell import dir_holders_of
from borgusb.cells.mail.client import MailClient
from borgusb.keys import SigningKey
from borgusb.mail.directory import DOMAIN, check_entry, sign_entry
from borgusb.net.peer import PeerRejected
from borgusb.signed import signing_bytes

from .test_mail_cluster import CLOCK, R, cli, keyfile, peers, start

pytestmark = pytest.mark.slow


async def refused(ip: str, call) -> str:
    async with peers() as p:
        with pytest.raises(PeerRejected) as err:
            await call(MailClient(p, ip))
    return err.value.reason


async def test_mail_to_an_address_resolved_through_the_directory(make_cluster, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BORGUSB_MAIL_PUBLISH_RATE", "5")  # entries one address may publish per minute, per holder
    data = tmp_path / "data"
    cluster, members = await start(make_cluster, monkeypatch, data)
    ips = [n.ip for n in cluster.nodes]
    a, b, c = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    akey, bkey = keyfile(tmp_path, "a", a), keyfile(tmp_path, "b", b)
    addr = b.doge_address

    # nobody has published for B yet: sending to the address says so
    early = cli("send", "--to", addr, "--subject", "s", "--body", "b", key=akey, node=ips[0])
    assert early.returncode == 1 and "no directory entry" in early.stderr
    bad = cli("send", "--to", "Dnot-an-address", "--subject", "s", "--body", "b", key=akey, node=ips[0])
    assert bad.returncode == 2

    # B publishes (1st publish for the address), with a name that is only a label
    pub = cli("publish", "--name", "Bob <b>", key=bkey, node=ips[1])
    assert pub.returncode == 0, pub.stderr
    assert f"published {addr} -> {b.public_key_hex} (Bob <b>): kept by {R} of {R} holders" in pub.stdout
    assert cli("publish", "--name", " x", key=bkey, node=ips[1]).returncode == 2  # name rules, nothing sent

    # A sends to B's address and is told which key that is; B reads it
    sent = cli("send", "--to", addr, "--subject", "to an address", "--body", "hello B", "--json", key=akey, node=ips[0])
    assert sent.returncode == 0, sent.stderr
    assert f"{addr} is key {b.public_key_hex}" in sent.stderr and "'Bob <b>'" in sent.stderr
    mid = json.loads(sent.stdout)["id"]
    ls = cli("ls", key=bkey, node=ips[2])
    assert ls.returncode == 0 and mid[:12] in ls.stdout and "to an address" in ls.stdout, ls.stderr
    assert "published your directory entry" not in ls.stderr  # B has one already
    read = cli("read", mid[:8], key=bkey, node=ips[2])
    assert read.returncode == 0 and "hello B" in read.stdout, read.stderr

    # A's first ls publishes A's entry; the second finds it
    first = cli("ls", key=akey, node=ips[3])
    assert first.returncode == 0 and "published your directory entry" in first.stderr, first.stderr
    assert "published" not in cli("ls", key=akey, node=ips[3]).stderr
    async with peers() as p:
        entry, dropped = await MailClient(p, ips[1]).resolve(a.doge_address)
    assert entry is not None and entry.key == a.public_key_hex and entry.name == "" and not dropped

    # another key claiming B's address: refused by the entry cell and by a holder asked directly
    claim = dict(sign_entry(c, CLOCK.now_ms(), "Bob").to_dict(), addr=addr)
    body = {k: v for k, v in claim.items() if k != "sig"}
    forged = dict(body, sig=c.sign(signing_bytes(body, DOMAIN)).hex())
    holders = dir_holders_of(addr, members, R)
    assert await refused(ips[0], lambda m: m.publish(forged)) == "wrong_address"
    assert await refused(members[holders[0]], lambda m: m.dir_put(forged)) == "wrong_address"
    resigned = dict(sign_entry(b, CLOCK.now_ms()).to_dict(), name="Mallory")  # B's entry, changed after signing
    assert await refused(ips[0], lambda m: m.publish(resigned)) == "bad_signature"

    # a newer entry replaces the first; an older one is refused (publishes 2 to 4)
    now = CLOCK.now_ms()
    old, new = sign_entry(b, now, "old"), sign_entry(b, now + 1, "new")
    async with peers() as p:
        m = MailClient(p, ips[0])
        assert (await m.publish(old.to_dict()))["stored"] == R
        assert (await m.publish(new.to_dict()))["stored"] == R
    assert await refused(ips[0], lambda m: m.publish(old.to_dict())) == "rollback"

    # one holder's disk is rolled back to the old entry behind its back: it answers the old one, the
    # reader takes the newest, and the lookup hands the newest back to that holder
    liar = holders[1]
    [path] = [p for p in data.rglob(f"{addr}.json") if members[liar] in str(p)]
    path.write_text(json.dumps(old.to_dict()))
    async with peers() as p:
        m = MailClient(p, ips[3])
        answers = (await m.lookup(addr))["replies"]
        assert {x["holder"]: check_entry(x["entry"]).name for x in answers}[liar] == "old"
        got, _ = await m.resolve(addr)
        assert got == new
        deadline = time.monotonic() + 30
        while check_entry((await MailClient(p, members[liar], pubkey=liar).dir_get(addr))["entry"]) != new:
            assert time.monotonic() < deadline, "the holder behind was not handed the newest entry"
            await asyncio.sleep(0.2)
    sent = cli("send", "--to", addr, "--subject", "again", "--body", "x", key=akey, node=ips[0])
    assert sent.returncode == 0 and b.public_key_hex in sent.stdout and "'new'" in sent.stdout, sent.stderr

    # a flood of publishes for one address (a fresh one, back to back: all within the minute however slow
    # this machine): the 5th in a minute is kept, the 6th refused
    d = SigningKey.generate()
    async with peers() as p:
        for i in range(1, 6):
            entry = sign_entry(d, CLOCK.now_ms() + i, f"entry {i}").to_dict()
            assert (await MailClient(p, ips[0]).publish(entry))["stored"] == R, i
    sixth = sign_entry(d, CLOCK.now_ms() + 6, "entry 6").to_dict()
    assert await refused(ips[0], lambda m: m.publish(sixth)) == "rate_limited"

    counted: Counter[str] = Counter()
    for d in await cluster.status():
        counted.update({k: v for k, v in d["counters"].items() if k.startswith(("mail_refused:", "mail_dir"))})
    for reason in ("wrong_address", "bad_signature", "rollback", "rate_limited"):
        assert counted[f"mail_refused:{reason}"] >= 1, counted
    assert counted["mail_dir_handoff"] >= 1 and sum(d["mail"]["entries"] for d in await cluster.status()) >= 2 * R
