"""Hosted mode keeps root to the watcher: no kernel filesystem driver but FAT's ever sees a stick, and the
cells and conduits run as users of their own with no capabilities (real udev events, loop devices)."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from stick import get, make_stick
from test_hosted import free_port

from borgusb import keystore
from borgusb.hosted.users import FIRST, LAST
from borgusb.identity import Wallet
from borgusb.stick import KEYSTORE


def kernel_log() -> list[str]:
    return subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout.splitlines()


def status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def test_a_partition_labelled_borgusb_that_is_not_fat_is_refused_unmounted(tmp_path, watcher_factory, loops):
    image = make_stick(tmp_path / "ext4.img", fs="ext4")  # mkfs.ext4 -L BORGUSB: any stick can say that
    w = watcher_factory(free_port())
    seen = len(kernel_log())
    t = time.monotonic()
    loop = loops(image)
    w.wait_for(
        rf"BORGUSB-HOSTED-REJECTED device={loop.data} reason=filesystem refused=1: .*its filesystem is ext4, "
        r"not FAT .*nothing was mounted or read",
        30,
        after=t,
    )
    loop.detach()
    t = time.monotonic()
    loop = loops(image)  # again: refused again, and counted
    w.wait_for(rf"BORGUSB-HOSTED-REJECTED device={loop.data} reason=filesystem refused=2: ", 30, after=t)
    mounted = [line for line in kernel_log()[seen:] if "EXT4-fs" in line and "mounted filesystem" in line]
    assert mounted == [], f"the kernel's ext4 driver read the stick: {mounted}"
    assert "node started" not in w.text() and w.children() == []
    loop.detach()
    assert w.stop() == 0
    assert re.search(r"BORGUSB-HOSTED-EXIT: .*refused: filesystem=2", w.text()), w.text()


def test_cells_and_conduit_run_unprivileged_and_the_wallet_still_reaches_the_stick(tmp_path, watcher_factory, loops):
    image = make_stick(tmp_path / "stick.img")  # no wallet yet: the conduit will create one
    w = watcher_factory(free_port())
    t = time.monotonic()
    loops(image)
    ready = w.wait_for(r"BORGUSB-HOSTED-READY device=\S+ url=(http://127\.0\.0\.1:(\d+)/\S*) identity=none", 60, t)
    w.wait_for(r"BORGUSB-READY cell=serviceMgrCell", 60, after=t)
    procs = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in w.children()}
    conduits = [pid for pid, argv in procs.items() if b"borgusb.hosted.conduit" in argv]
    assert len(conduits) == 1 and len(procs) >= 4, procs  # the cell host, its two cells, the conduit
    assert status(w.proc.pid)["Uid"].split()[0] == "0"  # the watcher alone stays root
    uids = {}
    for pid in procs:
        st = status(pid)
        ids = {int(v) for v in st["Uid"].split() + st["Gid"].split()}
        assert len(ids) == 1 and FIRST <= min(ids) <= LAST, (pid, st["Uid"], st["Gid"])
        assert st["Groups"] == "", (pid, st["Groups"])
        for caps in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
            assert int(st[caps], 16) == 0, (pid, caps, st[caps])
        assert st["NoNewPrivs"] == "1", pid
        uids[pid] = ids.pop()
    node = {uids[pid] for pid in procs if pid not in conduits}
    assert len(node) == 1 and uids[conduits[0]] not in node, uids  # a cell cannot reach the conduit
    for uid in set(uids.values()):
        assert subprocess.run(["getent", "passwd", str(uid)], capture_output=True).returncode != 0

    # The conduit, unprivileged, restores a wallet: the watcher writes it onto the stick for it.
    url, port = ready.group(1), int(ready.group(2))
    secret = url.partition("#k=")[2]
    wallet = Wallet.create()
    words, address = wallet.mnemonic(), wallet.public.doge_address
    wallet.close()
    form = {"words": words, "passphrase": "a good passphrase", "passphrase2": "a good passphrase"}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/restore",
        data=urllib.parse.urlencode(form).encode(),
        headers={"Origin": f"http://127.0.0.1:{port}", **({"X-Borg-Conduit": secret} if secret else {})},
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=60) as resp:
            answer, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        answer, body = exc.code, exc.read()
    # the restore form is answered in place (the page script follows "go"): a JSON answer, no redirect
    assert (answer, json.loads(body)) == (200, {"go": "/home"}), (body, w.text()[-3000:])
    w.wait_for(r"conduit\[s1\]: the new wallet keystore was written to the stick \(mtools\)", 10)
    written = get(image, KEYSTORE)
    assert written is not None and json.loads(written)["public"]["doge_address"] == address
    assert keystore.parse(written)["kind"] == "wallet"
