"""Hosted mode with real udev events: loop devices stand for sticks (root; udevd started if needed)."""

from __future__ import annotations

import hashlib
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from snapshot import diff, snapshot
from stick import listing, make_stick

from borgusb import keystore
from borgusb.identity import Wallet

FAST = keystore.KdfParams(iterations=1, lanes=1, memory_kib=1024)
READY_URL = r"url=http://127\.0\.0\.1:(\d+)/#k=(\S+)"  # the conduit's link: its port and its secret


def free_port() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 60000:
            return port
    raise RuntimeError("no port")


def wallet_keystore(tmp: Path, passphrase: str = "correct horse battery") -> tuple[bytes, str]:
    wallet = Wallet.create()
    path = tmp / "ks.json"
    keystore.save_wallet(path, wallet, passphrase, FAST)
    data = path.read_bytes()
    path.unlink()
    address = wallet.public.doge_address
    wallet.close()
    return data, address


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def http_get(port: int, path: str = "/", secret: str | None = None) -> tuple[int, str]:
    """A GET without following redirects; with `secret`, as the conduit's page script makes it."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    headers = {"X-Borg-Conduit": secret} if secret else {}
    try:
        with opener.open(urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers), timeout=5) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_gone(port: int, t_event: float, limit: float = 5.0) -> float:
    while answers(port):
        if time.monotonic() - t_event > limit:
            break
        time.sleep(0.01)
    return time.monotonic() - t_event


def wait_no_children(w, limit: float = 15.0) -> bool:
    """True once no process below the watcher is left (they exit after the node's stop is logged)."""
    deadline = time.monotonic() + limit
    while w.children():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def host_mounts() -> str:
    return Path("/proc/self/mounts").read_text()


def test_attach_answers_detach_stops_within_2s(tmp_path, watcher_factory, loops):
    ks, address = wallet_keystore(tmp_path)
    image = make_stick(tmp_path / "stick.img", keystore=ks)
    before = sha(image)
    port = free_port()
    w = watcher_factory(port, cells=None)  # the whole node, as a person gets it
    t_start = time.monotonic()
    loop = loops(image)
    # every cell type (13) starts first, on a loaded 2-core machine
    m = w.wait_for(r"BORGUSB-HOSTED-READY device=(\S+) url=(\S+) identity=(\S+)", 180, after=t_start)
    assert m.group(1) == loop.data and m.group(3) == address
    url, secret = m.group(2).split("#k=")
    assert url == f"http://127.0.0.1:{port}/" and len(secret) >= 43
    status, shell = http_get(port)
    assert status == 200 and address not in shell  # without the link's secret: the page shell only
    status, body = http_get(port, "/unlock", secret)
    assert status == 200 and address in body
    w.wait_for(r"BORGUSB-READY cell=cronoTreeCell", 60)
    children = w.children()
    assert len(children) >= 6, w.text()  # the cell host, four cells forked from it, and the conduit
    # nothing of it is visible to the host: no mount, no RAM directory content outside the namespace
    assert "borgusb" not in host_mounts() and loop.data not in host_mounts()
    assert not any(Path("/dev/shm").glob("borgusb-hosted*/*"))

    t_event = loop.detach()
    gone = wait_gone(port, t_event)
    w.wait_for(r"BORGUSB-HOSTED-GONE", 30, after=t_event)
    print(f"\nremoval -> conduit no longer answers: {gone * 1000:.0f} ms")
    assert gone < 2.0, f"the conduit still answered {gone:.2f}s after the removal\n{w.text()}"
    w.wait_for(r"node stopped", 30, after=t_event)
    assert wait_no_children(w), "processes started by hosted mode survived the removal"
    assert sha(image) == before, "reading the stick changed it"
    assert w.stop() == 0
    assert "BORGUSB-HOSTED-EXIT" in w.text()
    assert not Path("/dev/shm/borgusb-hosted").exists()


def test_already_inserted_two_sticks_and_reinsertion(tmp_path, watcher_factory, loops):
    ks_a, addr_a = wallet_keystore(tmp_path)
    ks_b, addr_b = wallet_keystore(tmp_path)
    a = make_stick(tmp_path / "a.img", keystore=ks_a)
    b = make_stick(tmp_path / "b.img", keystore=ks_b)
    loop_a = loops(a)  # in before the watcher starts
    port = free_port()
    w = watcher_factory(port)
    m_a = w.wait_for(rf"BORGUSB-HOSTED-READY device={loop_a.data} {READY_URL} identity={addr_a}", 60)
    t = time.monotonic()
    loop_b = loops(b)
    m_b = w.wait_for(rf"BORGUSB-HOSTED-READY device={loop_b.data} {READY_URL} identity={addr_b}", 60, after=t)
    (port_a, secret_a), (port_b, secret_b) = (int(m_a.group(1)), m_a.group(2)), (int(m_b.group(1)), m_b.group(2))
    assert port_a != port_b and secret_a != secret_b
    assert addr_a in http_get(port_a, "/unlock", secret_a)[1] and addr_b in http_get(port_b, "/unlock", secret_b)[1]
    assert http_get(port_b, "/unlock", secret_a)[0] == 401  # one stick's link opens only its own conduit
    assert w.text().count("node started") == 1  # one node for the machine

    t_event = loop_a.detach()
    assert wait_gone(port_a, t_event) < 2.0
    assert answers(port_b), "removing one stick stopped the other's conduit"
    assert addr_b in http_get(port_b, "/unlock", secret_b)[1]
    assert "node stopped" not in w.text()

    t = time.monotonic()
    loop_a2 = loops(a)  # the same stick again
    m = w.wait_for(rf"BORGUSB-HOSTED-READY device={loop_a2.data} {READY_URL} identity={addr_a}", 60, after=t)
    assert answers(int(m.group(1)))
    for loop in (loop_a2, loop_b):
        loop.detach()
    w.wait_for(r"node stopped", 10, after=t)
    assert wait_no_children(w)


def test_an_insertion_whose_events_were_lost_is_found_by_the_rescan(tmp_path, runtime, watcher_factory, loops):
    """Every add and change event is dropped on purpose (TEST ONLY setting), as an overflowing netlink
    socket would lose them: the periodic rescan still finds the stick, and its removal still ends it."""
    ks, address = wallet_keystore(tmp_path)
    image = make_stick(tmp_path / "s.img", keystore=ks)
    port = free_port()
    w = watcher_factory(port, env={**runtime.env(), "BORGUSB_HOSTED_TEST_DROP_EVENTS": "add,change"})
    t = time.monotonic()
    loop = loops(image)
    w.wait_for(rf"TEST ONLY: dropped the (add|change) event of {loop.data}", 30, after=t)
    w.wait_for(rf"rescan: {loop.data} is here and no event told of it", 30, after=t)
    m = w.wait_for(rf"BORGUSB-HOSTED-READY device={loop.data} {READY_URL} identity={address}", 60, after=t)
    assert address in http_get(int(m.group(1)), "/unlock", m.group(2))[1]
    t_event = loop.detach()
    assert wait_gone(int(m.group(1)), t_event) < 2.0
    w.wait_for(r"node stopped", 10, after=t_event)
    assert wait_no_children(w)


@pytest.mark.parametrize("case", ["no-marker", "foreign-marker", "corrupt-keystore", "truncated-keystore"])
def test_bad_sticks_are_refused_clearly(tmp_path, watcher_factory, loops, case):
    ks, _ = wallet_keystore(tmp_path)
    if case == "no-marker":
        image = make_stick(tmp_path / "s.img", marker=False, keystore=ks, files={"holiday.jpg": b"\xff\xd8 photo"})
        expect = r"has no BorgUSB marker file"
    elif case == "foreign-marker":
        image = make_stick(tmp_path / "s.img", marker=b'{"format": "something-else"}', keystore=ks)
        expect = r"not a BorgUSB marker"
    elif case == "corrupt-keystore":
        doc = json.loads(ks)
        doc["ciphertext"] = doc["ciphertext"][:-8] + ("A" * 8 if not doc["ciphertext"].endswith("A" * 8) else "B" * 8)
        image = make_stick(tmp_path / "s.img", keystore=json.dumps(doc).encode())
        expect = r"the keystore on the stick cannot be used: .*Nothing was changed"
    else:
        image = make_stick(tmp_path / "s.img", keystore=ks[: len(ks) // 2])
        expect = r"the keystore on the stick cannot be used: .*Nothing was changed"
    before, files_before = sha(image), listing(image)
    port = free_port()
    w = watcher_factory(port)
    t = time.monotonic()
    loop = loops(image)
    w.wait_for(rf"BORGUSB-HOSTED-REJECTED device={loop.data} reason=\S+ refused=1: .*{expect}", 30, after=t)
    # the refusal is decided and logged before anything would start (one event at a time): nothing did
    assert not answers(port) and "node started" not in w.text()
    assert w.children() == []
    loop.detach()
    assert w.stop() == 0
    assert sha(image) == before and listing(image) == files_before


def test_no_trace_on_the_host(tmp_path_factory, runtime, watcher_factory, loops):
    work = tmp_path_factory.mktemp("notrace")
    ks, address = wallet_keystore(work)
    image = make_stick(work / "stick.img", keystore=ks)
    port = free_port()
    ignore = [str(tmp_path_factory.getbasetemp())]
    # Ambient changes (other jobs on this machine) over a quiet window as long as the cycle: not ours.
    s0 = snapshot(ignore)
    time.sleep(4)
    s1 = snapshot(ignore)
    ambient = set(diff(s0, s1))
    # The full cycle: start the watcher, insert, use the conduit, remove, stop.
    w = watcher_factory(port, cells=None)
    loop = loops(image)
    w.wait_for(r"BORGUSB-HOSTED-READY", 180)  # every cell type (13) starts first, on a loaded 2-core machine
    for path in ("/", "/unlock", "/welcome", "/static/conduit.css"):
        http_get(port, path)
    t_event = loop.detach()
    assert wait_gone(port, t_event) < 2.0
    w.wait_for(r"node stopped", 30, after=t_event)
    assert w.stop() == 0, "the watcher did not stop within 30 s of SIGTERM:\n" + w.text()[-4000:]
    s2 = snapshot(ignore)
    changes = {p: c for p, c in diff(s1, s2).items() if p not in ambient}
    print(f"\nsnapshot: {len(s2)} paths; ambient changes ignored: {sorted(ambient)[:20]}")
    assert not list(runtime.site.rglob("__pycache__")), "bytecode was written into the installation"
    assert changes == {}, "hosted mode left traces on the host:\n" + "\n".join(
        f"{c} {p} {s1.get(p)} -> {s2.get(p)}" for p, c in sorted(changes.items())
    )
