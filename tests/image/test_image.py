"""Boot the USB image in QEMU (OVMF, the stick as USB storage) and check it from the host.

* it boots, every cell starts as its own service and answers (BORGUSB-READY);
* a node on the host joins the guest node's tree across the VM boundary
  (tap in a network namespace);
* the stick's AI stack is mounted: the brain's model and llama_cpp are there for
  it, and a memory search runs with the libraries read from the stick;
* pulling the stick powers the machine off; the host PC's internal disk and
  the stick's ESP and data partition are byte-for-byte unchanged;
* a corrupted keystore gives a clear console message and the node still boots
  without an identity; with the always-on flag, pulling the stick keeps it up
  (in the same boot as a new cell type's image: each TCG boot costs minutes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import vm as V

from borgusb.stick import MARKER, Marker, Network

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# a deadline for a hang, not a speed goal (bench_image has that): ready in 70-180 s here, and 420 s was
# not enough on a day the same 2 cores ran 2.5x slower with the host lane beside the guest
BOOT_TIMEOUT = float(os.environ.get("BORGUSB_BOOT_TIMEOUT", "900"))
READY = r"BORGUSB-READY cells=(\d+)/(\d+) t=([\d.]+)s ip=(\S+) identity=(\S+) mem=(\d+)MiB"


def _status(ns: V.NetNS, ip: str, port: int) -> dict | None:
    code = (
        "import json,sys,urllib.request\n"
        f"try: print(urllib.request.urlopen('http://{ip}:{port}/status', timeout=3).read().decode())\n"
        "except OSError: print('null')\n"
    )
    out = subprocess.run(
        [*ns.prefix(), str(ROOT / ".venv/bin/python"), "-c", code], capture_output=True, text=True, timeout=30
    )
    try:
        return json.loads(out.stdout or "null")
    except ValueError:
        return None


def _cell_runtime_present() -> bool:
    try:
        from borgusb import node  # noqa: F401
        from borgusb.cells import implemented  # noqa: F401
    except ImportError:
        return False
    return True


def _one_tree(a: dict, b: dict) -> bool:
    """Two nodes' tree views agree that they are one tree of at least two, one the other's parent."""
    if a.get("tree_id") is None or a.get("tree_id") != b.get("tree_id") or min(a["size"], b["size"]) < 2:
        return False
    if a.get("parent") == b["node_id"]:
        return a["node_id"] in b["children"].values()
    return b.get("parent") == a["node_id"] and b["node_id"] in a["children"].values()


def test_boot_cells_join_pull_and_no_trace(stick_copy: Path, tmp_path: Path) -> None:
    stick = stick_copy
    ns = V.NetNS()
    host_node = None
    machine = None
    try:
        marker = Marker(network=Network(f"{ns.GUEST_IP}/24"), selftest=("conduit", "cells", "cli", "ai"))
        V.put_on_stick(stick, MARKER, marker.to_bytes())
        internal = tmp_path / "internal.img"
        V.make_internal_disk(internal)
        before = {
            "internal disk": V.sha256_file(internal),
            "stick ESP": V.sha256_range(stick, *V.esp_partition(stick)),
            "stick data partition": V.sha256_range(stick, *V.data_partition(stick)),
        }

        machine = V.VM(stick, tmp_path, internal_disk=internal, netns=ns)
        m = machine.wait_for(READY, BOOT_TIMEOUT)
        ready, wanted, t_guest, ip, identity = int(m[1]), int(m[2]), float(m[3]), m[4], m[5]
        print(
            f"\nnode ready {machine.elapsed():.1f}s after QEMU started (guest uptime {t_guest}s, "
            f"accel {machine.accel}): cells {ready}/{wanted}, RAM in use {m[6]} MiB"
        )
        assert wanted >= 1 and ready == wanted, machine.text()[-3000:]
        assert ip == ns.GUEST_IP
        assert identity == "none"
        assert "no keystore.json on the stick: the node starts without an identity" in machine.text()
        hygiene = machine.wait_for(r"BORGUSB-HYGIENE (.*)", 60)[1]
        assert "swaps=0 " in hygiene and "zero-on-free=on" in hygiene and "thp=never" in hygiene, hygiene
        # the cells may be ready before getty prints its banner
        machine.wait_for(r"Linux version \d|Debian GNU/Linux 12", 120)
        # The conduit is socket-activated: systemd listens, nothing runs until a browser connects;
        # the first request (the guest's self-test) starts it and is answered.
        conduit = re.search(r"BORGUSB-READY .* conduit=(\S+)", machine.text())
        assert conduit and conduit[1] == "on-demand", machine.text()[-3000:]
        selftest = machine.wait_for(r"BORGUSB-SELFTEST conduit (.*)", 300)[1]
        assert "status=200" in selftest and "was=on-demand" in selftest and "now=running" in selftest, selftest
        # every cell is forked from the cell host and is, for systemd, its unit's main process: named
        # after the cell, in the unit's cgroup, under the unit's dynamic user
        cells = machine.wait_for(r"BORGUSB-SELFTEST cells (.*)", 120)[1].split()
        assert len(cells) == wanted and all("=ok:active:" in c for c in cells), cells
        # the borgusb command works inside the image (which has no tqdm): a put and a get, with progress
        # a deadline for a hang: each command may be tried twice, each request given 120 s under TCG
        cli = machine.wait_for(r"BORGUSB-SELFTEST cli (.*)", BOOT_TIMEOUT)[1]
        assert "put=0 get=0 same=yes" in cli and "progress-lines=0" not in cli, cli
        # The stick's AI stack (ai.squashfs) is mounted; the brain's unit names a GGUF model that is
        # there and llama_cpp loads with its environment; a memory is found by a search, whose
        # libraries and model come from the stick. RAM with one agent thinking: bench_image.
        ai = machine.wait_for(r"BORGUSB-SELFTEST ai (.*)", 600)[1]
        assert "mounted=yes model=ok llama=ok:" in ai and "search=ok stored=1 " in ai, ai  # ok: ours among them
        assert "AI stack mounted from the stick" in machine.text()

        # A node on the host joins the guest's tree across the VM boundary.
        assert _cell_runtime_present(), "the node runtime (borgusb cell run) is missing: no two-node network"
        data = tmp_path / "host-node"
        data.mkdir()
        host_node = subprocess.Popen(
            [
                *ns.prefix(),
                str(ROOT / ".venv/bin/borgusb"),
                "cell",
                "run",
                "peerTreeNet",
                "--ip",
                ns.HOST_IP,
                "--join",
                ns.GUEST_IP,
                "--data",
                str(data),
            ],
            stdout=open(tmp_path / "host-node.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # One tree across the VM boundary: either node may end up the other's parent (a guest slow to
        # answer under TCG can have the host found its own tree first; the two trees then merge)
        host_view = guest_view = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            host_view = _status(ns, ns.HOST_IP, 13362)
            guest_view = _status(ns, ns.GUEST_IP, 13362)
            if host_view and guest_view and _one_tree(host_view["tree"], guest_view["tree"]):
                break
            time.sleep(2)
        else:
            pytest.fail(
                f"the host node and the guest did not form one tree:\nhost {host_view}\nguest {guest_view}\n"
                + (tmp_path / "host-node.log").read_text()[-2000:]
            )

        # Pull the stick: keys wiped, the machine powers off by itself.
        assert "return" in machine.pull_stick()
        code = machine.wait_exit(120)
        assert code is not None, "the VM kept running after the stick was pulled:\n" + machine.text()[-3000:]
        assert "the stick was removed: stopping the cells, wiping keys from memory, powering off" in machine.text()
    finally:
        if host_node and host_node.poll() is None:
            os.killpg(host_node.pid, 9)
            host_node.wait(timeout=10)
        if machine:
            machine.close()
        ns.close()

    after = {
        "internal disk": V.sha256_file(internal),
        "stick ESP": V.sha256_range(stick, *V.esp_partition(stick)),
        "stick data partition": V.sha256_range(stick, *V.data_partition(stick)),
    }
    assert after == before, "the boot left a trace"


def _corrupt_keystore(tmp_path: Path) -> bytes:
    from borgusb import keystore
    from borgusb.identity import Wallet

    path = tmp_path / "ks.json"
    keystore.save_wallet(
        path, Wallet(bytes(range(32))), "a passphrase", keystore.KdfParams(iterations=1, lanes=1, memory_kib=1024)
    )
    data = bytearray(path.read_bytes())
    i = data.index(b'"ciphertext"') + 20
    data[i] = ord("A") if data[i] != ord("A") else ord("B")  # one flipped character: a damaged stick
    return bytes(data)


def test_a_new_cell_type_runs_and_a_damaged_always_on_stick_boots(stick_copy: Path, tmp_path: Path) -> None:
    """Two checks share this boot (a TCG boot costs minutes of the suite). The example cell of
    tests/cellkit, a distribution of its own, built into a test image with `build_image.py
    --extra-wheel` and nothing else: the booted node runs it as one more cell unit. And the stick's
    keystore is damaged and the stick marked always-on: a clear console message, the node boots
    without an identity, and pulling the stick keeps the machine up."""
    python = ROOT / ".venv" / "bin" / "python"
    wheels, source = tmp_path / "wheels", tmp_path / "example-src"  # built from a copy: the checkout stays clean
    shutil.copytree(ROOT / "tests" / "cellkit", source, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [str(python), "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(source)]
    subprocess.run(pip, check=True)
    (wheel,) = wheels.glob("borgusb_example_echo-*.whl")
    log = tmp_path / "build.log"
    with open(log, "w") as fh:
        built = subprocess.run(
            [
                str(python),
                str(ROOT / "image" / "build_image.py"),
                "--parts-only",
                "example",
                "--extra-wheel",
                str(wheel),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    assert built.returncode == 0, log.read_text()[-6000:]
    info = json.loads(
        (
            Path(os.environ.get("BORGUSB_CACHE", Path.home() / ".cache" / "borgusb"))
            / "image"
            / "example"
            / "build.json"
        ).read_text()
    )
    ns = V.NetNS()
    machine = None
    try:
        marker = Marker(network=Network(f"{ns.GUEST_IP}/24"), selftest=("cells",))
        V.put_on_stick(stick_copy, MARKER, marker.to_bytes())
        V.put_on_stick(stick_copy, "keystore.json", _corrupt_keystore(tmp_path))
        V.put_on_stick(stick_copy, "always-on", b"")
        machine = V.VM(
            stick_copy, tmp_path, netns=ns, kernel=(Path(info["vmlinuz"]), Path(info["initrd"]), info["cmdline"])
        )
        m = machine.wait_for(READY, BOOT_TIMEOUT)
        assert int(m[1]) == int(m[2]) and int(m[2]) >= 5, machine.text()[-3000:]
        text = machine.text()
        assert "BorgUSB: the keystore on the stick cannot be used:" in text, text[-3000:]
        assert "the node starts without an identity" in text
        assert m[5] == "none"
        assert "always-on node: removing the stick will not power the machine off" in text
        cells = machine.wait_for(r"BORGUSB-SELFTEST cells (.*)", 120)[1].split()
        assert any(c.startswith("exampleEchoCell=ok:active:") for c in cells), cells
        # it answers on its own monitoring port (its DNA row came with its SPEC), from the host
        deadline = time.monotonic() + 120
        while (status := _status(ns, ns.GUEST_IP, 13912)) is None and time.monotonic() < deadline:
            time.sleep(1)
        assert status is not None, machine.text()[-3000:]
        assert status["cell"]["name"] == "exampleEchoCell" and status["settings"]["greeting"] == "hello"

        assert "return" in machine.pull_stick()
        machine.wait_for(r"the stick was removed; always-on node: the cells keep running", 120)
        assert machine.wait_exit(10) is None, "the always-on node powered off when the stick was pulled"
    finally:
        if machine is not None:
            machine.close()
        ns.close()
